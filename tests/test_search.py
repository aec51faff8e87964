import copy
import json
import os
import signal

import pandas as pd
import pytest
import torch

from fasterseg.config import apply_overrides, profile
from fasterseg.data.batching import batch_at
from fasterseg.data.prepare import prepare_data
from fasterseg.latency import load_for
from fasterseg.losses import ohem_cross_entropy
from fasterseg.nets.arch import Architecture
from fasterseg.runs import RunError, load_history, read_info
from fasterseg.nas.losses import downsample_labels, supernet_weight_loss, weight_passes
from fasterseg.nas.records import final_arch
from fasterseg.nas.run import run_search, search_data
from fasterseg.nas.searcher import Searcher, SearchError, adapt_lambda
from fasterseg.studies import compare_runs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("search-data") / "synthetic"


def tiny_cfg(root, **extra):
    cfg = apply_overrides(profile("tiny"), [
        f"data.root={root}", "data.num_train=12", "data.num_val=4",
        "search.pretrain_epochs=1", "search.search_epochs=2", "search.steps_per_epoch=3",
        "search.pretrain_batch_size=2", "search.batch_size=2", "search.pretrain_crop=[64, 64]",
        "search.crop=[64, 64]", "search.checkpoint_every=2", "search.log_every=1", "runtime.threads=1",
    ] + [f"{k}={v}" for k, v in extra.items()])
    return cfg


def searcher(cfg):
    prepare_data(cfg.data, progress=False)
    return Searcher(cfg, load_for(cfg))


@pytest.fixture(scope="module")
def full_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    run_search(tiny_cfg(data_root), out, progress=False)
    return out


def _last(out):
    path = sorted((out / "checkpoints").glob("last-*.pt"))[-1]
    state = torch.load(path, weights_only=True)
    return {k: v for k, v in state["net"].items() if k.startswith("arch_sets.")}, state


def test_run_directory(full_run):
    cfg = json.loads((full_run / "config.json").read_text())
    assert cfg["profile"] == "tiny" and set(cfg) == {"profile", "data", "space", "latency", "search", "runtime"}
    assert read_info(full_run)["status"] == "done" and read_info(full_run)["kind"] == "search"
    h = load_history(full_run)
    epochs = h["epochs"]
    assert len(epochs) == 3 * 2 and set(epochs["arch_set"]) == {"teacher", "student"}
    search = epochs[epochs.phase == "search"]
    assert {"miou_8+32", "latency_ms", "skip_share", "zoomed_share", "first_down_32", "undecided"} <= set(epochs)
    for f in search["arch_file"]:
        Architecture.load(full_run / f)
    # pretraining derives nothing: the architecture parameters are still uniform (defect 8)
    assert epochs[epochs.phase == "pretrain"]["arch_file"].isna().all()
    assert list(h["steps"]["step"]) == list(range(1, 10))
    assert h["steps"]["lam_student"].dropna().gt(0).all() and h["steps"]["latency_full_ms_student"].dropna().gt(0).all()
    arch = h["arch"]
    one = arch[(arch.step == arch.step.max()) & (arch.arch_set == "student") & (arch.kind == "alpha")]
    assert one.groupby(["scale", "layer"])["prob"].sum().round(6).eq(1).all()
    _, state = _last(full_run)
    assert {k: state["position"][k] for k in ("phase", "epoch", "epoch_step", "step")} == {
        "phase": "search", "epoch": 2, "epoch_step": 0, "step": 9}
    assert final_arch(full_run, "student").name.startswith("student_search01")


def test_resume_equals_uninterrupted(full_run, data_root, tmp_path, capsys):
    out = tmp_path / "resumed"
    run_search(tiny_cfg(data_root), out, progress=True, max_steps=5)
    assert "stopped at the step cap (5 steps) at step 5 of 9" in capsys.readouterr().out  # defect 8: the cap is said
    assert read_info(out)["status"] == "stopped"
    run_search(tiny_cfg(data_root), out, resume=True, progress=False, max_steps=2)  # counts from here: 7
    assert _last(out)[1]["position"]["step"] == 7
    run_search(tiny_cfg(data_root), out, resume=True, progress=False)
    a, _ = _last(full_run)
    b, _ = _last(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)  # tolerance: 1e-6 absolute on every logit
    steps = pd.read_csv(out / "history" / "steps.csv")
    assert list(steps["step"]) == list(range(1, 10))  # no step logged twice
    assert len(pd.read_csv(out / "history" / "epochs.csv")) == 6
    run_search(tiny_cfg(data_root), out, resume=True, progress=True)
    assert "already complete" in capsys.readouterr().out


