"""Seconds per search step of this checkout against another checkout of the kit, interleaved.

The configuration is the paper's search space (L = 16, F = 12, both architecture sets) at batch 2 on
128x256 crops of synthetic 256x512 scenes (down-sampled x2 as the search does), one thread, on the CPU.
Each round starts one process per checkout (the other first) that builds the searcher, runs one warm-up
step and then `--steps` timed steps (architecture step + weight step, batch loading included); rounds
alternate, so both checkouts see the same machine. Writes the per-step times, their medians and the
speed-up (other / this) as JSON.

    .venv/bin/python scripts/compare_search_step.py --other ../kit-4f7c807 --out data/bench/search_step.json

The other checkout may be the kit at commit 4f7c807 (its `Searcher(cfg, folder)` API) or any later one
(the `Searcher(cfg, lut)` API of this one). Each process imports the kit from its own checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DATA = ["data.dataset=synthetic", "data.image_height=256", "data.image_width=512", "data.num_train=40",
        "data.num_val=8"]
SEARCH = ["search.batch_size=2", "search.crop=[128,256]"]


def steps_in_this_process(checkout: Path, n: int, data_root: Path) -> list[float]:
    """Run in a child process: time `n` search steps of the kit in `checkout`."""
    sys.path.insert(0, str(checkout))
    os.chdir(checkout)
    import torch

    torch.set_num_threads(1)
    from fasterseg.config import apply_overrides, profile

    data = DATA + [f"data.root={data_root}"]
    if (checkout / "fasterseg" / "runs.py").exists():  # the Searcher(cfg, lut) API
        from fasterseg.data.batching import batch_at
        from fasterseg.data.prepare import prepare_data
        from fasterseg.data.transforms import TrainTransform
        from fasterseg.latency import load_for
        from fasterseg.nas.run import search_data
        from fasterseg.nas.searcher import Searcher

        cfg = apply_overrides(profile("paper"), data + SEARCH + ["runtime.threads=1", "runtime.device=cpu",
                                                                 "latency.calibration=off"])
        sc = cfg.search
        prepare_data(cfg.data, progress=False)
        train, _, w_idx, a_idx = search_data(cfg)
        train.transform = TrainTransform(*sc.crop, sc.scale_min, sc.scale_max, downsample=sc.downsample)
        s = Searcher(cfg, load_for(cfg))

        def step(i):
            s.step("search", batch_at(train, w_idx, sc.batch_size, 0, i, sc.seed, 1),
                   batch_at(train, a_idx, sc.batch_size, 0, i, sc.seed, 2))
    else:  # commit 4f7c807: Searcher(cfg, folder) generates its data and owns its batches
        from fasterseg.nas.losses import downsample_labels
        from fasterseg.nas.run import batch_at
        from fasterseg.nas.searcher import Searcher

        cfg = apply_overrides(profile("paper"), data + SEARCH + ["search.threads=1"])
        sc = cfg.search
        s = Searcher(cfg, tempfile.mkdtemp(), progress=False)
        s.train.transform = s._transform("search")

        def step(i):
            xa, ya = batch_at(s.train, s.a_idx, sc.batch_size, 0, i, sc.seed, 2)
            s.arch_step(xa, downsample_labels(ya))
            xw, yw = batch_at(s.train, s.w_idx, sc.batch_size, 0, i, sc.seed, 1)
            s.weight_step(xw, downsample_labels(yw), pretrain=False)
    step(0)  # warm-up
    times = []
    for i in range(1, n + 1):
        t = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t)
    return times


def _commit(checkout: Path) -> str:
    """The checkout's commit (short hash, "+changes" when its tree differs from it)."""
    def git(*a):
        return subprocess.run(["git", "-C", str(checkout), *a], capture_output=True, text=True).stdout.strip()
    changed = git("status", "--porcelain", "--untracked-files=no")
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (" +changes" if changed else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--other", help="the other checkout of the kit (a folder); required")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per process")
    ap.add_argument("--out", help="JSON report path")
    ap.add_argument("--child", nargs=3, metavar=("CHECKOUT", "STEPS", "DATA_ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(steps_in_this_process(Path(args.child[0]), int(args.child[1]), Path(args.child[2]))))
        return 0
    if not args.other:
        ap.error("--other is required: a checkout of the kit to compare with")
    other = Path(args.other).resolve()
    if not (other / "fasterseg").is_dir():
        sys.exit(f"--other {args.other}: no fasterseg/ package there; give a checkout of the kit")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = {"other": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, checkout in (("other", other), ("this", HERE)):
                out = subprocess.run([sys.executable, __file__, "--child", str(checkout), str(args.steps),
                                      str(Path(tmp) / name)], capture_output=True, text=True, env=env)
                if out.returncode:
                    sys.exit(f"{name} checkout {checkout} failed:\n{out.stderr[-2000:]}")
                t = json.loads(out.stdout.strip().splitlines()[-1])
                times[name] += t
                print(f"round {r + 1} {name}: " + ", ".join(f"{x:.2f}" for x in t) + " s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {"config": "paper space (L=16, F=12), batch 2 at 128x256, one thread, CPU",
              "this": f"this checkout, commit {_commit(HERE)}", "other": f"another checkout, commit {_commit(other)}",
              "median_s_per_step": med, "speedup_this_over_other": med["other"] / med["this"],
              "seconds_per_step": times, "load_average_1min": os.getloadavg()[0]}
    print(f"median s/step: other {med['other']:.2f}, this {med['this']:.2f}; "
          f"this checkout is {report['speedup_this_over_other']:.2f}x faster")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
