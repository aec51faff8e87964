"""Pure functions behind the latency-weight tuning panel (notebook 05, `viz.widgets`).

- `nearest_run`: the run of a committed λ sweep (`studies.run_sweep`) nearest to a chosen λ (in log λ) and
  penalty mode, with its derived student.
- `arch_set_at`: an `ArchSet` rebuilt from a run's logged probabilities (logits = log p: softmax gives back
  the same distributions) at a step.
- `penalty_gradients`: the decoupled terms of the latency penalty at given rates and λ, their gradients on
  α, β and γ, and what one architecture step would do to the expected latency.
- `histograms`: operator and width counts of a derived architecture.
- `set_sweep`, `band_position`, `panel_state`: what the panel shows for one setting of its controls, for the
  student or the teacher, either penalty.
- `live_config`, `live_search`: a short search at the panel's setting (λ, penalty, rates, band).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fasterseg.config import RunConfig
from fasterseg.data.prepare import prepare_data
from fasterseg.latency.expected import ExpectedLatency, LatencyPenalty
from fasterseg.nas.records import final_arch
from fasterseg.nas.run import run_search
from fasterseg.nets.arch import Architecture
from fasterseg.nets.ops import OPS, PRIMITIVES
from fasterseg.nets.space import SCALES, SearchSpace
from fasterseg.nets.supernet import ArchSet
from fasterseg.runs import load_history


def load_sweep(folder: str | Path) -> pd.DataFrame:
    """The sweep table (``sweep.csv``) of a λ sweep folder, with each run's folder."""
    folder = Path(folder)
    df = pd.read_csv(folder / "sweep.csv")
    df["folder"] = [str(folder / r) for r in df["run"]]
    return df


def sweep_config(folder: str | Path):
    """The config a λ sweep was searched with (its first run's stored ``config.json``; λ and the penalty mode
    are the ones each run changes)."""
    folder = Path(folder)
    first = pd.read_csv(folder / "sweep.csv")["run"].iloc[0]
    return RunConfig.load(folder / first / "config.json")


def nearest_run(sweep: pd.DataFrame, lam: float, penalty: str) -> pd.Series:
    """The sweep row of `penalty` whose λ is nearest to `lam` on a log scale."""
    rows = sweep[sweep["penalty"] == penalty]
    if rows.empty:
        raise ValueError(f"the sweep has no {penalty!r} runs (it has {sorted(set(sweep['penalty']))})")
    d = (np.log(rows["lam"].to_numpy()) - math.log(lam)) ** 2
    return rows.iloc[int(np.argmin(d))]


def run_architecture(row: pd.Series) -> Architecture:
    return Architecture.load(Path(row["folder"]) / row["arch_file"])


SET_COLUMNS = ["run", "penalty", "lam", "folder", "live", "ends", "latency_ms", "fps", "miou", "removed_layers",
               "skip_share", "arch_file"]


def set_sweep(sweep: pd.DataFrame, arch_set: str) -> pd.DataFrame:
    """Per run of the sweep, `arch_set`'s final derived network (its last search epoch in the run's history):
    ends, predicted latency (ms) and FPS, search-time mIoU, skip layers removed, skip share, architecture file;
    ``live`` marks the short searches started from the panel."""
    rows = []
    for _, r in sweep.iterrows():
        ep = load_history(r["folder"])["epochs"]
        last = ep[(ep["arch_set"] == arch_set) & (ep["phase"] == "search")].iloc[-1]
        rows.append({"run": r["run"], "penalty": r["penalty"], "lam": float(r["lam"]), "folder": r["folder"],
                     "live": bool(r.get("live", False)), "ends": last["ends"], "latency_ms": float(last["latency_ms"]),
                     "fps": 1000 / float(last["latency_ms"]), "miou": float(last[f"miou_{last['ends']}"]),
                     "removed_layers": int(last["removed_layers"]), "skip_share": float(last["skip_share"]),
                     "arch_file": last["arch_file"]})
    return pd.DataFrame(rows, columns=SET_COLUMNS)


