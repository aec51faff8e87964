"""The latency-weight tuning panel of notebook 05: ipywidgets over the pure functions of `fasterseg.tuning`.

Controls: λ (log slider), the decoupling rates r_α/r_β/r_γ, the target FPS band, the penalty mode, the
architecture set. Views: the sweep run nearest to the chosen λ and mode (its derived network drawn, its
predicted latency/FPS, operator and width histograms, its point on the sweep's latency–mIoU plot), the
decoupled terms and their gradients at the chosen rates and λ (computed live from that run's final
architecture parameters), and a "search here" button that runs a short live search in a background thread
and streams its epochs into the panel. `static_figure` draws the same state with matplotlib.
"""
from __future__ import annotations

import io
import math
import tempfile
import threading
from pathlib import Path

import pandas as pd

from fasterseg.latency.expected import ExpectedLatency
from fasterseg.nas import tuning
from fasterseg.nas.records import final_arch
from fasterseg.nets.space import SearchSpace
from fasterseg.runs import load_history
from fasterseg.viz.graphs import arch_graph
from fasterseg.viz.tuning_plots import sweep_figure


class TuningPanel:
    """The panel over a λ sweep folder (`studies.run_sweep`) searched with `cfg` (a `RunConfig`); "search here"
    runs `live_cfg` (default `cfg`; a shorter schedule keeps it to minutes)."""

    def __init__(self, sweep_dir: str | Path, cfg, lut, live_cfg=None):
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
        w = self.w

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
        s = self.state()
        self.info.value = self.readout(s)
        self.grad_table.value = s["gradients"].map("{:.3g}".format).to_html()
        self.graph.value = arch_graph(s["arch"], f"{s['run']}: derived {self.w['arch_set'].value}").pipe(format="png")

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