def test_corrupt_checkpoint_falls_back_to_the_previous(full_run, data_root, tmp_path, capsys):
    import shutil

    out = tmp_path / "corrupt"
    shutil.copytree(full_run, out)
    (out / "run.lock").unlink()
    info = read_info(out)
    info["status"] = "stopped"
    (out / "run.json").write_text(json.dumps(info))
    newest, older = sorted((out / "checkpoints").glob("last-*.pt"), reverse=True)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    run_search(tiny_cfg(data_root), out, resume=True, progress=True)
    text = capsys.readouterr().out
    assert f"{newest.name} is unusable" in text and f"resumed from {older.name}" in text
    assert read_info(out)["status"] == "done"


def test_crash_between_writes_keeps_a_usable_checkpoint(full_run, data_root, tmp_path, capsys):
    """Defect 6: at every point of a checkpoint write (new file without checksum, temporary file left
    behind, old generations deleted or not) the newest complete generation is used."""
    import shutil

    out = tmp_path / "crash"
    shutil.copytree(full_run, out)
    (out / "run.lock").unlink()
    ck = out / "checkpoints"
    newest = sorted(ck.glob("last-*.pt"))[-1]
    # a new generation whose checksum was never written, and a half-written temporary file
    (ck / "last-00000010.pt").write_bytes(newest.read_bytes())
    (ck / ".last-00000011.pt.tmp").write_bytes(b"partial")
    from fasterseg.runs import Checkpoints

    state, path = Checkpoints(ck, "fasterseg-search-checkpoint").load("last", warn=print)
    assert path == newest and state["position"]["step"] == 9
    assert "last-00000010.pt is unusable" in capsys.readouterr().out


def test_foreign_checkpoint_and_changed_config_are_refused(full_run, data_root, tmp_path):
    """Defect 2: another run's checkpoint is not trusted; resuming with other settings names them."""
    import shutil

    with pytest.raises(RunError, match=r"search\.lr: 0\.02 -> 0\.5"):
        run_search(tiny_cfg(data_root, **{"search.lr": 0.5}), full_run, resume=True, progress=False)
    assert json.loads((full_run / "config.json").read_text())["search"]["lr"] == 0.02  # not rewritten
    out = tmp_path / "other"
    run_search(tiny_cfg(data_root), out, progress=False, max_steps=2)
    for f in (out / "checkpoints").iterdir():
        f.unlink()
    for f in (full_run / "checkpoints").iterdir():  # checksums match: only the run id tells them apart
        shutil.copy(f, out / "checkpoints" / f.name)
    rows = len(pd.read_csv(out / "history" / "steps.csv"))
    with pytest.raises(RunError, match="belongs to another run"):
        run_search(tiny_cfg(data_root), out, resume=True, progress=False)
    assert len(pd.read_csv(out / "history" / "steps.csv")) == rows  # nothing cut back


def test_a_second_process_is_refused(full_run, data_root):
    """Defect 3: the run folder is locked while a run holds it; the message names the holder."""
    from fasterseg.runs import RunLock

    lock = RunLock(full_run, "test holder")
    try:
        with pytest.raises(RunError, match=rf"in use by process {os.getpid()}"):
            run_search(tiny_cfg(data_root), full_run, progress=False)
    finally:
        lock.release()


def test_a_finished_run_is_not_overwritten(full_run, data_root):
    with pytest.raises(RunError, match="already holds a search run"):
        run_search(tiny_cfg(data_root), full_run, progress=False)


