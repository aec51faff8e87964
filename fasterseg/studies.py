"""Studies made of several runs: the collapse study (coarse vs decoupled penalty at equal lambda) and the
side-by-side comparison of its searches; training studies under one budget and several seeds (a student
with and without distillation; the collapse study's students trained from scratch)."""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from fasterseg.config import RunConfig
from fasterseg.evaluation.run import evaluate_run
from fasterseg.nas.records import final_arch
from fasterseg.nas.run import run_search
from fasterseg.nas.searcher import SEARCH_SECTIONS
from fasterseg.nets.footprint import check_run
from fasterseg.nets.peers import PEERS
from fasterseg.runs import continuing, load_history, run_status
from fasterseg.training.trainer import run_train

COMPARE_COLUMNS = ["miou", "latency_ms", "fps", "skip_share", "zoomed_share", "first_down_32", "first_down_16",
                   "first_down_8", "removed_layers", "alpha_entropy", "undecided", "ends"]


def compare_runs(runs: dict[str, str | Path], arch_set: str = "student") -> pd.DataFrame:
    """Side by side, per search epoch of `arch_set` in several search runs: mIoU of the chosen branch
    pair, predicted latency, operator shares, where the branches first go down, alpha entropy. Columns
    are ``<run name>:<quantity>``, the index is the search epoch."""
    frames = []
    for name, d in runs.items():
        ep = load_history(d)["epochs"]
        ep = ep[(ep["arch_set"] == arch_set) & (ep["phase"] == "search")].copy()
        ep["miou"] = [r[f"miou_{r['ends']}"] for _, r in ep.iterrows()]
        cols = [c for c in COMPARE_COLUMNS if c in ep]
        frames.append(ep.set_index("epoch")[cols].add_prefix(f"{name}:"))
    return pd.concat(frames, axis=1)


def collapse_configs(cfg: RunConfig) -> dict[str, RunConfig]:
    """The two searches of the collapse study: `cfg` with the coarse and with the decoupled penalty, lambda
    fixed (no adaptation) so both pay the same price per millisecond."""
    out = {}
    for mode in ("coarse", "decoupled"):
        c = copy.deepcopy(cfg)
        c.latency.penalty, c.search.adapt_lambda = mode, False
        out[mode] = check_run(c, SEARCH_SECTIONS)
    return out


def _run_one(args):
    cfg_json, out = args
    return str(run_search(RunConfig.from_dict(json.loads(cfg_json)), out, progress=False))


def collapse_lines(table: pd.DataFrame, out: str | Path) -> list[str]:
    """The collapse study's comparison (`run_collapse`) as terminal lines, one column per penalty mode."""
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        return [table.round(3).T.to_string(), f"written to {Path(out) / 'comparison.csv'}"]


def run_collapse(cfg: RunConfig, out: str | Path, jobs: int = 1, progress: bool = True,
                 resume: bool = False) -> pd.DataFrame:
    """Run the collapse study into ``<out>/coarse`` and ``<out>/decoupled`` and write
    ``<out>/comparison.csv`` (`compare_runs` of the students). `jobs=2` runs both at once, one thread
    each. Returns the comparison table."""
    out = Path(out)
    cfgs = collapse_configs(cfg)
    if jobs > 1:
        for c in cfgs.values():
            c.runtime.threads = 1
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
            list(ex.map(_run_one, [(c.to_json(SEARCH_SECTIONS), str(out / m)) for m, c in cfgs.items()]))
    else:
        for m, c in cfgs.items():
            run_search(c, out / m, progress=progress, resume=resume and (out / m / "run.json").exists())
    table = compare_runs({m: out / m for m in cfgs})
    table.to_csv(out / "comparison.csv")
    return table


