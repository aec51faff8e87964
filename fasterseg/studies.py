"""Studies made of several searches: the collapse study (coarse vs decoupled penalty at equal lambda)
and the side-by-side comparison of runs that its table and notebook 04 read."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd

from .config import RunConfig
from .runs import load_history
from .search import SEARCH_SECTIONS, run_search

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
        out[mode] = c.validate(SEARCH_SECTIONS)
    return out


def _run_one(args):
    cfg_json, out = args
    return str(run_search(RunConfig.from_dict(json.loads(cfg_json)), out, progress=False))


def run_collapse(cfg: RunConfig, out: str | Path, jobs: int = 1, progress: bool = True,
                 resume: bool = False) -> pd.DataFrame:
    """Run the collapse study into ``<out>/coarse`` and ``<out>/decoupled`` and write
    ``<out>/comparison.csv`` (`compare_runs` of the students). `jobs=2` runs both at once, one thread
    each. Returns the comparison table."""
    out = Path(out)
    cfgs = collapse_configs(cfg)
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

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