def band_position(fps: float, band: tuple[float, float], latency_term: bool = True) -> str:
    """Where a derived network's FPS sits against the adaptive-λ band, and what adaptive λ would do about it (it
    halves λ when the network is faster than the band's top, doubles it when slower than its bottom)."""
    lo, hi = band
    if not latency_term:
        return "the teacher has no latency term (λ = 0), so the FPS band does not apply to it"
    if fps > hi:
        return f"faster than the band ({lo:.0f}–{hi:.0f} FPS): adaptive λ would halve λ"
    if fps < lo:
        return f"slower than the band ({lo:.0f}–{hi:.0f} FPS): adaptive λ would double λ"
    return f"inside the band ({lo:.0f}–{hi:.0f} FPS): adaptive λ would keep λ"


def panel_state(rows: pd.DataFrame, space: SearchSpace, expected: ExpectedLatency | None, lam: float,
                rates: tuple[float, float, float], band: tuple[float, float], penalty: str,
                arch_set: str) -> dict:
    """Everything the tuning panel shows for one setting of its controls, as plain data: the run of `rows`
    (`set_sweep` of `arch_set`) nearest to `lam` and `penalty`, its derived network with its latency, FPS, mIoU,
    skip layers removed and histograms, where it sits against the band, and the latency penalty's gradients (the
    student only: the teacher is searched with λ = 0; per term only under the decoupled penalty, whose rates are
    the only ones that apply; none without `expected`)."""
    row = nearest_run(rows, lam, penalty)
    arch = run_architecture(row)
    student = arch_set == "student"
    grads = None
    if student and expected is not None:
        a = arch_set_at(load_history(row["folder"])["arch"], space, arch_set, search_widths=True)
        grads = penalty_gradients(a, expected, lam, rates, penalty)
        if penalty == "coarse":  # one term, everything live: no per-kind term, and the rates do not apply
            grads = grads.drop(columns="term_ms")
    ops, widths = histograms(arch)
    return {"run": row["run"], "lam": float(row["lam"]), "penalty": penalty, "arch_set": arch_set, "arch": arch,
            "live": bool(row["live"]), "latency_ms": float(row["latency_ms"]), "fps": float(row["fps"]),
            "miou": float(row["miou"]), "removed_layers": int(row["removed_layers"]), "ops": ops, "widths": widths,
            "band": band_position(float(row["fps"]), band, student), "gradients": grads,
            "rates_apply": penalty == "decoupled" and student}


def arch_set_at(arch_history: pd.DataFrame, space: SearchSpace, arch_set: str = "student",
                step: int | None = None, search_widths: bool = True) -> ArchSet:
    """An `ArchSet` whose softmaxes equal the logged probabilities of `arch_set` at `step` (default: last)."""
    df = arch_history[arch_history["arch_set"] == arch_set]
    step = int(df["step"].max()) if step is None else step
    df = df[df["step"] == step]
    a = ArchSet(space, search_widths=search_widths, name=arch_set)
    with torch.no_grad():
        for kind in ("alpha", "beta", "gamma"):
            for s, scale in enumerate(SCALES):
                g = df[(df["kind"] == kind) & (df["scale"] == scale)]
                if g.empty:
                    continue
                p = getattr(a, kind)(s)
                probs = g.sort_values(["layer"], kind="stable").groupby("layer", sort=True)["prob"].apply(list)
                t = torch.tensor(np.log(np.clip(np.array(probs.tolist()), 1e-12, None)), dtype=p.dtype)
                if t.shape == p.shape:
                    p.copy_(t)
        g = df[df["kind"] == "stem"]
        if a.stem_kinds and not g.empty:  # a searched stem: its kinds' logged probabilities
            probs = g.set_index("choice")["prob"].reindex(list(a.stem_kinds)).to_numpy(float)
            a.stem.copy_(torch.tensor(np.log(np.clip(probs, 1e-12, None)), dtype=a.stem.dtype))
    return a


