"""The pipeline's report: ``<out>/report.md`` and its figures (architectures drawn, training curves,
per-class IoU against the majority baseline, prediction overlays), every number stamped with how it was
measured."""
from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from fasterseg.config import RunConfig
from fasterseg.nets.arch import Architecture
from fasterseg.paths import write_text
from fasterseg.runs import load_history
from fasterseg.viz.eval_plots import plot_per_class, plot_training_curves
from fasterseg.viz.graphs import arch_graph
from fasterseg.viz.style import save_figure


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A pandas frame as a GitHub markdown table (index first)."""
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for idx, row in df.iterrows():
        cells = [str(idx)] + [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_figures(out: Path, runs: dict[str, Path], metrics: dict[str, dict], archs: dict[str, Path]) -> list[Path]:
    """Draw the report's figures into ``<out>/figures``; returns their paths."""
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, f in archs.items():
        p = figs / f"arch_{name}.png"
        p.write_bytes(arch_graph(Architecture.load(f), f"{name} (derived from the search)").pipe(format="png"))
        paths.append(p)
    base = metrics["student"]["majority_baseline"]["miou"]
    axes = plot_training_curves({n: load_history(r)["epochs"] for n, r in runs.items()}, baseline=base)
    paths.append(save_figure(axes[0].figure, figs / "training_curves.png"))
    plt.close(axes[0].figure)
    tables = {n: pd.read_csv(r / "eval" / "per_class.csv", index_col="class") for n, r in runs.items()}
    ax = plot_per_class(tables, baseline=base, stamp="per-class IoU on the whole validation images")
    paths.append(save_figure(ax.figure, figs / "per_class_iou.png"))
    plt.close(ax.figure)
    for n, r in runs.items():
        for kind in ("overlays", "confusion"):
            src = r / "eval" / f"{kind}.png"
            if src.exists():
                paths.append(Path(shutil.copy(src, figs / f"{kind}_{n}.png")))
    return paths


def write_report(cfg: RunConfig, out: Path, summary: pd.DataFrame, runs: dict[str, Path], metrics: dict[str, dict],
                 exported: dict, archs: dict[str, Path]) -> tuple[Path, list[Path]]:
    """Write ``report.md`` and its figures; returns (report path, figure paths)."""
    figs = report_figures(out, runs, metrics, archs)
    m = metrics["student"]
    lat = "; ".join(f"{x['backend']}: {x['device']}, {x['threads']} thread(s), {x['precision']}, batch {x['batch']}, "
                    f"{x['resolution'][0]}x{x['resolution'][1]}" for x in m["latency"] if "median_ms" in x)
    lines = [
        f"# Pipeline report ({cfg.profile} profile)", "",
        f"Data: {cfg.data.dataset} ({cfg.data.root}); search: {cfg.search.pretrain_epochs} + "
        f"{cfg.search.search_epochs} epochs; training: {cfg.train.epochs} epochs x {cfg.train.steps_per_epoch} steps, "
        f"batch {cfg.train.batch_size}, crop {cfg.train.crop[0]}x{cfg.train.crop[1]}; the student distilled from the "
        f"teacher (weight {cfg.distill.weight}, T = {cfg.distill.temperature}, reduction {cfg.distill.reduction}).", "",
        "## Summary", "",
        markdown_table(summary.round(3)), "",
        f"- params_M, GMACs: inference network at {cfg.latency.height}x{cfg.latency.width} (convolution MACs).",
        f"- predicted_ms: the latency table {cfg.latency.table}; measured_ms_*: {lat}.",
        f"- miou: whole validation images ({m['images']} at {m['resolution'][0]}x{m['resolution'][1]}"
        f"{', with flip' if m['flip'] else ''}); majority_miou: predicting the most frequent training class "
        f"(class {m['majority_baseline']['class']}) everywhere.",
        "- search_miou: the supernet's own prediction during the search (not a trained network).", "",
        "## Architectures", "",
        *[f"![{n}](figures/arch_{n}.png)" for n in archs], "",
        "## Training", "", "![training curves](figures/training_curves.png)", "",
        "## Per-class IoU", "", "![per-class IoU](figures/per_class_iou.png)", "",
        "## Predictions", "",
        *[f"![{n}](figures/overlays_{n}.png)" for n in runs if (out / "figures" / f"overlays_{n}.png").exists()], "",
        "## Export", "",
        f"ONNX (opset {exported['opset']}, BN folded: {exported['folded_bn']} layers) at "
        f"{exported['height']}x{exported['width']}: `{exported['onnx']}`; max |ONNX Runtime - PyTorch| logit "
        f"difference {exported.get('max_abs_diff', float('nan')):.2e}, class agreement "
        f"{100 * exported.get('class_agreement', float('nan')):.2f} %. TensorRT: {exported['tensorrt']}.",
    ]
    return write_text(out / "report.md", "\n".join(lines)), figs
