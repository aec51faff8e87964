"""The latency-weight tuning panel of notebook 05: ipywidgets over the pure functions of `fasterseg.tuning`.

Controls: λ (log slider), the decoupling rates r_α/r_β/r_γ, the target FPS band, the penalty mode, the
architecture set. Views: the sweep run nearest to the chosen λ and mode (its derived network drawn, its
predicted latency/FPS, operator and width histograms, its point on the sweep's latency–mIoU plot), the
decoupled terms and their gradients at the chosen rates and λ (computed live from that run's final
architecture parameters), and a "search here" button that runs a short live search in a background thread
and streams its epochs into the panel. `static_figure` draws the same state with matplotlib.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import tuning
from .tradeoff_plots import label_points


class TuningPanel:
    """The panel over a λ sweep folder (`studies.run_sweep`) searched with `cfg` (a `RunConfig`); "search here"
    runs `live_cfg` (default `cfg`; a shorter schedule keeps it to minutes)."""

    def __init__(self, sweep_dir: str | Path, cfg, lut, live_cfg=None):
        from ..latency.expected import ExpectedLatency
        from ..space import SearchSpace

        self.cfg, self.lut, self.live_cfg = cfg, lut, live_cfg or cfg
        self.sweep = tuning.load_sweep(sweep_dir)
        self.space = SearchSpace.from_config(cfg.space)
        self.expected = [ExpectedLatency(self.space, lut, sw, hw, cfg.data.num_classes, cfg.latency.ends)
                         for sw, hw in cfg.space.stem_head_widths]
        self.live_rows: list[dict] = []
        self.thread: threading.Thread | None = None
        self._build()
        self.update()

    # -- state ---------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything the views show, as plain data (tested; the widgets only display it)."""
        from ..runs import load_history

        w = self.w
        from ..runs import final_arch

        row = tuning.nearest_run(self.sweep, w["lam"].value, w["penalty"].value)
        i = 0 if w["arch_set"].value == "teacher" else 1
        arch = tuning.run_architecture(row) if i else final_arch(row["folder"], "teacher")
        latency_ms = float(row["latency_ms"]) if i else self.lut.predict(arch)
        hist = load_history(row["folder"])["arch"]
        a = tuning.arch_set_at(hist, self.space, w["arch_set"].value, search_widths=i > 0)
        rates = (w["r_alpha"].value, w["r_beta"].value, w["r_gamma"].value)
        grads = tuning.penalty_gradients(a, self.expected[i], w["lam"].value, rates, w["penalty"].value)
        ops, widths = tuning.histograms(arch)
        lo, hi = w["fps_band"].value
        fps = 1000 / latency_ms
        band = "inside" if lo < fps < hi else ("above: adaptive λ would halve" if fps >= hi else
                                               "below: adaptive λ would double")
        return {"run": row["run"], "lam": float(row["lam"]), "penalty": row["penalty"], "arch": arch,
                "arch_set": w["arch_set"].value, "latency_ms": latency_ms, "fps": fps, "band": band,
                "miou": float(row["miou"]), "ops": ops, "widths": widths, "gradients": grads}

    def readout(self, s: dict) -> str:
        return (f"nearest sweep run <b>{s['run']}</b> (λ = {s['lam']:g}, {s['penalty']}): "
                f"derived {s['arch_set']} "
                f"<b>{s['latency_ms']:.2f} ms ({s['fps']:.0f} FPS)</b> predicted by {self.cfg.latency.table}, "
                f"{s['band']} the band; search-time mIoU {100 * s['miou']:.1f} %")

    # -- widgets ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        import ipywidgets as W

        lams = sorted(self.sweep["lam"].unique())
        r = self.cfg.latency.rates
        self.w = {
            "lam": W.FloatLogSlider(value=lams[len(lams) // 2], base=10, min=round(math.log10(lams[0]) - 0.5, 1),
                                    max=round(math.log10(lams[-1]) + 0.5, 1), step=0.05, description="λ",
                                    continuous_update=False),
            "r_alpha": W.FloatSlider(value=r[0], min=0, max=1, step=0.001, readout_format=".3f", description="r_α"),
            "r_beta": W.FloatSlider(value=r[1], min=0, max=1, step=0.001, readout_format=".3f", description="r_β"),
            "r_gamma": W.FloatSlider(value=r[2], min=0, max=1, step=0.001, readout_format=".3f", description="r_γ"),
            "fps_band": W.FloatRangeSlider(value=(self.cfg.search.fps_min[-1], self.cfg.search.fps_max[-1]), min=10,
                                           max=1000, step=5, description="FPS band"),
            "penalty": W.ToggleButtons(options=["decoupled", "coarse"], value="decoupled", description="penalty"),
            "arch_set": W.ToggleButtons(options=["student", "teacher"], value="student", description="set"),
        }
        for c in self.w.values():
            c.layout.width = "420px"
            c.style.description_width = "70px"
            c.observe(lambda _: self.update(), names="value")
        self.info = W.HTML()
        self.graph = W.Image(format="png")
        self.plots = W.Image(format="png")  # the static figure as an image widget (deterministic under nbval)
        self.grad_table = W.HTML()
        self.button = W.Button(description="search here", icon="play")
        self.button.on_click(lambda _: self.search_here())
        self.live = W.Output(layout={"max_height": "160px", "overflow": "auto"})
        controls = W.VBox(list(self.w.values()) + [self.button], layout={"min_width": "430px", "flex": "0 0 auto"})
        readouts = W.VBox([self.info, self.grad_table], layout={"flex": "1 1 auto"})
        self.view = W.VBox([W.HBox([controls, readouts]), self.graph, self.plots, self.live])

    def update(self) -> dict:
        from ..viz.graphs import arch_graph

        s = self.state()
        self.info.value = self.readout(s)
        self.grad_table.value = s["gradients"].map("{:.3g}".format).to_html()
        self.graph.value = arch_graph(s["arch"], f"{s['run']}: derived {self.w['arch_set'].value}").pipe(format="png")
        import io

        buf = io.BytesIO()
        self.static_figure(s).savefig(buf, format="png", dpi=90, bbox_inches="tight")
        self.plots.value = buf.getvalue()
        self.last_state = s
        return s

    def static_figure(self, s: dict | None = None):
        """The panel's state drawn with matplotlib, for a static notebook view (`sweep_figure`)."""
        s = s or self.state()
        return sweep_figure(self.sweep, s, self.cfg.profile)

    # -- live search -----------------------------------------------------------------------------------
    def search_here(self, out: str | Path | None = None, wait: bool = False) -> threading.Thread:
        """A short live search (`live_cfg`) at the chosen λ and mode in a background thread; each
        epoch's derived latency is appended to the live log; the result joins the sweep table when done."""
        import tempfile

        folder = Path(out or tempfile.mkdtemp())

        def log(rows):
            for r in rows:
                self.live_rows.append(r)
                if r["phase"] == "search":
                    self.live.append_stdout(f"search {r['epoch'] + 1} {r['arch_set']}: {r['latency_ms']:.2f} ms, "
                                            f"λ {r['lam']:.3g}\n")

        def work():
            self.button.disabled = True
            try:
                row = tuning.live_search(self.live_cfg, self.w["lam"].value, self.w["penalty"].value, folder, log)
                self.sweep = pd.concat([self.sweep, pd.DataFrame([row])], ignore_index=True)
                self.live.append_stdout(f"done: {row['run']} added to the sweep\n")
            finally:
                self.button.disabled = False

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()
        return self.thread


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
