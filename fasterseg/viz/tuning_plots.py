"""The tuning panel's state drawn with matplotlib (notebook 05, `fasterseg.panels`): operator and width
histograms of the nearest sweep run's derived network, and the sweep's latency-mIoU points for the chosen set with
the chosen run ringed and the panel's short live searches marked apart."""
from __future__ import annotations

from matplotlib.figure import Figure
import pandas as pd

from fasterseg.viz.tradeoff_plots import label_points


def sweep_figure(rows: pd.DataFrame, s: dict, profile: str):
    """Histograms of the chosen run's operators and widths (state `s` of `tuning.panel_state`), and the runs of
    `rows` (`tuning.set_sweep` of the chosen set) on latency–mIoU axes, the chosen run ringed (matplotlib)."""
    # a Figure outside pyplot: the panel draws ahead in a background thread, and a pyplot figure alive when a
    # notebook cell ends would be shown in that cell's output
    fig = Figure(figsize=(12, 3.2))
    axes = fig.subplots(1, 3)
    who = s["arch_set"]
    s["ops"].drop("skip", errors="ignore").plot.bar(ax=axes[0], color="tab:blue")
    kept = (f"{s['removed_layers']} skip layer{'s' if s['removed_layers'] != 1 else ''} removed" if who == "student"
            else "the teacher keeps every cell")
    axes[0].set_title(f"operators of the {who}'s cells ({kept})", fontsize=9)
    axes[0].set_ylabel("cells", fontsize=9)
    s["widths"].plot.bar(ax=axes[1], color="tab:green", rot=0)
    axes[1].set_title("output widths (share of the scale's channels)", fontsize=9)
    axes[1].set_ylabel("cells", fontsize=9)
    committed, live = rows[~rows["live"].astype(bool)], rows[rows["live"].astype(bool)]
    for mode, g in committed.groupby("penalty"):
        axes[2].plot(g["latency_ms"], 100 * g["miou"], "o", label=f"{mode} (sweep)", ms=6)
    if len(live):
        axes[2].plot(live["latency_ms"], 100 * live["miou"], "*", mfc="none", mec="k", ms=11,
                     label="live search (short)")
    axes[2].plot([s["latency_ms"]], [100 * s["miou"]], "o", ms=15, mfc="none", mec="red", mew=2,
                 label="chosen")  # a ring: the chosen run's own point stays visible inside it
    axes[2].margins(x=0.12, y=0.2)  # room for the labels inside the axes
    label_points(axes[2], rows["latency_ms"].to_numpy(), 100 * rows["miou"].to_numpy(),
                 [f"λ={lam:g}" for lam in rows["lam"]])
    axes[2].set_xlabel(f"predicted latency of the derived {who} (ms)", fontsize=9)
    axes[2].set_ylabel("search-time mIoU (%)", fontsize=9)
    axes[2].set_title(f"the λ sweep's {who}s ({profile} profile)", fontsize=9)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig
