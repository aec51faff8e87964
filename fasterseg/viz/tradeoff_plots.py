"""Latency-accuracy plots of trained networks (`fasterseg.tradeoffs` points): static (matplotlib) and
interactive (plotly, hover shows what each point is)."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
import pandas as pd

KIND_STYLE = {"teacher": ("s", "tab:blue"), "searched student": ("o", "tab:orange"),
              "collapse study": ("D", "tab:purple"), "peer": ("^", "tab:green"), "published": ("*", "tab:red"),
              "searched for this CPU": ("P", "tab:brown")}


def plot_pareto(points: pd.DataFrame, baseline: float | None = None, title: str = "", ax=None):
    """mIoU (%) against measured latency (ms) with error bars (std over seeds), the Pareto front joined, and
    the majority-class baseline as a dashed line. Axis ranges follow the data."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 5))
    for kind, g in points.groupby("kind", sort=False):
        marker, color = KIND_STYLE.get(kind, ("o", "0.4"))
        ax.errorbar(g["latency_ms"], g["miou"], yerr=g["miou_std"].fillna(0), fmt=marker, color=color, ms=8,
                    capsize=3, label=kind)
        for k, (_, r) in enumerate(g.iterrows()):  # alternate label sides so neighbours do not overlap
            ax.annotate(r["name"], (r["latency_ms"], r["miou"]), textcoords="offset points", fontsize=8,
                        xytext=(7, 5 - 12 * (k % 2)), ha="left")
    front = points[points["front"]].sort_values("latency_ms")
    ax.plot(front["latency_ms"], front["miou"], color="0.3", lw=1, ls=":", label="Pareto front")
    lo, hi = float(points["miou"].min()), float(points["miou"].max())
    if baseline is not None and baseline > lo - 5:
        ax.axhline(baseline, color="0.5", ls="--", lw=1, label=f"majority class ({baseline:.1f} %)")
    else:  # far below every network: named in the title instead of squashing the axis
        ax.set_ylim(lo - 0.08 * (hi - lo) - 1, hi + 0.08 * (hi - lo) + 1)
    ax.set_xscale("log")
    from matplotlib.ticker import ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlim(points["latency_ms"].min() / 1.15, points["latency_ms"].max() * 1.5)  # room for the labels
    r = points.iloc[0]
    ax.set_xlabel(f"measured latency (ms, log scale), {r['backend']}, {r['resolution']}, batch 1, fp32", fontsize=9)
    ax.set_ylabel("mIoU (%), whole validation images", fontsize=9)
    ax.tick_params(labelsize=8)
    base = f"; majority class {baseline:.1f} %" if baseline is not None else ""
    ax.set_title(title or f"latency-accuracy trade-off (upper left is better{base})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def plotly_pareto(points: pd.DataFrame, baseline: float | None = None):
    """The same plot as `plot_pareto`, interactive: hover shows name, kind, mIoU ± std, latency, params, GMACs
    and where the numbers come from."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind, g in points.groupby("kind", sort=False):
        symbol = {"s": "square", "o": "circle", "D": "diamond", "^": "triangle-up", "*": "star", "P": "cross"}[
            KIND_STYLE.get(kind, ("o", ""))[0]]
        fig.add_trace(go.Scatter(
            x=g["latency_ms"], y=g["miou"], mode="markers+text", name=kind, text=g["name"], textposition="top right",
            marker={"symbol": symbol, "size": 11, "color": to_hex(KIND_STYLE.get(kind, ("", "gray"))[1])},
            error_y={"type": "data", "array": g["miou_std"].fillna(0)},
            customdata=g[["kind", "miou_std", "seeds", "params_M", "GMACs", "source"]].to_numpy(),
            hovertemplate="<b>%{text}</b> (%{customdata[0]})<br>mIoU %{y:.1f} ± %{customdata[1]:.1f} % "
                          "(%{customdata[2]} seeds)<br>latency %{x:.2f} ms<br>%{customdata[3]:.2f} M params, "
                          "%{customdata[4]:.2f} GMACs<br>%{customdata[5]}<extra></extra>"))
    front = points[points["front"]].sort_values("latency_ms")
    fig.add_trace(go.Scatter(x=front["latency_ms"], y=front["miou"], mode="lines", name="Pareto front",
                             line={"dash": "dot", "color": "gray"}, hoverinfo="skip"))
    if baseline is not None:
        fig.add_hline(y=baseline, line_dash="dash", line_color="gray",
                      annotation_text=f"majority class {baseline:.1f} %")
    r = points.iloc[0]
    fig.update_layout(xaxis_title=f"measured latency (ms), {r['backend']}, {r['resolution']}, batch 1, fp32",
                      yaxis_title="mIoU (%)", width=820, height=460, template="plotly_white",
                      title="latency-accuracy trade-off (hover a point)")
    return fig
