"""The pure functions behind notebook 05's panel, on the committed tiny λ sweep."""
import pytest
import torch

from fasterseg.config import profile
from fasterseg.latency import load_for
from fasterseg.latency.expected import ExpectedLatency
from fasterseg.nets.space import SearchSpace
from fasterseg.paths import resolve
from fasterseg.runs import load_history
from fasterseg.nas import tuning

SWEEP = resolve("data/runs/sweep-tiny")


@pytest.fixture(scope="module")
def sweep():
    if not (SWEEP / "sweep.csv").exists():
        pytest.skip(f"{SWEEP} is not committed yet (fasterseg study sweep --profile tiny)")
    return tuning.load_sweep(SWEEP)


def test_nearest_run_is_nearest_in_log_lambda(sweep):
    lams = sorted(sweep["lam"].unique())
    for lam in lams:
        assert tuning.nearest_run(sweep, lam * 1.1, "coarse")["lam"] == lam
    assert tuning.nearest_run(sweep, 1e-9, "decoupled")["lam"] == lams[0]
    with pytest.raises(ValueError, match="no 'soft' runs"):
        tuning.nearest_run(sweep, 0.1, "soft")


def test_arch_set_rebuilt_from_the_history_has_the_logged_probabilities(sweep):
    cfg = profile("tiny")
    row = sweep.iloc[0]
    hist = load_history(row["folder"])["arch"]
    a = tuning.arch_set_at(hist, SearchSpace.from_config(cfg.space), "student")
    last = hist[(hist.arch_set == "student") & (hist.step == hist.step.max()) & (hist.kind == "alpha")
                & (hist.scale == 8)]
    got = torch.softmax(a.alpha(0), -1).flatten().tolist()
    assert got == pytest.approx(last.sort_values(["layer"], kind="stable")["prob"].tolist(), abs=1e-6)


def test_penalty_gradients_scale_with_lambda_and_the_rates(sweep):
    cfg = profile("tiny")
    space = SearchSpace.from_config(cfg.space)
    ex = ExpectedLatency(space, load_for(cfg), *cfg.space.stem_head_widths[1], cfg.data.num_classes, cfg.latency.ends)
    hist = load_history(sweep.iloc[0]["folder"])["arch"]
    a = tuning.arch_set_at(hist, space, "student")
    r = cfg.latency.rates
    g1 = tuning.penalty_gradients(a, ex, 0.1, r, "decoupled")
    g2 = tuning.penalty_gradients(a, ex, 0.2, r, "decoupled")
    assert (g2["grad_norm"] / g1["grad_norm"]).to_numpy() == pytest.approx([2, 2, 2], rel=1e-6)
    only_alpha = tuning.penalty_gradients(a, ex, 0.1, (1.0, 0.0, 0.0), "decoupled")
    # alpha lives only in the first term: its gradient scales with r_alpha = 1/500
    assert only_alpha.loc["alpha", "grad_norm"] / g1.loc["alpha", "grad_norm"] == pytest.approx(500, rel=1e-6)
    assert only_alpha.loc["beta", "grad_norm"] == 0
    assert g1.attrs["full_ms"] > 0 and g1.loc["beta", "term_ms"] > 0


def test_panel_state_in_every_mode(sweep):
    cfg = profile("tiny")
    space = SearchSpace.from_config(cfg.space)
    ex = ExpectedLatency(space, load_for(cfg), *cfg.space.stem_head_widths[1], cfg.data.num_classes, cfg.latency.ends)
    lam = float(sweep["lam"].max())
    rows = {name: tuning.set_sweep(sweep, name) for name in ("student", "teacher")}
    args = dict(rates=cfg.latency.rates, band=(1.0, 2.0))
    student = tuning.panel_state(rows["student"], space, ex, lam, penalty="decoupled", arch_set="student", **args)
    teacher = tuning.panel_state(rows["teacher"], space, ex, lam, penalty="decoupled", arch_set="teacher", **args)
    coarse = tuning.panel_state(rows["student"], space, ex, lam, penalty="coarse", arch_set="student", **args)
    assert student["run"] == teacher["run"] and student["rates_apply"]
    # the teacher: its own network, latency and mIoU from its history; no skips removed; no latency term
    ep = load_history(sweep[sweep["run"] == teacher["run"]].iloc[0]["folder"])["epochs"]
    last = ep[(ep.arch_set == "teacher") & (ep.phase == "search")].iloc[-1]
    assert teacher["latency_ms"] == pytest.approx(last["latency_ms"]) and teacher["removed_layers"] == 0
    assert teacher["latency_ms"] != student["latency_ms"] and teacher["arch"].name.startswith("teacher")
    assert teacher["gradients"] is None and not teacher["rates_apply"] and "no latency term" in teacher["band"]
    # coarse: one term, so no per-kind term column (no nan) and the rates do not apply
    assert "term_ms" not in coarse["gradients"] and not coarse["gradients"].isna().any().any()
    assert not coarse["rates_apply"] and coarse["gradients"].attrs["full_ms"] > 0
    assert student["gradients"]["term_ms"].notna().all()


def test_band_position_says_what_adaptive_lambda_does():
    assert tuning.band_position(80, (60, 70)) == "faster than the band (60–70 FPS): adaptive λ would halve λ"
    assert tuning.band_position(50, (60, 70)).startswith("slower than the band") and "double" in \
        tuning.band_position(50, (60, 70))
    assert "keep" in tuning.band_position(65, (60, 70))
    assert "does not apply" in tuning.band_position(50, (60, 70), latency_term=False)


def test_a_live_search_honours_every_control():
    cfg = profile("tiny")
    c = tuning.live_config(cfg, 0.3, "coarse", rates=(0.1, 0.8, 0.1), band=(40.0, 55.0))
    assert c.search.lam[-1] == 0.3 and c.search.lam[0] == 0 and c.latency.penalty == "coarse"
    assert c.latency.rates == (0.1, 0.8, 0.1) and c.search.adapt_lambda
    assert (c.search.fps_min[-1], c.search.fps_max[-1]) == (40.0, 55.0)
    assert not tuning.live_config(cfg, 0.3, "decoupled").search.adapt_lambda  # no band: λ fixed, as the sweep's


def test_panel_initial_state_and_moves_in_every_mode(sweep):
    pytest.importorskip("ipywidgets")
    from fasterseg.panels import TuningPanel

    cfg = profile("tiny")
    panel = TuningPanel(SWEEP, cfg, load_for(cfg), prerender=False)
    s0 = panel.last_state
    assert "ms (" in panel.readout(s0) and s0["ops"].sum() > 0
    panel.w["lam"].value = float(sweep["lam"].max())
    s1 = panel.last_state
    assert s1["lam"] == sweep["lam"].max() and panel.info.value != panel.readout(s0)
    panel.w["penalty"].value = "coarse"
    assert panel.w["r_alpha"].disabled and "do not apply" in panel.grad_table.value
    panel.w["arch_set"].value = "teacher"
    assert "every cell kept" in panel.info.value and "without a latency term" in panel.grad_table.value
    assert panel.w["fps_band"].disabled and panel.w["r_alpha"].disabled
    lo, hi = panel.band()
    assert f"{lo:.0f}–{hi:.0f} FPS" in panel.band_label.value