# -- training studies ------------------------------------------------------------------------------------
def train_variants(cfg: RunConfig, variants: dict[str, dict], seeds: tuple[int, ...], out: str | Path,
                   progress: bool = True) -> pd.DataFrame:
    """Train every variant (name -> {"model": architecture file or peer, "teacher": run or None}) once per
    seed under the same budget (`cfg.train`), evaluate each (`evaluate.evaluate_run`), and return one row
    per run: variant, seed, mIoU, pixel accuracy, best validation mIoU during training, params, GMACs and
    measured latency. Runs already finished are reused; written to ``<out>/results.csv`` (rows of other variants or
    seeds already there are kept)."""
    out = Path(out)
    rows = []
    for name, v in variants.items():
        for seed in seeds:
            c = copy.deepcopy(cfg)
            c.train.seed = seed
            run = out / f"{name}-seed{seed}"
            if run_status(run) != "done":
                run_train(c, v["model"], run, teacher=v.get("teacher"), progress=progress, **continuing(run))
            f = run / "eval" / "metrics.json"
            m = json.loads(f.read_text()) if f.exists() else evaluate_run(c, run, progress=progress)
            hist = load_history(run)["epochs"]
            row = {"variant": name, "seed": seed, "miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"],
                   "best_val_miou": hist["val_miou"].max(), "majority_miou": m["majority_baseline"]["miou"],
                   "params_M": m["params_M"], "GMACs": m["GMACs"]}
            row.update({f"measured_ms_{x['backend']}": x["median_ms"] for x in m["latency"] if "median_ms" in x})
            rows.append(row)
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "results.csv").exists():  # keep the rows of variants and seeds this call did not train
        old = pd.read_csv(out / "results.csv")
        mine = set(zip(df["variant"], df["seed"]))
        old = old[[(v, s) not in mine for v, s in zip(old["variant"], old["seed"])]]
        df = pd.concat([old, df], ignore_index=True) if len(old) else df
    df.to_csv(out / "results.csv", index=False)
    return df


def mean_std(df: pd.DataFrame, by: str = "variant", cols: tuple[str, ...] = ("miou",)) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1) over seeds, per variant."""
    g = df.groupby(by)[list(cols)]
    return g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std")).join(g.size().rename("seeds"))


def mean_per_class(study: str | Path, variant: str, seeds: tuple[int, ...] = (0, 1, 2)) -> pd.DataFrame:
    """Per-class IoU of one variant of a training study (``<study>/<variant>-seed<s>/eval/per_class.csv``),
    averaged over `seeds`: a frame indexed by class with one column ``iou``."""
    study = Path(study)
    tables = [pd.read_csv(study / f"{variant}-seed{s}" / "eval" / "per_class.csv", index_col="class")["iou"]
              for s in seeds]
    return pd.concat(tables, axis=1).mean(axis=1).to_frame("iou")


def distill_study(cfg: RunConfig, pipeline: str | Path, seeds: tuple[int, ...] = (0, 1, 2),
                  out: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """The pipeline's student trained from scratch with and without distillation from the pipeline's
    teacher, same budget and seeds (``<pipeline>/distill-study``)."""
    pipeline = Path(pipeline)
    student = pipeline / "archs" / "student.json"
    variants = {"distilled": {"model": student, "teacher": pipeline / "train-teacher"},
                "not_distilled": {"model": student, "teacher": None}}
    return train_variants(cfg, variants, seeds, out or pipeline / "distill-study", progress)


def collapse_training(cfg: RunConfig, study: str | Path, seeds: tuple[int, ...] = (0, 1, 2),
                      out: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """The final students of a collapse study (coarse and decoupled penalty) trained from scratch with the
    same budget and seeds, without distillation (``<study>/trained``); adds their predicted latency."""
    study = Path(study)
    out = Path(out) if out else study / "trained"
    variants = {}
    for mode in ("coarse", "decoupled"):
        arch = final_arch(study / mode, "student")
        variants[mode] = {"model": arch.save(out / "archs" / f"student_{mode}.json"), "teacher": None}
    return train_variants(cfg, variants, seeds, out, progress)


def peers_study(cfg: RunConfig, out: str | Path, seeds: tuple[int, ...] = (0,), names: tuple[str, ...] | None = None,
                progress: bool = True) -> pd.DataFrame:
    """The peer networks (`fasterseg.peers`) trained from scratch under the same budget (``<out>``)."""
    variants = {n: {"model": f"peer:{n}", "teacher": None} for n in (names or PEERS)}
    return train_variants(cfg, variants, seeds, out, progress)


# -- the latency-weight sweep ------------------------------------------------------------------------------
def sweep_configs(cfg: RunConfig, lams: tuple[float, ...], modes: tuple[str, ...] = ("coarse", "decoupled")) -> dict:
    """Search configs over a grid of the student's latency weight and both penalty modes (lambda fixed, so
    each run shows what that weight does): ``{"<mode>-lam<lam>": cfg}``."""
    out = {}
    for mode in modes:
        for lam in lams:
            c = copy.deepcopy(cfg)
            c.latency.penalty, c.search.adapt_lambda = mode, False
            c.search.lam = tuple([0.0] + [float(lam)] * (c.n_sets - 1))
            out[f"{mode}-lam{lam:g}"] = check_run(c, SEARCH_SECTIONS)
    return out


def run_sweep(cfg: RunConfig, out: str | Path, lams: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0),
              modes: tuple[str, ...] = ("coarse", "decoupled"), progress: bool = True) -> pd.DataFrame:
    """Run the searches of `sweep_configs` into ``<out>/<mode>-lam<lam>`` (finished ones are reused) and write
    ``<out>/sweep.csv``: per run, the student's final derived network (file, branches, predicted latency,
    search-time mIoU, operator shares)."""
    out = Path(out)
    rows = []
    for name, c in sweep_configs(cfg, lams, modes).items():
        if run_status(out / name) != "done":
            run_search(c, out / name, progress=progress, **continuing(out / name))
        ep = load_history(out / name)["epochs"]
        last = ep[(ep["arch_set"] == "student") & (ep["phase"] == "search")].iloc[-1]
        rows.append({"run": name, "penalty": c.latency.penalty, "lam": c.search.lam[-1], "arch_file": last["arch_file"],
                     "ends": last["ends"], "latency_ms": last["latency_ms"], "fps": last["fps"],
                     "miou": last[f"miou_{last['ends']}"], "skip_share": last["skip_share"],
                     "zoomed_share": last["zoomed_share"], "removed_layers": last["removed_layers"]})
    df = pd.DataFrame(rows)
    df.to_csv(out / "sweep.csv", index=False)
    return df


def run_study(kind: str, cfg: RunConfig, target: Path, seeds: tuple[int, ...] = (),
              lams: tuple[float, ...] = (), names: tuple[str, ...] = ()) -> list[str]:
    """`fasterseg study KIND`: distill (target: a pipeline folder), collapse (a collapse study folder), peers
    (an output folder; `names`: some of the peers) or sweep (an output folder). Returns the lines to print: the
    per-run table and the mean ± std."""
    seeds = seeds or (0, 1, 2)
    if kind == "sweep":
        return [run_sweep(cfg, target, lams or (0.01, 0.03, 0.1, 0.3, 1.0)).round(3).to_string(index=False)]
    run = {"distill": distill_study, "collapse": collapse_training}.get(kind)
    df = run(cfg, target, seeds) if run else peers_study(cfg, target, seeds, names or None)
    return [df.round(4).to_string(index=False), mean_std(df, cols=("miou",)).round(4).to_string()]


def refresh_latency(folder: str | Path) -> pd.DataFrame:
    """Copy each run's current measured latency (``eval/metrics.json``, e.g. after `evaluate
    --latency-only`) into a training study's ``results.csv``."""
    folder = Path(folder)
    df = pd.read_csv(folder / "results.csv")
    for i, r in df.iterrows():
        m = json.loads((folder / f"{r['variant']}-seed{int(r['seed'])}" / "eval" / "metrics.json").read_text())
        for x in m["latency"]:
            if "median_ms" in x:
                df.loc[i, f"measured_ms_{x['backend']}"] = x["median_ms"]
    df.to_csv(folder / "results.csv", index=False)
    return df
