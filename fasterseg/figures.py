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


PRODUCERS: list[Callable[[Path], list[Path]]] = [data_figures]


def regenerate(out: str | Path = "figures") -> list[Path]:
    """Run every producer; returns the written paths."""
    from tqdm.auto import tqdm

    from .paths import resolve

    out = resolve(out)
    written: list[Path] = []
    for producer in tqdm(PRODUCERS, desc="figures"):
        written += producer(out)
    return written
