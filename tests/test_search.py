import json

import pandas as pd
import pytest
import torch

from fasterseg.arch import Architecture
from fasterseg.config import apply_overrides, profile
from fasterseg.search import SearchError, Searcher, compare_runs, run_search


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("search-data")


def tiny_cfg(root, **extra):
    cfg = apply_overrides(profile("tiny"), [
        f"data.root={root}", "data.num_train=12", "data.num_val=4",
        "search.pretrain_epochs=1", "search.search_epochs=2", "search.steps_per_epoch=3",
        "search.pretrain_batch_size=2", "search.batch_size=2", "search.pretrain_crop=[64, 64]",
        "search.crop=[64, 64]", "search.checkpoint_every=2", "search.log_every=1", "search.threads=1",
    ] + [f"{k}={v}" for k, v in extra.items()])
    return cfg


@pytest.fixture(scope="module")
def full_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    run_search(tiny_cfg(data_root), out, progress=False)
    return out


def _arch_state(out):
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    return {k: v for k, v in state["net"].items() if k.startswith("arch.")}, state


def test_run_directory(full_run):
    assert json.loads((full_run / "config.json").read_text())["profile"] == "tiny"
    epochs = pd.read_csv(full_run / "history" / "epochs.csv")
    assert len(epochs) == 3 * 2 and set(epochs["arch"]) == {"teacher", "student"}
    assert {"miou_8+32", "latency_ms", "skip_share", "zoomed_share", "first_down_32", "alpha_entropy"} <= set(epochs)
    for f in epochs["arch_file"]:
        Architecture.load(full_run / f)
    steps = pd.read_csv(full_run / "history" / "steps.csv")
    assert list(steps["step"]) == list(range(1, 10))
    assert steps["lam_student"].dropna().gt(0).all() and steps["latency_full_ms_student"].dropna().gt(0).all()
    arch = pd.read_csv(full_run / "history" / "arch.csv")
    assert set(arch["kind"]) == {"alpha", "beta", "gamma"}
    one = arch[(arch.step == arch.step.max()) & (arch.arch == "student") & (arch.kind == "alpha")]
    assert one.groupby(["scale", "layer"])["prob"].sum().round(6).eq(1).all()
    _, state = _arch_state(full_run)
    assert state["position"] == {"phase": "search", "epoch": 2, "epoch_step": 0, "step": 9}


def test_resume_equals_uninterrupted(full_run, data_root, tmp_path):
    out = tmp_path / "resumed"
    run_search(tiny_cfg(data_root), out, progress=False, max_steps=5)  # last checkpoint at step 4: step 5 is lost
    _, state = _arch_state(out)
    assert state["position"]["step"] == 4
    run_search(tiny_cfg(data_root), out, resume=True, progress=False)
    a, _ = _arch_state(full_run)
    b, _ = _arch_state(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)  # tolerance: 1e-6 absolute on every logit
    steps = pd.read_csv(out / "history" / "steps.csv")
    assert list(steps["step"]) == list(range(1, 10))  # the replayed step is logged once
    assert len(pd.read_csv(out / "history" / "epochs.csv")) == 6


def test_corrupt_checkpoint_falls_back_to_the_previous(full_run, data_root, tmp_path, capsys):
    import shutil

    out = tmp_path / "corrupt"
    shutil.copytree(full_run, out)
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])  # truncated
    s = Searcher(tiny_cfg(data_root), out, resume=True, progress=False)
    assert "last.pt is unusable" in capsys.readouterr().out
    assert s.pos.step < 9  # from prev.pt
    (out / "checkpoints" / "prev.pt").write_bytes(b"garbage")
    with pytest.raises(SearchError, match="no usable checkpoint"):
        Searcher(tiny_cfg(data_root), out, resume=True, progress=False)


def test_a_finished_run_is_not_overwritten(full_run, data_root):
    with pytest.raises(SearchError, match="already holds a run"):
        Searcher(tiny_cfg(data_root), full_run, progress=False)


def test_lambda_adapts_in_both_directions(data_root, tmp_path):
    s = Searcher(tiny_cfg(data_root, **{"search.fps_min": "[0, 100]", "search.fps_max": "[0, 200]"}), tmp_path,
                 progress=False)
    s.lam = [0.0, 0.1]
    s._adapt_lambda(1, 0, 250.0, 150.0)  # one candidate above the band: halve
    assert s.lam[1] == pytest.approx(0.05)
    s._adapt_lambda(1, 1, 150.0, 90.0)  # one below, none above: double
    assert s.lam[1] == pytest.approx(0.1)
    s._adapt_lambda(1, 2, 150.0, 120.0)  # inside the band: keep
    assert s.lam[1] == pytest.approx(0.1)
    log = pd.read_csv(tmp_path / "history" / "lambda.csv")
    assert list(log["new"]) == [0.05, 0.1] and "above" in log["reason"][0] and "below" in log["reason"][1]


def test_teacher_ignores_the_latency_penalty(data_root, tmp_path):
    from fasterseg.losses import downsample_labels
    from fasterseg.search import batch_at

    results = []
    for k, lam in enumerate(("[0, 0]", "[0, 1000]")):
        s = Searcher(tiny_cfg(data_root, **{"search.lam": lam}), tmp_path / str(k), progress=False)
        x, y = batch_at(s.train, s.a_idx, 2, 0, 0, 0, 2)
        s.arch_step(x, downsample_labels(y))
        results.append({n: p.detach().clone() for n, p in s.net.arch.named_parameters()})
    teacher = [n for n in results[0] if n.startswith("0.")]
    student = [n for n in results[0] if n.startswith("1.")]
    assert all(torch.equal(results[0][n], results[1][n]) for n in teacher)
    assert any(not torch.equal(results[0][n], results[1][n]) for n in student)


def test_nan_loss_stops_and_keeps_the_checkpoint(data_root, tmp_path, monkeypatch):
    import fasterseg.search as search

    monkeypatch.setattr(search, "supernet_weight_loss", lambda *a, **k: (torch.tensor(float("nan")), {}))
    with pytest.raises(SearchError, match="became nan .*last good checkpoint is kept"):
        run_search(tiny_cfg(data_root), tmp_path / "nan", progress=False)


def test_too_small_split_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path / "small", **{"data.num_train": 2})
    with pytest.raises(SearchError, match=r"2 training images split into 1 for weight steps and 1 for architecture"):
        Searcher(cfg, tmp_path / "run", progress=False)


def test_compare_runs(full_run):
    t = compare_runs({"a": full_run, "b": full_run})
    assert list(t.index) == [0, 1] and "a:skip_share" in t and "b:latency_ms" in t


def test_records_of_a_run_without_checkpoint_are_replaced(data_root, tmp_path):
    out = tmp_path / "died"
    (out / "history").mkdir(parents=True)
    (out / "history" / "steps.csv").write_text("step,phase\n1,pretrain\n2,pretrain\n")
    run_search(tiny_cfg(data_root, **{"search.search_epochs": 1}), out, progress=False, max_steps=2)
    steps = pd.read_csv(out / "history" / "steps.csv")
    assert list(steps["step"]) == [1, 2] and "loss_weight" in steps
