"""`fasterseg figures`: regenerate every figure in ``figures/`` from data and logged runs.

Each capability adds a producer to `PRODUCERS`; notebooks call the same `plot_*` functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt

from .config import profile
from .viz.style import save_figure


def data_figures(out: Path) -> list[Path]:
    """Synthetic samples with colour labels, and class pixel frequencies (tiny profile set)."""
    from .data.cityscapes import build_dataset
    from .data.check import check_tree
    from .viz.data_plots import plot_class_frequencies, plot_samples

    cfg = profile("tiny").data
    ds = build_dataset(cfg, "train")
    samples = [ds.load(i) for i in range(4)]
    fig = plot_samples(samples, titles=[s.name for s in ds.samples[:4]])
    paths = [save_figure(fig, out / "data_synthetic_samples.png")]
    plt.close(fig)
    summary = check_tree(ds.root, "cityscapes")
    ax = plot_class_frequencies(summary.frequencies())
    ax.set_title(f"synthetic street scenes ({cfg.image_height}x{cfg.image_width}, tiny profile)", fontsize=9)
    paths.append(save_figure(ax.figure, out / "data_class_frequencies.png"))
    plt.close(ax.figure)
    return paths


def arch_figures(out: Path) -> list[Path]:
    """Path diagrams and supernet grids of the published teacher and student, their cost breakdown,
    and the margins of the student's derivation decisions."""
    from . import archs
    from .arch import decision_margins, derive
    from .counting import count
    from .network import DerivedNet
    from .space import SearchSpace
    from .viz.arch_plots import plot_cost_breakdown, plot_margins
    from .viz.graphs import arch_graph, supernet_graph

    paths, counts = [], {}
    for name in ("fasterseg_student", "fasterseg_teacher"):
        arch = archs.load(name)
        p = out / f"arch_{name}.png"
        p.write_bytes(arch_graph(arch, f"{name} (published; derived with the original procedure)").pipe(format="png"))
        paths.append(p)
        params = archs.load_params(name)
        probs = {k: __import__("torch").softmax(v, -1).numpy() for k, v in params["logits"].items()}
        p = out / f"supernet_{name}.png"
        p.write_bytes(supernet_graph(probs, params["layers"], f"{name}: searched supernet parameters").pipe(format="png"))
        paths.append(p)
        counts[name] = count(DerivedNet(arch, aux=False), (1, 3, 1024, 2048))
    ax = plot_cost_breakdown(counts)
    ax.set_title("where the multiply-adds are (1x3x1024x2048, inference)", fontsize=9)
    paths.append(save_figure(ax.figure, out / "arch_cost_breakdown.png"))
    plt.close(ax.figure)
    p = archs.load_params("fasterseg_student")
    student = derive(p["logits"], SearchSpace(p["layers"], p["fch"]), 8 / 12, 8 / 12, 19)
    ax = plot_margins(decision_margins(student))
    ax.set_title("published student: how close each derivation decision was", fontsize=9)
    paths.append(save_figure(ax.figure, out / "arch_decision_margins.png"))
    plt.close(ax.figure)
    return paths


PRODUCERS: list[Callable[[Path], list[Path]]] = [data_figures, arch_figures]


def regenerate(out: str | Path = "figures") -> list[Path]:
    """Run every producer; returns the written paths."""
    from tqdm.auto import tqdm

    from .paths import resolve

    out = resolve(out)
    written: list[Path] = []
    for producer in tqdm(PRODUCERS, desc="figures"):
        written += producer(out)
    return written
