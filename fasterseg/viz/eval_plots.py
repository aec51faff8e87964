"""Plots of trained networks: prediction overlays, confusion matrices, per-class IoU, training curves.
Each takes plain data (arrays, tables) and a `stamp` line naming how the numbers were measured."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from fasterseg.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE, colorize
from fasterseg.viz.data_plots import add_colour_key, image_grid


def plot_overlays(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], titles: list[str] | None = None,
                  stamp: str = "", classes: tuple[list[str], np.ndarray] | None = None):
    """A row per image: image | ground truth | prediction, in the data set's colours (ignored pixels black), with a
    colour key of the classes shown. `samples`: [(RGB (H, W, 3) uint8, ground-truth train ids (H, W), predicted
    train ids (H, W))]; `classes`: (names, palette (C, 3) uint8), default Cityscapes'."""
    names, pal = classes or (list(CITYSCAPES_CLASSES), CITYSCAPES_PALETTE)
    rows = [(img, colorize(gt, pal), colorize(np.where(gt == IGNORE, IGNORE, pred), pal)) for img, gt, pred in samples]
    fig = image_grid(rows, ("image", "ground truth", "prediction"), titles, stamp)
    shown = np.unique(np.concatenate([np.concatenate([gt.ravel(), pred.ravel()]) for _, gt, pred in samples]))
    add_colour_key(fig, names, pal, [int(c) for c in shown if c != IGNORE and c < len(names)])
    return fig


def plot_confusion(cm: np.ndarray, names: list[str], stamp: str = "", ax=None):
    """Row-normalised confusion matrix (share of each ground-truth class predicted as each class), classes
    with no ground-truth pixels left out; colours span 0 to the largest share."""
    keep = cm.sum(1) > 0
    m = cm[keep][:, keep].astype(float)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    labels = [n for n, k in zip(names, keep) if k]
    if ax is None:
        _, ax = plt.subplots(figsize=(0.42 * len(labels) + 2.2, 0.42 * len(labels) + 1.2))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=float(m.max()))
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("ground truth", fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, label="share of the row")
    ax.set_title(stamp or "confusion matrix", fontsize=9)
    return ax


def plot_per_class(tables: dict[str, pd.DataFrame], baseline: float | None = None, stamp: str = "", ax=None):
    """Per-class IoU (%) of several networks side by side (`tables`: name -> frame with an ``iou`` column,
    indexed by class); classes absent everywhere are left out; `baseline` is drawn as the majority-class mIoU."""
    df = pd.DataFrame({k: 100 * t["iou"] for k, t in tables.items()}).dropna(how="all")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(df) + 2), 3.4))
    df.plot.bar(ax=ax, width=0.8)
    if baseline is not None:
        ax.axhline(100 * baseline, color="0.3", ls="--", lw=1, label=f"majority class (mIoU {100 * baseline:.1f})")
    ax.set_ylabel("IoU (%)", fontsize=9)
    ax.set_xlabel("")
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(stamp or "per-class IoU", fontsize=9)
    return ax


def plot_training_curves(histories: dict[str, pd.DataFrame], baseline: float | None = None, axes=None):
    """Training loss per epoch (left) and validation mIoU (right) of several runs (`histories`: name ->
    the run's ``epochs.csv``)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, ep in histories.items():
        axes[0].plot(ep["epoch"] + 1, ep["loss"], marker=".", label=name)
        v = ep.dropna(subset=["val_miou"])
        axes[1].plot(v["epoch"] + 1, 100 * v["val_miou"], marker="o", label=name)
    if baseline is not None:
        axes[1].axhline(100 * baseline, color="0.3", ls="--", lw=1, label="majority class")
    axes[0].set(xlabel="epoch", ylabel="training loss", title="training loss (OHEM + aux [+ KD])")
    axes[1].set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU, whole images")

    for ax in axes:
        ax.title.set_fontsize(9)
        ax.tick_params(labelsize=8)
        ax.xaxis.label.set_fontsize(9)
        ax.yaxis.label.set_fontsize(9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return axes
