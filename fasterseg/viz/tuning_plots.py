"""The tuning panel's state drawn with matplotlib (notebook 05, `fasterseg.panels`): operator and width
histograms of the nearest sweep run, and the sweep's latency-mIoU points with the chosen run ringed."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from fasterseg.viz.tradeoff_plots import label_points


def sweep_figure(sweep: pd.DataFrame, s: dict, profile: str):
    """Histograms of the nearest run's operators and widths (state `s` of a `TuningPanel`), and the sweep's
    latency–mIoU points with the chosen run ringed (matplotlib)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    row = sweep[sweep["run"] == s["run"]].iloc[0]
    s["ops"].drop("skip", errors="ignore").plot.bar(ax=axes[0], color="tab:blue")
    axes[0].set_title(f"operators of the kept cells ({int(row['removed_layers'])} skip layers removed)",
                      fontsize=9)
    axes[0].set_ylabel("cells", fontsize=9)
    s["widths"].plot.bar(ax=axes[1], color="tab:green", rot=0)
    axes[1].set_title("output widths (share of the scale's channels)", fontsize=9)
    axes[1].set_ylabel("cells", fontsize=9)
    for mode, g in sweep.groupby("penalty"):
        axes[2].plot(g["latency_ms"], 100 * g["miou"], "o", label=mode, ms=6)
    axes[2].plot([s["latency_ms"]], [100 * s["miou"]], "o", ms=15, mfc="none", mec="red", mew=2,
                 label="chosen")  # a ring: the chosen run's own point stays visible inside it
    axes[2].margins(x=0.12, y=0.2)  # room for the labels inside the axes
    label_points(axes[2], sweep["latency_ms"].to_numpy(), 100 * sweep["miou"].to_numpy(),
                 [f"λ={lam:g}" for lam in sweep["lam"]])
    axes[2].set_xlabel("predicted latency (ms)", fontsize=9)
    axes[2].set_ylabel("search-time mIoU (%)", fontsize=9)
    axes[2].set_title(f"the λ sweep ({profile} profile)", fontsize=9)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


