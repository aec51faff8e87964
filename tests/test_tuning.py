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


def test_panel_initial_state_and_a_slider_move(sweep):
    pytest.importorskip("ipywidgets")
    from fasterseg.panels import TuningPanel

    cfg = profile("tiny")
    panel = TuningPanel(SWEEP, cfg, load_for(cfg))
    s0 = panel.last_state
    assert "ms (" in panel.readout(s0) and s0["ops"].sum() > 0
    panel.w["lam"].value = float(sweep["lam"].max())
    s1 = panel.last_state
    assert s1["lam"] == sweep["lam"].max() and panel.info.value != panel.readout(s0)
