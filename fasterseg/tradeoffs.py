"""Latency-accuracy trade-offs: the points of trained networks from committed runs, and their Pareto front.

A point is one network: its name, kind (searched student, teacher, peer, baseline, ...), mIoU (%) under the
kit's training budget with its spread over seeds, measured latency (ms) on a named backend at a named
resolution, and what it is (architecture file). `pareto_front` marks the points no other point beats on
both axes (lower latency and higher mIoU).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fasterseg.paths import display_path, resolve

POINT_COLUMNS = ["name", "kind", "miou", "miou_std", "seeds", "latency_ms", "backend", "resolution", "params_M",
                 "GMACs", "source"]


def pareto_front(latency: np.ndarray, miou: np.ndarray) -> np.ndarray:
    """Boolean mask of the points on the Pareto front: no other point has lower-or-equal latency and
    higher-or-equal mIoU with one of them strictly better."""
    lat, acc = np.asarray(latency, float), np.asarray(miou, float)
    keep = np.ones(len(lat), bool)
    for i in range(len(lat)):
        dominated = (lat <= lat[i]) & (acc >= acc[i]) & ((lat < lat[i]) | (acc > acc[i]))
        keep[i] = not dominated.any()
    return keep


def _latency(m: dict, backend: str) -> tuple[float, str]:
    for x in m["latency"]:
        if x["backend"] == backend and "median_ms" in x:
            return x["median_ms"], "x".join(map(str, x["resolution"]))
    return float("nan"), ""


def study_points(results_csv: str | Path, kind: str, backend: str = "onnxruntime", prefix: str = "") -> pd.DataFrame:
    """One point per variant of a training study (`studies.train_variants`): mIoU mean and std over seeds,
    latency of the first seed's evaluation (the same network for every seed)."""
    results_csv = Path(results_csv)
    df = pd.read_csv(results_csv)
    rows = []
    for variant, g in df.groupby("variant", sort=False):
        m = json.loads((results_csv.parent / f"{variant}-seed{int(g['seed'].iloc[0])}" / "eval" / "metrics.json")
                       .read_text())
        ms, res = _latency(m, backend)
        rows.append({"name": f"{prefix}{variant}", "kind": kind, "miou": 100 * g["miou"].mean(),
                     "miou_std": 100 * g["miou"].std(ddof=1) if len(g) > 1 else float("nan"), "seeds": len(g),
                     "latency_ms": ms, "backend": backend, "resolution": res, "params_M": m["params_M"],
                     "GMACs": m["GMACs"], "source": display_path(results_csv.parent)})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def run_point(run: str | Path, name: str, kind: str, backend: str = "onnxruntime") -> pd.DataFrame:
    """The point of one evaluated training run (``<run>/eval/metrics.json``)."""
    m = json.loads((Path(run) / "eval" / "metrics.json").read_text())
    ms, res = _latency(m, backend)
    return pd.DataFrame([{"name": name, "kind": kind, "miou": 100 * m["miou"], "miou_std": float("nan"), "seeds": 1,
                          "latency_ms": ms, "backend": backend, "resolution": res, "params_M": m["params_M"],
                          "GMACs": m["GMACs"], "source": display_path(run)}], columns=POINT_COLUMNS)


def reference_points(root: str | Path = "data/runs", backend: str = "onnxruntime") -> pd.DataFrame:
    """Every trained network of the committed reference runs under `root` that exists: the cpu pipeline's
    teacher, its student with and without distillation (3 seeds), the collapse study's coarse- and
    decoupled-penalty students (3 seeds), the peers, the students searched for this CPU (in the paper's space and
    in the CPU space, with and without distillation) and the published FasterSeg student trained under the same
    budget; with a ``front`` column marking the Pareto front."""
    root = resolve(root)
    parts = []
    pipe = root / "pipeline-cpu"
    if (pipe / "train-teacher" / "eval" / "metrics.json").exists():
        parts.append(run_point(pipe / "train-teacher", "teacher", "teacher", backend))
    if (pipe / "distill-study" / "results.csv").exists():
        parts.append(study_points(pipe / "distill-study" / "results.csv", "searched student", backend, "student "))
    trained = root / "collapse-cpu" / "trained" / "results.csv"
    if trained.exists():
        parts.append(study_points(trained, "collapse study", backend, ""))
    peers = root / "peers-cpu" / "results.csv"
    if peers.exists():
        parts.append(study_points(peers, "peer", backend))
    cpu_student = root / "cpu-student" / "results.csv"
    if cpu_student.exists():
        parts.append(study_points(cpu_student, "searched for this CPU", backend, ""))
    cpu_space = root / "cpu-space" / "distill-study" / "results.csv"
    if cpu_space.exists():
        parts.append(study_points(cpu_space, "searched in the CPU space", backend, "cpu-space student "))
    published = root / "published-cpu" / "results.csv"
    if published.exists():
        parts.append(study_points(published, "published", backend, "published "))
    if not parts:
        return pd.DataFrame(columns=POINT_COLUMNS + ["front"])
    df = pd.concat(parts, ignore_index=True)
    df["front"] = pareto_front(df["latency_ms"].to_numpy(), df["miou"].to_numpy())
    return df


def crowded(points: pd.DataFrame, span: float = 1.8) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The box (latency range in ms, mIoU range in %) holding the most points within a latency factor `span` and the
    mIoU range of the accurate ones (within 8 points of the best), padded: where a trade-off plot needs a close-up.
    None with fewer than four points there."""
    top = points[points["miou"] >= points["miou"].max() - 8]
    best = max(((lo, top[(top["latency_ms"] >= lo) & (top["latency_ms"] <= lo * span)]) for lo in top["latency_ms"]),
               key=lambda t: len(t[1]), default=(0, top.iloc[:0]))
    inside = best[1]
    if len(inside) < 4:
        return None
    lo_ms, hi_ms = inside["latency_ms"].min() / 1.08, inside["latency_ms"].max() * 1.08
    err = inside["miou_std"].fillna(0)
    return (lo_ms, hi_ms), (float((inside["miou"] - err).min()) - 1, float((inside["miou"] + err).max()) + 1)
