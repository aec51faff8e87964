"""Plots of the data: samples with colour overlays, class pixel frequencies."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from fasterseg.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, colorize, overlay


def plot_samples(samples: list[tuple[np.ndarray, np.ndarray]], titles: list[str] | None = None, axes=None):
    """A row per sample: image, colour labels, overlay, with a colour key of the classes shown.
    `samples`: [(RGB (H,W,3), train ids (H,W))] in Cityscapes' classes."""
    rows = [(img, colorize(lab), overlay(img, lab)) for img, lab in samples]
    fig = image_grid(rows, ("image", "labels (train ids)", "overlay"), titles, axes=axes)
    shown = np.unique(np.concatenate([lab.ravel() for _, lab in samples]))
    ids = [int(c) for c in shown if c < len(CITYSCAPES_CLASSES)]
    add_colour_key(fig, list(CITYSCAPES_CLASSES), CITYSCAPES_PALETTE, ids)
    return fig


def add_colour_key(fig, names: list[str], palette: np.ndarray, ids: list[int], ncol: int = 6) -> None:
    """A legend of colour patches (class `ids`, named `names`, coloured by `palette`) below a figure's images."""
    handles = [Patch(facecolor=palette[i] / 255, edgecolor="0.3", linewidth=0.4, label=names[i]) for i in ids]
    if handles:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(ncol, len(handles)),
                   fontsize=8, frameon=False, handlelength=1.2, columnspacing=1.0)


def _two_lines(title: str, width: int = 16) -> str:
    """A long row title broken at the underscore nearest its middle, so it fits beside one row."""
    cuts = [i for i, ch in enumerate(title) if ch == "_"]
    if len(title) <= width or not cuts:
        return title
    i = min(cuts, key=lambda k: abs(k - len(title) / 2))
    return title[:i + 1] + "\n" + title[i + 1:]


def image_grid(rows: list[tuple[np.ndarray, ...]], columns: tuple[str, ...], titles: list[str] | None = None,
               stamp: str = "", axes=None):
    """Pictures (H, W, 3) in a grid without ticks: one row per entry of `rows`, column titles on top,
    optional row titles at the left and a `stamp` line above."""
    n, k = len(rows), len(columns)
    if axes is None:
        h, w = rows[0][0].shape[:2]
        _, axes = plt.subplots(n, k, figsize=(9.6, 9.6 * n * h / (k * w) + (0.6 if stamp else 0.3)), squeeze=False)
    axes = np.atleast_2d(axes)
    for r, pics in enumerate(rows):
        for c, pic in enumerate(pics):
            ax = axes[r, c]
            ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
        if titles:
            axes[r, 0].set_ylabel(_two_lines(titles[r]), fontsize=8)
    fig = axes[0, 0].figure
    if stamp:
        fig.suptitle(stamp, fontsize=8)
    fig.subplots_adjust(wspace=0.02, hspace=0.04)
    return fig


def plot_class_frequencies(freq: pd.DataFrame | pd.Series, ax=None, log: bool = True):
    """Horizontal bars of the share of labelled pixels per class (percent), one bar group per split."""
    if isinstance(freq, pd.Series):
        freq = freq.to_frame("share")
    freq = freq.reindex([c for c in CITYSCAPES_CLASSES if c in freq.index] +
                        [c for c in freq.index if c not in CITYSCAPES_CLASSES])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.28 * len(freq) + 1))
    k = freq.shape[1]
    y = np.arange(len(freq))
    hgt = 0.8 / k
    colors = {c: CITYSCAPES_PALETTE[i] / 255 for i, c in enumerate(CITYSCAPES_CLASSES)}
    for j, col in enumerate(freq.columns):
        bar_colors = [colors.get(c, (0.5, 0.5, 0.5)) for c in freq.index]
        ax.barh(y + (j - (k - 1) / 2) * hgt, freq[col].fillna(0).to_numpy(), height=hgt, color=bar_colors,
                edgecolor="black", linewidth=0.3, alpha=1.0 if j == 0 else 0.55, label=str(col))
    ax.set_yticks(y, freq.index, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("share of labelled pixels (%)" + (", log scale" if log else ""))
    if k > 1:
        ax.legend(title="split", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return ax
