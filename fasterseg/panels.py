"""The latency-weight tuning panel of notebook 05: ipywidgets over the pure functions of `fasterseg.nas.tuning`.

Controls: λ (log slider), the decoupling rates r_α/r_β/r_γ (live only under the decoupled penalty), the target FPS
band (log slider), the penalty mode, the architecture set. Views (`tuning.panel_state`): the sweep run nearest to
the chosen λ and mode, for the chosen set (its derived network drawn, its predicted latency/FPS and where it sits
against the band, operator and width histograms, its point among the sweep's), the latency penalty's terms and
gradients at the chosen rates and λ (the student's: the teacher has no latency term), and "search here", which runs
a short search at every control's setting in a background thread and streams its stages and epochs into the panel.

Everything a control change redraws is cached per (run, set, live runs): a move of λ within one run's reach, or of
a rate, recomputes only the readout and the gradient table (tens of milliseconds); the drawing and the figure are
rendered once per run and set. `static_figure` draws the same state with matplotlib.
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
from fasterseg.nets.space import SearchSpace
from fasterseg.viz.graphs import arch_graph
from fasterseg.viz.tuning_plots import sweep_figure

SETS = ("student", "teacher")


class TuningPanel:
    """The panel over a λ sweep folder (`studies.run_sweep`) searched with `cfg` (a `RunConfig`); "search here"
    runs `live_cfg` (default `cfg`; a shorter schedule keeps it to minutes)."""

    def __init__(self, sweep_dir: str | Path, cfg, lut, live_cfg=None, prerender: bool = True):
        self.cfg, self.lut, self.live_cfg = cfg, lut, live_cfg or cfg
        self.sweep = tuning.load_sweep(sweep_dir)
        self.sweep["live"] = False
        self.rows = {name: tuning.set_sweep(self.sweep, name) for name in SETS}
        self.space = SearchSpace.from_config(cfg.space)
        self.expected = ExpectedLatency(self.space, lut, *cfg.space.stem_head_widths[-1], cfg.data.num_classes,
                                        cfg.latency.ends)
        self.thread: threading.Thread | None = None
        self._pictures: dict[tuple, tuple[bytes, bytes]] = {}
        self._drawing = threading.Lock()  # pyplot and graphviz renders, one at a time
        self._build()
        self.update()
        if prerender:  # every run and set drawn ahead, so a control's first visit to a run is as quick as a later one
            threading.Thread(target=self.prerender, daemon=True).start()

    def prerender(self) -> None:
        """Draw every (run, set) of the sweep into the picture cache (the panel keeps working meanwhile)."""
        for arch_set in SETS:
            for _, row in self.rows[arch_set].iterrows():
                c = {**self.controls(), "arch_set": arch_set, "lam": float(row["lam"]), "penalty": row["penalty"]}
                self.pictures(tuning.panel_state(self.rows[arch_set], self.space, None, **c))

    # -- state ---------------------------------------------------------------------------------------
    def controls(self) -> dict:
        """The controls' values as `tuning.panel_state` takes them."""
        w = self.w
        return {"lam": w["lam"].value, "rates": (w["r_alpha"].value, w["r_beta"].value, w["r_gamma"].value),
                "band": self.band(), "penalty": w["penalty"].value, "arch_set": w["arch_set"].value}

    def band(self) -> tuple[float, float]:
        """The FPS band (the slider moves in log10 FPS)."""
        lo, hi = self.w["fps_band"].value
        return 10 ** lo, 10 ** hi

    def state(self) -> dict:
        """Everything the views show, as plain data (`tuning.panel_state`)."""
        c = self.controls()
        return tuning.panel_state(self.rows[c["arch_set"]], self.space, self.expected, **c)

    def readout(self, s: dict) -> str:
        kind = "a short live search" if s["live"] else "nearest sweep run"
        removed = (f"{s['removed_layers']} skip layer{'s' if s['removed_layers'] != 1 else ''} removed"
                   if s["arch_set"] == "student" else "every cell kept (the teacher ignores skip)")
        return (f"{kind} <b>{s['run']}</b> (λ = {s['lam']:g}, {s['penalty']}): derived {s['arch_set']} "
                f"<b>{s['latency_ms']:.2f} ms ({s['fps']:.0f} FPS)</b> predicted by {self.cfg.latency.table}, "
                f"{removed}; {s['band']}; search-time mIoU {100 * s['miou']:.1f} %")

    def gradient_html(self, s: dict) -> str:
        """The gradient table with what it means in this mode."""
        if s["gradients"] is None:
            return ("<i>The teacher is searched without a latency term (λ = 0): no penalty gradients. Switch the set "
                    "to the student to see them.</i>")
        g = s["gradients"]
        if s["penalty"] == "coarse":
            note = (f"<i>Coarse penalty: one term, the full expected latency ({g.attrs['full_ms']:.2f} ms) with "
                    "α, β and γ live together; the rates r_α, r_β, r_γ belong to the decoupled penalty and do not "
                    "apply here.</i>")
        else:
            note = ("<i>Decoupled penalty: term_ms is each kind's term before its rate (the others uniform, widths "
                    "at their maximum).</i>")
        return note + g.rename_axis(None).map("{:.3g}".format).to_html()

    # -- widgets ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        import ipywidgets as W

        lams = sorted(self.sweep["lam"].unique())
        r = self.cfg.latency.rates
        lo, hi = self.cfg.search.fps_min[-1], self.cfg.search.fps_max[-1]
        self.w = {
            "lam": W.FloatLogSlider(value=lams[len(lams) // 2], base=10, min=round(math.log10(lams[0]) - 0.5, 1),
                                    max=round(math.log10(lams[-1]) + 0.5, 1), step=0.05, description="λ",
                                    continuous_update=False),
            "r_alpha": W.FloatSlider(value=r[0], min=0, max=1, step=0.001, readout_format=".3f", description="r_α"),
            "r_beta": W.FloatSlider(value=r[1], min=0, max=1, step=0.001, readout_format=".3f", description="r_β"),
            "r_gamma": W.FloatSlider(value=r[2], min=0, max=1, step=0.001, readout_format=".3f", description="r_γ"),
            "fps_band": W.FloatRangeSlider(value=(math.log10(lo), math.log10(hi)), min=0.5, max=3.5, step=0.01,
                                           description="FPS band", readout=False, continuous_update=False),
            "penalty": W.ToggleButtons(options=["decoupled", "coarse"], value="decoupled", description="penalty"),
            "arch_set": W.ToggleButtons(options=list(SETS), value="student", description="set"),
        }
        for c in self.w.values():
            c.layout.width = "420px"
            c.style.description_width = "70px"
            c.observe(lambda _: self.update(), names="value")
        self.band_label = W.HTML(layout={"margin": "0 0 0 75px"})
        self.info = W.HTML()
        self.graph = W.Image(format="png")
        self.plots = W.Image(format="png")  # the static figure as an image widget (deterministic under nbval)
        self.grad_table = W.HTML()
        self.button = W.Button(description="search here", icon="play",
                               tooltip="a short search at every control's setting, in the background")
        self.button.on_click(lambda _: self.search_here())
        self.live = W.Output(layout={"max_height": "160px", "overflow": "auto"})
        w = self.w
        controls = W.VBox([w["lam"], w["r_alpha"], w["r_beta"], w["r_gamma"], w["fps_band"], self.band_label,
                           w["penalty"], w["arch_set"], self.button],
                          layout={"min_width": "430px", "flex": "0 0 auto"})
        readouts = W.VBox([self.info, self.grad_table], layout={"flex": "1 1 auto"})
        self.view = W.VBox([W.HBox([controls, readouts]), self.graph, self.plots, self.live])

    def pictures(self, s: dict) -> tuple[bytes, bytes]:
        """The drawing of the derived network and the static figure (PNG), cached per run, set and live runs."""
        key = (s["run"], s["arch_set"], len(self.sweep))
        with self._drawing:
            if key not in self._pictures:
                graph = arch_graph(s["arch"], f"{s['run']}: derived {s['arch_set']}").pipe(format="png")
                buf = io.BytesIO()
                self.static_figure(s).savefig(buf, format="png", dpi=80, bbox_inches="tight")
                self._pictures[key] = (graph, buf.getvalue())
            return self._pictures[key]

    def update(self) -> dict:
        s = self.state()
        lo, hi = self.band()
        self.band_label.value = f"<small>{lo:.0f}–{hi:.0f} FPS (log scale)</small>"
        for name in ("r_alpha", "r_beta", "r_gamma"):
            self.w[name].disabled = not s["rates_apply"]
        self.w["fps_band"].disabled = s["arch_set"] != "student"  # the teacher has no latency term
        self.info.value = self.readout(s)
        self.grad_table.value = self.gradient_html(s)
        self.graph.value, self.plots.value = self.pictures(s)
        self.last_state = s
        return s

    def static_figure(self, s: dict | None = None):
        """The panel's state drawn with matplotlib, for a static notebook view (`sweep_figure`)."""
        s = s or self.state()
        return sweep_figure(self.rows[s["arch_set"]], s, self.cfg.profile)

    # -- live search -----------------------------------------------------------------------------------
    def search_here(self, out: str | Path | None = None, wait: bool = False) -> threading.Thread:
        """A short live search (`live_cfg`) at every control's setting (`tuning.live_config`: λ, penalty, rates,
        band) in a background thread; its stages and epochs stream into the live log at once, and its result
        joins the sweep as a live run (drawn apart from the committed ones) when done."""
        folder = Path(out or tempfile.mkdtemp())
        c = self.controls()

        def say(text: str) -> None:
            self.live.append_stdout(text + "\n")

        def log(rows):
            for r in rows:
                if r["arch_set"] == "student":
                    say(f"{r['phase']} epoch {r['epoch'] + 1}: derived student {r['latency_ms']:.2f} ms, "
                        f"λ {r['lam']:.3g}")

        def work():
            self.button.disabled = True
            try:
                row = tuning.live_search(self.live_cfg, c["lam"], c["penalty"], folder, log, rates=c["rates"],
                                         band=c["band"], on_message=say)
                self.sweep = pd.concat([self.sweep, pd.DataFrame([row])], ignore_index=True)
                self.rows = {name: tuning.set_sweep(self.sweep, name) for name in SETS}
                say(f"done: {row['run']} added to the plot as a live run (a short search: not comparable "
                    "with the sweep's)")
                self.update()
            except Exception as e:  # shown in the panel, not lost in the thread
                say(f"stopped: {e}")
                raise
            finally:
                self.button.disabled = False

        lo, hi = c["band"]
        say(f"started: λ = {c['lam']:.3g}, {c['penalty']} penalty, rates {tuple(round(r, 3) for r in c['rates'])}, "
            f"band {lo:.0f}–{hi:.0f} FPS (adaptive λ on)")
        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()
        return self.thread
