"""Latency plots: predicted vs measured, operators against a plain conv and against their multiply-adds, latency by
part, backends compared."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from fasterseg.viz.graphs import SHORT


def plot_predicted_vs_measured(df: pd.DataFrame, summary: dict | None = None, ax=None):
    """Scatter of predicted (sum of LUT entries) against measured end-to-end latency (ms), with y = x. Bars: the
    inter-quartile spread of the runs, where the measurement is their median; none for an interleaved table's
    validation, whose measurement is the fastest run at the table's reference speed."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    fastest = "measured_ms_raw" in df
    ax.errorbar(df["measured_ms"], df["predicted_ms"], xerr=None if fastest else df.get("spread_ms"), fmt="o", ms=4,
                alpha=0.8, elinewidth=0.6, capsize=0)
    lo = 0.9 * min(df["measured_ms"].min(), df["predicted_ms"].min())
    hi = 1.1 * max(df["measured_ms"].max(), df["predicted_ms"].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlim(lo, hi), ax.set_ylim(lo, hi)
    ax.set_xlabel("measured end-to-end (ms" + (", fastest run at the table's reference speed)" if fastest else ")"))
    ax.set_ylabel("predicted: sum of LUT entries (ms)")
    if summary:
        ax.set_title(f"{summary['networks']} random networks: Spearman {summary['spearman']:.2f}, "
                     f"MAPE {100 * summary['mape']:.0f} %", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return ax


def plot_latency_breakdown(breakdowns: dict[str, pd.DataFrame], ax=None, title: str | None = None,
                           measured: dict[str, float] | None = None):
    """Stacked bars of predicted latency (ms) per network part (a part no network has gets no legend entry).
    `breakdowns`: {name: `LatencyTable.breakdown`}; `measured`: {name: a measured latency (ms)} marked on its bar."""
    order = ["stem", "cell", "refine", "glue", "fusion", "head"]
    colors = dict(zip(order, plt.get_cmap("tab10")(np.arange(len(order)))))
    sums = {name: bd.groupby("part")["latency_ms"].sum() for name, bd in breakdowns.items()}
    parts = [p for p in order if any(float(by.get(p, 0.0)) > 0 for by in sums.values())]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.8 * len(breakdowns) + 1.2))
    labelled = set()
    for y, (name, by) in enumerate(sums.items()):
        left = 0.0
        for p in parts:
            v = float(by.get(p, 0.0))
            ax.barh(y, v, left=left, color=colors[p], label=None if p in labelled else p, edgecolor="white")
            labelled.add(p)
            left += v
        end = left
        if measured and name in measured:
            ms = measured[name]
            ax.plot([ms, ms], [y - 0.42, y + 0.42], color="k", lw=2)
            ax.annotate(f"measured {ms:.2f} ms", (ms, y + 0.42), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
            end = max(left, ms)  # the total's label starts right of the mark, never under it
        ax.text(end, y, f" {left:.2f} ms ({1000 / left:.0f} FPS)", va="center", fontsize=8)
    ax.set_yticks(range(len(breakdowns)), list(breakdowns), fontsize=8)
    ax.set_xlabel("predicted latency (ms): sum of LUT entries")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.3)
    ax.legend(ncol=len(parts), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_backend_scatter(df: pd.DataFrame, other: str, ax=None):
    """Per network: end-to-end latency on `other` against torch (ms), with y = x."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.0))
    col = f"measured_ms_{other}"
    ax.scatter(df["measured_ms"], df[col], s=14)
    hi = 1.05 * max(df["measured_ms"].max(), df[col].max())
    ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlim(0, hi), ax.set_ylim(0, hi)
    ax.set_xlabel("PyTorch eager (ms)")
    ax.set_ylabel(f"{other} (ms)")
    speed = float((df["measured_ms"] / df[col]).median())
    ax.set_title(f"same {len(df)} networks: {other} {speed:.2f}x faster (median)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


# saturated and far apart, for scatter points (the graph drawings' pastel OP_COLORS are fills behind text)
POINT_COLORS = {"conv": "tab:blue", "conv_2x": "tab:cyan", "zoomed_conv": "tab:orange", "zoomed_conv_2x": "tab:brown",
                "dwsep": "tab:red", "ir_e3": "tab:olive", "ir_e6": "tab:purple"}


def plot_latency_vs_macs(frames: dict[str, pd.DataFrame], reference_gmacs_per_s: dict[str, float] | None = None,
                         axes=None):
    """One panel per table: each operator entry's multiply-adds (x, GMACs, log) against its latency inside a network
    (y, ms, log), coloured by operator (`latency.table.latency_vs_macs` frames). The dashed line is what the
    reference conv's rate (GMAC/s, per panel) would predict: points above it run below that rate."""
    if axes is None:
        _, axes = plt.subplots(1, len(frames), figsize=(5.2 * len(frames), 4.2), squeeze=False, sharey=True,
                               layout="constrained")
        axes = axes[0]
    for ax, (title, df) in zip(axes, frames.items()):
        for op, g in df.groupby("op", sort=False):
            ax.scatter(g["macs"] / 1e9, g["latency_ms"], s=14, alpha=0.8, color=POINT_COLORS.get(op, "k"),
                       edgecolors="none", label=SHORT.get(op, op))
        rate = (reference_gmacs_per_s or {}).get(title)
        if rate:
            x = np.geomspace(df["macs"].min() / 1e9, df["macs"].max() / 1e9, 50)
            ax.plot(x, x / rate * 1e3, "k--", lw=1, label=f"reference conv's rate ({rate:.0f} GMAC/s)")
        ax.set(xscale="log", yscale="log", xlabel="multiply-adds (GMACs)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("latency inside a network (ms)")
    return axes


def plot_op_cost_ratios(frames: dict[str, pd.DataFrame], base: str = "conv", axes=None):
    """One panel per table (`latency.table.op_cost_ratios` frames): per operator, a bar per scale of its latency
    over the plain conv's on the same input, and a black tick at its multiply-adds over the conv's (log scale; the
    dotted line is the conv itself). Where bar and tick part, multiply-adds mispredict latency."""
    if axes is None:
        _, axes = plt.subplots(1, len(frames), figsize=(4.6 * len(frames), 3.6), squeeze=False, layout="constrained")
        axes = axes[0]
    scale_colors = {"1/8": "#6baed6", "1/16": "#3182bd", "1/32": "#08519c"}
    for ax, (title, df) in zip(axes, frames.items()):
        ops = list(dict.fromkeys(df["op"]))
        scales = [s for s in scale_colors if s in set(df["scale"])]
        width = 0.8 / len(scales)
        for i, op in enumerate(ops):
            for j, sc in enumerate(scales):
                r = df[(df["op"] == op) & (df["scale"] == sc)]
                if r.empty:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                ax.bar(x, r["latency_ratio"].iloc[0], width * 0.92, color=scale_colors[sc],
                       label=f"latency, at {sc}" if i == 0 else None)
                ax.plot([x - width / 2, x + width / 2], [r["macs_ratio"].iloc[0]] * 2, color="k", lw=2.2,
                        label="multiply-adds" if i == 0 and j == 0 else None)
        ax.axhline(1, color="k", ls=":", lw=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".strip("0.")[:1] in ("2", "5")
                                                   else ""))
        ax.set_xticks(range(len(ops)), [SHORT.get(o, o) for o in ops], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.tick_params(labelsize=8, which="both")
    values = pd.concat([df[["latency_ratio", "macs_ratio"]] for df in frames.values()]).to_numpy()
    for ax in axes:  # one range for every panel, so bars of equal height mean equal ratios
        ax.set_ylim(np.nanmin(values) / 1.4, np.nanmax(values) * 1.4)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, fontsize=7, loc="outside lower center", ncol=4, frameon=False)
    axes[0].set_ylabel(f"relative to a plain {base} on the same input", fontsize=8)
    return axes