def test_ctrl_c_stops_at_a_step_and_saves(data_root, tmp_path):
    """Defect 7: Ctrl-C finishes the step, saves a checkpoint, says which, and resume continues."""
    def interrupt(rows):
        os.kill(os.getpid(), signal.SIGINT)

    from fasterseg.nas.run import run_search as rs

    with pytest.raises(SearchError, match=r"interrupted at step 3 of 9; saved last-00000003\.pt"):
        rs(tiny_cfg(data_root), tmp_path / "int", progress=False, on_epoch=interrupt)
    assert read_info(tmp_path / "int")["status"] == "stopped"


def test_adapt_lambda_is_pure():
    assert adapt_lambda(0.1, [250.0, 150.0], 100, 200) == (0.05, "FPS above the band's max 200")
    assert adapt_lambda(0.1, [150.0, 90.0], 100, 200) == (0.2, "FPS below the band's min 100")
    assert adapt_lambda(0.1, [150.0, 120.0], 100, 200) == (0.1, None)


def test_teacher_ignores_the_latency_penalty(data_root):
    results = []
    for lam in ("[0, 0]", "[0, 1000]"):
        cfg = tiny_cfg(data_root, **{"search.lam": lam})
        s = searcher(cfg)
        train, _, w_idx, a_idx = search_data(cfg)
        from fasterseg.data.transforms import TrainTransform

        train.transform = TrainTransform(64, 64)
        s.step("search", batch_at(train, w_idx, 2, 0, 0, 0, 1), batch_at(train, a_idx, 2, 0, 0, 0, 2))
        results.append({n: p.detach().clone() for n, p in s.net.arch_sets.named_parameters()})
    teacher = [n for n in results[0] if n.startswith("0.")]
    student = [n for n in results[0] if n.startswith("1.")]
    assert all(torch.equal(results[0][n], results[1][n]) for n in teacher)
    assert any(not torch.equal(results[0][n], results[1][n]) for n in student)


def _twin_batch(data_root):
    cfg = tiny_cfg(data_root)
    s = searcher(cfg)
    train, _, w_idx, _ = search_data(cfg)
    from fasterseg.data.transforms import TrainTransform

    train.transform = TrainTransform(64, 64)
    x, y = batch_at(train, w_idx, 2, 0, 0, 0, 1)
    return s, x, downsample_labels(y)


def test_merged_weight_passes_equal_the_separate_passes(data_root):
    """The teacher's pass at its own widths and the max sandwich pass are one computation: run once and
    counted twice, the gradient and the batch-norm statistics match running both passes."""
    s, x, y = _twin_batch(data_root)
    net = s.net
    assert [(m, i, k) for m, i, k in weight_passes(net, pretrain=False)] == [
        ("max", 0, ["teacher_sampled", "max"]), ("sampled", 1, ["student_sampled"]), ("min", 0, ["min"])]
    assert len(weight_passes(net, pretrain=True)) == 4  # the random passes differ: nothing merged
    twin = copy.deepcopy(net)
    start_buffers = {n: b.clone() for n, b in net.named_buffers()}
    loss, parts = supernet_weight_loss(net, x, y)
    loss.backward()
    ref, ref_parts = 0.0, {}
    for mode, i in [("sampled", 0), ("sampled", 1), ("max", 0), ("min", 0)]:  # the four passes, one by one
        out = twin(x, arch_set=i, widths=mode)
        part = sum(ohem_cross_entropy(v, y) for v in out.values())
        ref_parts[f"{twin.names[i]}_{mode}" if mode == "sampled" else mode] = float(part.detach())
        ref = ref + part
    ref.backward()
    assert parts == pytest.approx(ref_parts, rel=1e-6)
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    grads = [(p.grad, q.grad) for p, q in zip(net.weight_parameters(), twin.weight_parameters())]
    assert sum(g is not None for g, _ in grads) > 10
    for g, h in grads:
        assert (g is None) == (h is None)
        if g is not None:
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)
    # batch-norm statistics: the same updates, in another order where a width is shared with the student
    # (the moving average sees the teacher's batch twice before the student's, not around it)
    for (name, b), (_, c), (_, start) in zip(net.named_buffers(), twin.named_buffers(), start_buffers.items()):
        if name.endswith("num_batches_tracked"):
            assert torch.equal(b, c), name
        else:
            moved = (c - start).abs().max()
            assert (b - c).abs().max() <= 0.1 * moved + 1e-7, name  # 0.1: the momentum


