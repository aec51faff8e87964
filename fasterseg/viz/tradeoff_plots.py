"""Latency-accuracy plots of trained networks (`fasterseg.tradeoffs` points): static (matplotlib) and
interactive (plotly, hover shows what each point is)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_hex
from matplotlib.ticker import NullFormatter

KIND_STYLE = {"teacher": ("s", "tab:blue"), "searched student": ("o", "tab:orange"),
              "collapse study": ("D", "tab:purple"), "peer": ("^", "tab:green"), "published": ("*", "tab:red"),
              "searched for this CPU": ("P", "tab:brown"), "searched in the CPU space": ("X", "tab:cyan")}
# the same markers in plotly's names
PLOTLY_SYMBOLS = {"s": "square", "o": "circle", "D": "diamond", "^": "triangle-up", "*": "star", "P": "cross",
                  "X": "x"}
assert {m for m, _ in KIND_STYLE.values()} <= set(PLOTLY_SYMBOLS), "every kind's marker needs a plotly symbol"

# short labels for the plots (the points keep their run names, which the tables and the benchmarks use)
LABELS = {"fast_scnn": "Fast-SCNN", "lraspp_mobilenetv3_large": "LR-ASPP", "bisenetv2": "BiSeNetV2",
          "ddrnet23_slim": "DDRNet-23-slim", "student distilled": "student, KD",
          "student not_distilled": "student, no KD",
          "coarse": "collapse: coarse", "decoupled": "collapse: decoupled", "cpu_student": "CPU student, KD",
          "cpu_student_no_kd": "CPU student, no KD", "cpu_student_light_stem": "CPU student, light stem",
          "published fasterseg_student": "published FasterSeg student",
          "cpu-space student distilled": "CPU-space student, KD",
          "cpu-space student not_distilled": "CPU-space student, no KD"}


def plot_label(name: str) -> str:
    """The short label of a point named `name` (its name where none is set)."""
    return LABELS.get(name, name)


def plot_pareto(points: pd.DataFrame, baseline: float | None = None, title: str = "", ax=None,
                zoom: tuple[tuple[float, float], tuple[float, float]] | None = None):
    """mIoU (%) against measured latency (ms) with error bars (std over seeds), the Pareto front joined, and
    the majority-class baseline as a dashed line. Axis ranges follow the data. `zoom` ((ms from, to), (mIoU from,
    to)): a second panel enlarges that crowded box, where its points are labelled (the box is drawn on the first).
    Returns the first axes."""
    if ax is None:
        fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(14, 6) if zoom else (9, 6), squeeze=False,
                                 width_ratios=(1.25, 1) if zoom else None, layout="constrained")
        ax, zax = axes[0, 0], (axes[0, 1] if zoom else None)
    else:
        zax = None
    inside = np.zeros(len(points), bool)
    if zoom and zax is not None:
        (zx0, zx1), (zy0, zy1) = zoom
        inside = ((points["latency_ms"] >= zx0) & (points["latency_ms"] <= zx1) & (points["miou"] >= zy0)
                  & (points["miou"] <= zy1)).to_numpy()
    for a in (ax, zax):
        if a is None:
            continue
        for kind, g in points.groupby("kind", sort=False):
            marker, color = KIND_STYLE.get(kind, ("o", "0.4"))
            a.errorbar(g["latency_ms"], g["miou"], yerr=g["miou_std"].fillna(0), fmt=marker, color=color, ms=8,
                       capsize=3, label=kind if a is ax else None)
        front = points[points["front"]].sort_values("latency_ms")
        a.plot(front["latency_ms"], front["miou"], color="0.3", lw=1, ls=":", label="Pareto front" if a is ax else None)
        a.set_xscale("log")
        a.xaxis.set_minor_formatter(NullFormatter())
        a.tick_params(labelsize=8)
    lo, hi = float(points["miou"].min()), float(points["miou"].max())
    if baseline is not None and baseline > lo - 5:
        ax.axhline(baseline, color="0.5", ls="--", lw=1, label=f"majority class ({baseline:.1f} %)")
    else:  # far below every network: named in the title instead of squashing the axis
        ax.set_ylim(lo - 0.08 * (hi - lo) - 1, hi + 0.08 * (hi - lo) + 1)
    x0, x1 = points["latency_ms"].min() / 1.15, points["latency_ms"].max() * 1.5  # room for the labels
    ax.set_xlim(x0, x1)
    ticks = [t for t in (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 500, 700, 1000, 2000)
             if x0 <= t <= x1]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    outside = ~inside
    label_points(ax, points["latency_ms"].to_numpy()[outside], points["miou"].to_numpy()[outside],
                 [plot_label(n) for n, o in zip(points["name"], outside) if o])
    r = points.iloc[0]
    xlabel = f"measured latency (ms, log scale), {r['backend']}, {r['resolution']}, batch 1, fp32"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("mIoU (%), whole validation images", fontsize=9)
    base = f"; majority class {baseline:.1f} %" if baseline is not None else ""
    ax.set_title(title or f"latency-accuracy trade-off (upper left is better{base})", fontsize=9)
    if zax is not None:
        (zx0, zx1), (zy0, zy1) = zoom
        ax.add_patch(plt.Rectangle((zx0, zy0), zx1 - zx0, zy1 - zy0, fill=False, ls="--", lw=0.8, color="0.4"))
        ax.annotate("enlarged on the right", (zx1, zy1), xytext=(2, 2), textcoords="offset points", fontsize=7,
                    color="0.4")
        zax.set_xlim(zx0, zx1), zax.set_ylim(zy0, zy1)
        zt = [t for t in (40, 50, 60, 70, 80, 90, 100, 120, 150) if zx0 <= t <= zx1]
        zax.set_xticks(zt, [f"{t:g}" for t in zt])
        label_points(zax, points["latency_ms"].to_numpy()[inside], points["miou"].to_numpy()[inside],
                     [plot_label(n) for n, i in zip(points["name"], inside) if i])
        zax.set_title(f"enlarged: {zx0:.0f}-{zx1:.0f} ms, {zy0:.0f}-{zy1:.0f} % mIoU", fontsize=9)
        zax.set_xlabel("measured latency (ms, log scale)", fontsize=9)
        zax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def place_labels(px, py, widths, height: float) -> list[tuple[float, float]]:
    """Offsets (dx, dy) for labels of `widths` x `height` at points (px, py), all in one unit (points of type or
    pixels, y up): each label goes to the first spot around its point, or further out, that overlaps no earlier
    label and no point; points are labelled from left to right. Offsets are to the label's lower-left corner when
    dx > 0, its lower-right corner when dx < 0."""
    taken = [(x - 6, y - 6, x + 6, y + 6) for x, y in zip(px, py)]  # the markers
    spots = [(7, 4), (7, -12), (-7, 4), (-7, -12), (7, 16), (7, -24), (-7, 16), (-7, -24), (7, 28), (7, -36),
             (20, 40), (20, -48), (-20, 40), (-20, -48)]
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(px)
    for i in np.argsort(px, kind="stable"):
        for dx, dy in spots:
            left = px[i] + dx if dx > 0 else px[i] + dx - widths[i]
            box = (left, py[i] + dy, left + widths[i], py[i] + dy + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        taken.append(box)
        out[i] = (dx, dy)
    return out


def label_points(ax, x, y, names: list[str], fontsize: float = 8) -> None:
    """Name each point (data coordinates) of a matplotlib axes without overlaps (`place_labels`), with a leader
    line where the label had to move away from its point."""
    fig = ax.figure
    fig.canvas.draw()
    pts = ax.transData.transform(np.column_stack([x, y])) * 72 / fig.dpi  # in points
    widths = [0.58 * fontsize * len(n) for n in names]
    for i, (dx, dy) in enumerate(place_labels(pts[:, 0], pts[:, 1], widths, 1.25 * fontsize)):
        ax.annotate(names[i], (x[i], y[i]), textcoords="offset points", xytext=(dx, dy),
                    fontsize=fontsize, ha="left" if dx > 0 else "right", va="bottom",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if abs(dy) > 20 else None)


def miou_text(miou: float, std: float, seeds: int) -> str:
    """"37.4 ± 1.3 % (3 seeds)", or "37.4 % (1 seed)" where one seed gives no spread."""
    if seeds > 1 and not np.isnan(std):
        return f"{miou:.1f} ± {std:.1f} % ({int(seeds)} seeds)"
    return f"{miou:.1f} % ({int(seeds)} seed{'s' if seeds != 1 else ''})"


def plotly_pareto(points: pd.DataFrame, baseline: float | None = None):
    """The same plot as `plot_pareto`, interactive: hover shows name, kind, mIoU ± std, latency, params, GMACs
    and where the numbers come from."""
    import plotly.graph_objects as go

    fig = go.Figure()
    positions = ["top right", "bottom right", "top left", "bottom left", "middle right", "middle left"]
    order = np.argsort(np.argsort(points["latency_ms"].to_numpy(), kind="stable"))  # rank by latency
    points = points.assign(textpos=[positions[k % len(positions)] for k in order])  # neighbours on other sides
    width, height, margin = 900, 520, {"l": 70, "r": 20, "t": 90, "b": 60}
    far_below = baseline is not None and baseline < points["miou"].min() - 5
    lo, hi = float(points["miou"].min()), float(points["miou"].max())
    y0, y1 = lo - 0.08 * (hi - lo) - 1, hi + 0.08 * (hi - lo) + 1
    x0, x1 = points["latency_ms"].min() / 1.15, points["latency_ms"].max() * 1.5
    pw, ph = width - margin["l"] - margin["r"], height - margin["t"] - margin["b"]
    px = (np.log10(points["latency_ms"]) - np.log10(x0)) / (np.log10(x1) - np.log10(x0)) * pw
    py = (points["miou"] - y0) / (y1 - y0) * ph
    offsets = place_labels(px.to_numpy(), py.to_numpy(), [6.2 * len(plot_label(n)) for n in points["name"]], 14)
    for kind, g in points.groupby("kind", sort=False):
        symbol = PLOTLY_SYMBOLS[
            KIND_STYLE.get(kind, ("o", ""))[0]]
        fig.add_trace(go.Scatter(
            x=g["latency_ms"], y=g["miou"], mode="markers", name=kind, text=g["name"],
            marker={"symbol": symbol, "size": 11, "color": to_hex(KIND_STYLE.get(kind, ("", "gray"))[1])},
            error_y={"type": "data", "array": g["miou_std"].fillna(0)},
            customdata=np.column_stack([g["kind"], [miou_text(m, sd, k) for m, sd, k in
                                                    zip(g["miou"], g["miou_std"], g["seeds"])],
                                        g["params_M"], g["GMACs"], g["source"]]),
            hovertemplate="<b>%{text}</b> (%{customdata[0]})<br>mIoU %{customdata[1]}<br>latency %{x:.2f} ms<br>"
                          "%{customdata[2]:.2f} M params, %{customdata[3]:.2f} GMACs<br>%{customdata[4]}"
                          "<extra></extra>"))
    front = points[points["front"]].sort_values("latency_ms")
    fig.add_trace(go.Scatter(x=front["latency_ms"], y=front["miou"], mode="lines", name="Pareto front",
                             line={"dash": "dot", "color": "gray"}, hoverinfo="skip"))
    for (_, r), (dx, dy) in zip(points.iterrows(), offsets):  # labels placed without overlaps (place_labels)
        fig.add_annotation(x=np.log10(r["latency_ms"]), y=r["miou"], text=plot_label(r["name"]), showarrow=True,
                           arrowcolor="#999" if abs(dy) > 20 else "rgba(0,0,0,0)", arrowwidth=0.8, arrowhead=0,
                           ax=dx, ay=-dy - 7, xanchor="left" if dx > 0 else "right", yanchor="middle",
                           font={"size": 10})
    if baseline is not None and not far_below:
        fig.add_hline(y=baseline, line_dash="dash", line_color="gray",
                      annotation_text=f"majority class {baseline:.1f} %")
    r = points.iloc[0]
    ticks = [t for t in (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 500, 1000) if x0 <= t <= x1]
    fig.update_xaxes(type="log", range=[np.log10(x0), np.log10(x1)], tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    fig.update_yaxes(range=[y0, y1] if far_below else None)
    base = f"; majority class {baseline:.1f} %" if baseline is not None and far_below else ""
    fig.update_layout(xaxis_title=f"measured latency (ms, log scale), {r['backend']}, {r['resolution']}, batch 1, "
                                  "fp32", yaxis_title="mIoU (%)", width=width, height=height, margin=margin,
                      template="plotly_white", legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      title={"text": f"latency-accuracy trade-off (interactive: hover a point, drag to zoom{base})",
                             "y": 0.97})
    return fig
