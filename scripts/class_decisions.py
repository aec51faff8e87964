"""What a cheaper class decision costs networks trained with another: their mIoU with their own class decision and
with others (default: bilinear8 and nearest8) applied to their 1/8 logits.

    .venv/bin/python scripts/class_decisions.py [--runs RUN ...] [--decisions ...] [--out FILE.json]

Needs the runs' weights (a training leaves ``model_best.pt``; a checkout holds none), so it runs where the runs
were trained; runs without weights are left out and named. Default runs: Fast-SCNN and LR-ASPP of the cpu-budget
peers study and the CPU-space student (distilled), 3 seeds each, under the cpu profile's evaluation (64 whole
validation images). Their time up to the class map in a decision: `fasterseg bench networks --output classes
--decision nearest8`.
"""
from __future__ import annotations

import argparse
import json

from fasterseg.config import profile
from fasterseg.evaluation.run import decision_scores
from fasterseg.nets.network import DECISIONS
from fasterseg.paths import resolve, write_text
from fasterseg.timing import environment

PEERS = ("fast_scnn", "lraspp_mobilenetv3_large")
DEFAULT_RUNS = [f"data/runs/peers-cpu/{n}-seed{s}" for n in PEERS for s in (0, 1, 2)]
DEFAULT_RUNS += [f"data/runs/cpu-space/distill-study/distilled-seed{s}" for s in (0, 1, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=DEFAULT_RUNS)
    ap.add_argument("--decisions", nargs="*", choices=DECISIONS, default=["bilinear8", "nearest8"])
    ap.add_argument("--out", default="data/bench/class-decisions.json")
    args = ap.parse_args()
    runs = [resolve(r) for r in args.runs if (resolve(r) / "model_best.pt").exists()]
    print(f"{len(runs)} of {len(args.runs)} runs hold their weights:", ", ".join(r.name for r in runs))
    df = decision_scores(profile("cpu"), runs, tuple(args.decisions))
    summary = df.assign(miou=100 * df["miou"]).groupby(["model", "decision"])["miou"].agg(["mean", "std", "count"])
    print(summary.round(2).to_string())
    report = {"environment": environment(1), "profile": "cpu", "rows": df.to_dict(orient="records"),
              "mean_miou_percent": {f"{m} | {d}": r["mean"] for (m, d), r in summary.iterrows()}}
    print(write_text(resolve(args.out), json.dumps(report, indent=2)))


if __name__ == "__main__":
    main()
