"""Matplotlib plots of architectures: where the cost is, and how close each derivation decision was."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

PART_NAMES = {"stem": "stem", "branch_cells": "searched cells", "refine": "refinement", "ffm": "fusion",
              "head": "head", "head16": "aux head 1/16", "head32": "aux head 1/32"}


def plot_cost_breakdown(counts: dict[str, pd.DataFrame], ax=None, column: str = "GMACs"):
    """Stacked horizontal bars: share of `column` per network part, one bar per network.

    `counts`: {network name: frame from `fasterseg.counting.count`} (the ``total`` row is ignored).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.7 * len(counts) + 1.2))
    parts = [p for p in PART_NAMES if any(p in df.index for df in counts.values())]
    colors = plt.get_cmap("tab10")(np.arange(len(parts)))
    for y, (name, df) in enumerate(counts.items()):
        total = df.loc["total", column]
        left = 0.0
        for p, c in zip(parts, colors):
            v = df[column].get(p, 0.0) / total * 100 if total else 0.0
            ax.barh(y, v, left=left, color=c, label=PART_NAMES[p] if y == 0 else None, edgecolor="white")
            if v >= 6:
                ax.text(left + v / 2, y, f"{v:.0f}%", ha="center", va="center", fontsize=8, color="white")
            left += v
    ax.set_yticks(range(len(counts)), [f"{n}\n({df.loc['total', column]:.1f} {column})" for n, df in counts.items()],
                  fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"share of {column} (%)")
    ax.legend(ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    return ax


def plot_margins(decisions: pd.DataFrame, ax=None):
    """Each derivation decision's margin p(best) - p(second), by kind, on a log axis: how fragile it was."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 2.6))
    df = decisions.dropna(subset=["margin"]) if "margin" in decisions else decisions.iloc[0:0]
    kinds = [k for k in ("down", "op", "width") if k in set(df["kind"])]
    for i, k in enumerate(kinds):
        m = df.loc[df["kind"] == k, "margin"].clip(lower=1e-5).to_numpy()
        jitter = (np.arange(len(m)) % 7 - 3) * 0.04
        ax.scatter(m, i + jitter, s=18, alpha=0.8, label=k)
        ax.plot([np.median(m)] * 2, [i - 0.3, i + 0.3], color="black", lw=1.5)
    ax.set_xscale("log")
    ax.set_yticks(range(len(kinds)), [f"{k} ({(df['kind'] == k).sum()})" for k in kinds])
    ax.set_xlabel("margin: p(chosen) − p(runner-up)   (black bar: median)")
    ax.grid(axis="x", alpha=0.3)
    return ax