def test_architecture_step_gradients_do_not_need_weight_gradients(data_root):
    s, x, y = _twin_batch(data_root)
    out = s.net(x, arch_set=1, widths="sampled")
    loss = sum(ohem_cross_entropy(v, y) for v in out.values())
    only = torch.autograd.grad(loss, s.net.arch_parameters(1), retain_graph=True)
    loss.backward()
    for g, p in zip(only, s.net.arch_parameters(1)):
        assert torch.equal(g, p.grad)


def test_nan_loss_stops_and_keeps_the_checkpoint(data_root, tmp_path, monkeypatch):
    import fasterseg.nas.searcher as searcher

    monkeypatch.setattr(searcher, "supernet_weight_loss", lambda *a, **k: (torch.tensor(float("nan")), {}))
    with pytest.raises(SearchError, match="became nan .*last good checkpoint is none"):
        run_search(tiny_cfg(data_root), tmp_path / "nan", progress=False)
    assert read_info(tmp_path / "nan")["status"] == "failed"


def test_too_small_split_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path / "small", **{"data.num_train": 2})
    with pytest.raises(SearchError, match=r"2 training images split into 1 for weight steps and 1 for architecture"):
        run_search(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # a refused command leaves no folder behind


def test_compare_runs(full_run):
    t = compare_runs({"a": full_run, "b": full_run})
    assert list(t.index) == [0, 1] and "a:skip_share" in t and "b:latency_ms" in t


def test_records_of_a_run_without_checkpoint_are_replaced(data_root, tmp_path):
    out = tmp_path / "died"
    run_search(tiny_cfg(data_root, **{"search.search_epochs": 1}), out, progress=False, max_steps=1)
    for f in (out / "checkpoints").iterdir():
        f.unlink()
    (out / "history" / "steps.csv").write_text("step,phase\n1,pretrain\n2,pretrain\n")
    run_search(tiny_cfg(data_root, **{"search.search_epochs": 1}), out, progress=False, max_steps=2)
    steps = pd.read_csv(out / "history" / "steps.csv")
    assert list(steps["step"]) == [1, 2] and "loss_weight" in steps


def _search_rank(rank, world, port, cfg_json, out, dump):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    import fasterseg.nas.run as search
    from fasterseg.config import RunConfig

    real = search.SearchRun.end_epoch

    def end_and_dump(self, phase, epoch, seconds):
        real(self, phase, epoch, seconds)
        torch.save(self.s.net.state_dict(), f"{dump}-{rank}.pt")

    search.SearchRun.end_epoch = end_and_dump
    search.run_search(RunConfig.from_dict(json.loads(cfg_json)), out, progress=False)
    dist.destroy_process_group()


def test_search_under_two_processes_keeps_the_ranks_identical(data_root, tmp_path):
    """torchrun-style search on 2 gloo ranks: weight and architecture gradients all-reduced, so both ranks
    end with identical supernets; only rank 0 writes the records."""
    import socket

    import torch.multiprocessing as mp

    cfg = tiny_cfg(data_root, **{"search.search_epochs": 1, "search.steps_per_epoch": 2, "search.batch_size": 4,
                                 "search.pretrain_batch_size": 4})  # 2 images per rank: batch norm needs > 1
    prepare_data(cfg.data, progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_search_rank, args=(2, port, cfg.to_json(), str(tmp_path / "run"), str(tmp_path / "rank")),
                       nprocs=2, start_method="spawn")
    a, b = (torch.load(tmp_path / f"rank-{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in a.items():
        if v.is_floating_point() and "running" not in k:
            assert torch.equal(v, b[k]), k
    assert read_info(tmp_path / "run")["status"] == "done"
    assert list(load_history(tmp_path / "run")["steps"]["step"]) == [1, 2, 3, 4]