def penalty_gradients(a: ArchSet, expected: ExpectedLatency, lam: float, rates: tuple[float, float, float],
                      mode: str = "decoupled", arch_lr: float = 3e-4) -> pd.DataFrame:
    """Per kind (alpha, beta, gamma): its latency term (ms, for the decoupled penalty), the norm of the
    penalty's gradient on it, and the first-order change (ms) of the full expected latency if one Adam
    step of size `arch_lr` (each entry moves by about `arch_lr` against its gradient's sign) were taken
    on that kind alone."""
    a.zero_grad(set_to_none=True)
    loss, details = LatencyPenalty(expected, lam, mode, tuple(rates))(a)
    loss.backward()
    grads = {k: [None if p.grad is None else p.grad.detach().clone() for p in ps] for k, ps in a.by_kind().items()}
    a.zero_grad(set_to_none=True)
    full = expected(a)
    full.backward()
    rows = []
    for kind, params in a.by_kind().items():
        g_pen = [g for g in grads[kind] if g is not None]
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in g_pen))) if g_pen else 0.0
        change = 0.0
        for p, g in zip(params, grads[kind]):
            if g is not None and p.grad is not None:
                change += float((p.grad * (-arch_lr * torch.sign(g))).sum())
        rows.append({"kind": kind, "term_ms": details.get(f"latency_{kind}_ms", float("nan")), "grad_norm": norm,
                     "step_change_ms": change})
    a.zero_grad(set_to_none=True)
    df = pd.DataFrame(rows).set_index("kind")
    df.attrs.update(full_ms=details["latency_full_ms"], weighted_ms=details["latency_weighted_ms"])
    return df


def histograms(arch: Architecture) -> tuple[pd.Series, pd.Series]:
    """(operator counts over all kept cells: the paper's five and any other the network uses, output-width counts
    as fractions of 12) of an architecture."""
    used = [o for b in arch.branches for o in b.ops]
    ops = pd.Series(used).value_counts().reindex([o for o in OPS if o in PRIMITIVES or o in used], fill_value=0)
    counts = pd.Series([round(12 * w) for b in arch.branches for w in b.widths]).value_counts().sort_index()
    widths = pd.Series(counts.to_numpy(), index=[f"{k}/12" for k in counts.index])
    return ops, widths


def live_config(cfg, lam: float, penalty: str, rates: tuple[float, float, float] | None = None,
                band: tuple[float, float] | None = None):
    """`cfg` at the panel's setting: the student's latency weight `lam` and `penalty`, the decoupling `rates`, and
    with a `band` (FPS) adaptive λ on within it, as a real search (without one, λ stays fixed, as the sweep's
    runs); checked whole."""
    c = copy.deepcopy(cfg)
    c.latency.penalty = penalty
    c.search.lam = tuple([0.0] + [float(lam)] * (c.n_sets - 1))
    if rates is not None:
        c.latency.rates = tuple(float(r) for r in rates)
    c.search.adapt_lambda = band is not None
    if band is not None:
        c.search.fps_min = tuple([0.0] + [float(band[0])] * (c.n_sets - 1))
        c.search.fps_max = tuple([0.0] + [float(band[1])] * (c.n_sets - 1))
    return c.validate()


def live_search(cfg, lam: float, penalty: str, out: str | Path, on_epoch=None, rates=None, band=None,
                on_message=None) -> dict:
    """A search of `live_config(cfg, lam, penalty, rates, band)` into ``<out>/live-<penalty>-lam<lam>``; returns
    its sweep row (as `studies.run_sweep` writes them, with ``live`` set). `on_message(text)` hears the stages
    (data, then the search); `on_epoch(rows)` each epoch's records."""
    c = live_config(cfg, lam, penalty, rates, band)
    say = on_message or (lambda text: None)
    folder = Path(out) / f"live-{penalty}-lam{lam:.3g}"
    say(f"preparing the {c.profile} data set (generated the first time: about a minute)")
    prepare_data(c.data, progress=False)
    say(f"searching: {c.search.pretrain_epochs} pretraining + {c.search.search_epochs} search epochs of "
        f"{c.search.steps_per_epoch} steps")
    run_search(c, folder, progress=False, on_epoch=on_epoch)
    ep = load_history(folder)["epochs"]
    last = ep[(ep["arch_set"] == "student") & (ep["phase"] == "search")].iloc[-1]
    final_arch(folder, "student")  # checks the architecture file is there
    return {"run": folder.name, "penalty": penalty, "lam": float(lam), "arch_file": last["arch_file"],
            "ends": last["ends"], "latency_ms": last["latency_ms"], "fps": last["fps"],
            "miou": last[f"miou_{last['ends']}"], "skip_share": last["skip_share"],
            "zoomed_share": last["zoomed_share"], "removed_layers": last["removed_layers"], "folder": str(folder),
            "live": True}
