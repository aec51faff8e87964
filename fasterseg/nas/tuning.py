"""Pure functions behind the latency-weight tuning panel (notebook 05, `viz.widgets`).

- `nearest_run`: the run of a committed λ sweep (`studies.run_sweep`) nearest to a chosen λ (in log λ) and
  penalty mode, with its derived student.
- `arch_set_at`: an `ArchSet` rebuilt from a run's logged probabilities (logits = log p: softmax gives back
  the same distributions) at a step.
- `penalty_gradients`: the decoupled terms of the latency penalty at given rates and λ, their gradients on
  α, β and γ, and what one architecture step would do to the expected latency.
- `histograms`: operator and width counts of a derived architecture.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fasterseg.config import RunConfig
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


def live_search(cfg, lam: float, penalty: str, out: str | Path, on_epoch=None) -> dict:
    """A search of `cfg` at the student's latency weight `lam` (fixed) and `penalty` into
    ``<out>/live-<penalty>-lam<lam>``; returns its sweep row (as `studies.run_sweep` writes them)."""
    c = copy.deepcopy(cfg)
    c.latency.penalty, c.search.adapt_lambda = penalty, False
    c.search.lam = tuple([0.0] + [float(lam)] * (c.n_sets - 1))
    folder = Path(out) / f"live-{penalty}-lam{lam:.3g}"
    run_search(c, folder, progress=False, on_epoch=on_epoch)
    ep = load_history(folder)["epochs"]
    last = ep[(ep["arch_set"] == "student") & (ep["phase"] == "search")].iloc[-1]
    final_arch(folder, "student")  # checks the architecture file is there
    return {"run": folder.name, "penalty": penalty, "lam": float(lam), "arch_file": last["arch_file"],
            "ends": last["ends"], "latency_ms": last["latency_ms"], "fps": last["fps"],
            "miou": last[f"miou_{last['ends']}"], "skip_share": last["skip_share"],
            "zoomed_share": last["zoomed_share"], "removed_layers": last["removed_layers"], "folder": str(folder)}
