"""Re-time every committed reference run in one pass, round-robin (a clean, comparable latency column).

    .venv/bin/python scripts/retime_reference_runs.py [--weights init|best] [--rounds 10] [--root data/runs]

Every trained run under the root (a folder with ``model.json`` and ``eval/metrics.json``) is timed at the cpu
profile's evaluation size (1x3x512x1024, one thread, PyTorch and ONNX Runtime) by `evaluate.retime_runs`: each
round calls every network once on each runtime and then the reference convolution, so a machine whose speed drifts
during the pass moves all networks alike. The new latency entries go into each run's ``eval/metrics.json`` and each
study's ``results.csv``; the per-run times, ratios to the reference conv and its rate (GMAC/s) go to
``data/bench/retime_reference_runs.json``. A checkout holds no weights, so the default times each architecture
freshly initialised (``--weights init``: the same operators and shapes).
"""
from __future__ import annotations

import argparse
import json

from fasterseg.config import profile
from fasterseg.evaluation.run import retime_runs
from fasterseg.paths import display_path, resolve, write_text
from fasterseg.studies import refresh_latency
from fasterseg.timing import environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", choices=("init", "best"), default="init")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--root", default="data/runs")
    ap.add_argument("--out", default="data/bench/retime_reference_runs.json")
    args = ap.parse_args()
    cfg = profile("cpu")  # evaluation size 512x1024; retime_runs times on one thread
    root = resolve(args.root)
    runs = sorted(f.parent.parent for f in root.glob("**/eval/metrics.json")
                  if (f.parent.parent / "model.json").exists())
    report = {"environment": environment(1), **retime_runs(cfg, runs, args.weights, args.rounds)}
    studies = sorted({f.parent for f in root.glob("**/results.csv")})
    for folder in studies:
        refresh_latency(folder)
    report["studies_refreshed"] = [display_path(f) for f in studies]
    out = write_text(resolve(args.out), json.dumps(report, indent=2) + "\n")
    for run, entries in report["runs"].items():
        print(f"{run}: " + ", ".join(f"{x['backend']} {x['median_ms']:.1f} ms ({x['ratio_to_reference']:.2f}x ref)"
                                     for x in entries))
    print(f"reference conv {report['reference_gmacs_per_s']:.0f} GMAC/s; wrote {display_path(out)}")


if __name__ == "__main__":
    main()
