"""Training, distillation, evaluation, export: the method's pieces and the run's guarantees."""
import json
import math
import os
import socket

import numpy as np
import pytest
import torch

from fasterseg.config import apply_overrides, profile
from fasterseg.data.prepare import prepare_data
from fasterseg.losses import ohem_cross_entropy
from fasterseg.runs import RunError, load_history, read_info
from fasterseg.training.distill import TeacherError, kd_loss
from fasterseg.training.trainer import TrainError, run_train


# -- the method's pieces ----------------------------------------------------------------------------------
def _two_class_logits(p_true: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 2, 1, n) whose softmax gives the true class (0) probability p_true[i] at pixel i."""
    p = torch.tensor(p_true, dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()])[None, :, None, :]
    return logits, torch.zeros(1, 1, len(p_true), dtype=torch.long)


@pytest.mark.parametrize("min_kept, kept", [(2, [0.1, 0.5, 0.6]), (5, [0.1, 0.5, 0.6, 0.8, 0.9]),
                                            (0, [0.1, 0.5, 0.6])])
def test_ohem_keeps_exactly_the_hard_pixels(min_kept, kept):
    """Pixels whose true-class probability is above max(0.7, the min_kept-th smallest) are dropped."""
    probs = [0.1, 0.5, 0.8, 0.9, 0.95, 0.6]
    logits, target = _two_class_logits(probs)
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=min_kept)
    assert float(loss) == pytest.approx(float(np.mean([-math.log(p) for p in kept])), rel=1e-9)


def test_ohem_ignores_label_255():
    logits, target = _two_class_logits([0.1, 0.2, 0.3])
    target[0, 0, 0] = 255
    assert float(ohem_cross_entropy(logits, target, 0.7, 1)) == pytest.approx(-(math.log(0.2) + math.log(0.3)) / 2)


@pytest.mark.parametrize("reduction", ["element", "pixel"])
def test_kd_is_zero_for_equal_logits_and_reaches_only_the_student(reduction):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 5, 4, 4, generator=g, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, generator=g, requires_grad=True)
    assert float(kd_loss(s, s.detach().clone(), 2.0, reduction).detach()) == pytest.approx(0.0, abs=1e-7)
    loss = kd_loss(s, t, 2.0, reduction)
    loss.backward()
    assert float(loss.detach()) > 0 and s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_kd_reductions_differ_by_the_class_count():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(1, 19, 3, 3, generator=g), torch.randn(1, 19, 3, 3, generator=g)
    assert float(kd_loss(s, t, 1.0, "pixel")) == pytest.approx(19 * float(kd_loss(s, t, 1.0, "element")), rel=1e-5)


# -- small runs --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("train-data") / "synthetic"


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    from fasterseg.latency.networks import random_architectures
    from fasterseg.nets.derive import DeriveRules
    from fasterseg.nets.space import SearchSpace

    arch = random_architectures(SearchSpace(8, 4), 1, [(1.0, 1.0)], 19, seed=3, rules=DeriveRules(2, 2, 2))[0]
    return arch.save(tmp_path_factory.mktemp("arch") / "tiny.json")


def train_cfg(root, **extra):
    return apply_overrides(profile("tiny"), [
        f"data.root={root}", "data.num_train=8", "data.num_val=2", "train.epochs=2", "train.steps_per_epoch=3",
        "train.batch_size=2", "train.crop=[64, 128]", "train.val_every=1", "train.checkpoint_every=2",
        "runtime.threads=1"] + [f"{k}={v}" for k, v in extra.items()])


@pytest.fixture(scope="module")
def teacher_run(data_root, tiny_arch, tmp_path_factory):
    return run_train(train_cfg(data_root), tiny_arch, tmp_path_factory.mktemp("runs") / "teacher", progress=False)


def _weights(run, which="last"):
    return torch.load(run / f"model_{which}.pt", weights_only=True)


def test_training_run_records(teacher_run):
    info = read_info(teacher_run)
    assert info["kind"] == "train" and info["status"] == "done"
    h = load_history(teacher_run)
    assert list(h["steps"]["step"]) == list(range(1, 7)) and h["steps"]["loss"].gt(0).all()
    ep = h["epochs"]
    assert list(ep["epoch"]) == [0, 1] and ep["val_miou"].between(0, 1).all()
    assert ep["best_miou"].iloc[-1] == pytest.approx(ep["val_miou"].max())
    assert h["steps"]["lr"].iloc[-1] == pytest.approx(0.05 * 0.9)  # x lr_decay per epoch (tiny: 0.05, 0.9)
    assert set(_weights(teacher_run, "best")) == set(_weights(teacher_run))
    assert json.loads((teacher_run / "model.json").read_text())["kind"] == "arch"


def test_resume_equals_an_uninterrupted_run(teacher_run, data_root, tiny_arch, tmp_path, capsys):
    out = tmp_path / "resumed"
    run_train(train_cfg(data_root), tiny_arch, out, progress=True, max_steps=4)
    assert "stopped at the step cap (4 steps) at step 4 of 6" in capsys.readouterr().out
    run_train(train_cfg(data_root), tiny_arch, out, resume=True, progress=False)
    a, b = _weights(teacher_run), _weights(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)  # tolerance: 1e-6 absolute
    assert list(load_history(out)["steps"]["step"]) == list(range(1, 7))


def test_distilled_student(teacher_run, data_root, tiny_arch, tmp_path):
    out = run_train(train_cfg(data_root), tiny_arch, tmp_path / "student", teacher=teacher_run, progress=False)
    steps = load_history(out)["steps"]
    assert steps["loss_kd"].gt(0).all()
    assert json.loads((out / "model.json").read_text())["teacher"] == str(teacher_run)


def test_evaluation_and_export(teacher_run, data_root, tmp_path):
    from fasterseg.deploy.export import export_run
    from fasterseg.evaluation.run import evaluate_run

    cfg = train_cfg(data_root, **{"eval.overlays": 1, "eval.latency_backends": '["torch", "onnxruntime"]',
                                  "export.height": 64, "export.width": 128})
    m = evaluate_run(cfg, teacher_run, progress=False)
    assert 0 <= m["miou"] <= 1 and 0 < m["majority_baseline"]["miou"] < 1 and m["images"] == 2
    assert {x["backend"] for x in m["latency"]} == {"torch", "onnxruntime"}
    assert all(x["median_ms"] > 0 and x["resolution"] == [128, 256] for x in m["latency"])
    for f in ("metrics.json", "per_class.csv", "confusion.csv", "overlays.png", "confusion.png"):
        assert (teacher_run / "eval" / f).exists()
    s = export_run(teacher_run, cfg, tmp_path / "export")
    assert s["max_rel_diff"] < 1e-5 and s["class_agreement"] > 0.999 and s["folded_bn"] > 10
    assert s["max_abs_diff"] < 1e-2  # absolute; this barely trained net's logits reach a few hundred
    assert s["tensorrt"].startswith("skipped")


def test_decision_scores_own_and_another_class_decision(teacher_run, data_root):
    """`decision_scores`: the run's own decision scores what `evaluate_model` scores; another decision applied to
    its 1/8 logits gives another row (bilinear8 is this network's own, so it scores the same)."""
    from fasterseg.data.cityscapes import build_dataset
    from fasterseg.data.transforms import EvalTransform
    from fasterseg.evaluation.run import decision_scores
    from fasterseg.evaluation.scores import evaluate_model
    from fasterseg.nets.build import load_trained

    cfg = train_cfg(data_root)
    df = decision_scores(cfg, [teacher_run], ("bilinear8", "nearest8"), progress=False)
    assert list(df["decision"]) == ["own", "bilinear8", "nearest8"] and df["miou"].between(0, 1).all()
    model, _ = load_trained(teacher_run, "best")
    own, _ = evaluate_model(model, build_dataset(cfg.data, "val", EvalTransform()), cfg.data.num_classes)
    assert df["miou"].iloc[0] == pytest.approx(own.miou) and df["miou"].iloc[1] == pytest.approx(own.miou)


def test_latency_retimed_without_weights_keeps_the_scores(teacher_run, data_root, tmp_path):
    import shutil

    from fasterseg.evaluation.run import remeasure_latency
    from fasterseg.runs import RunError

    run = tmp_path / "no-weights"  # a checkout: the run's records without its weights
    (run / "eval").mkdir(parents=True)
    shutil.copy(teacher_run / "model.json", run / "model.json")
    (run / "eval" / "metrics.json").write_text(json.dumps({"miou": 0.25, "latency": []}))
    cfg = train_cfg(data_root, **{"eval.latency_backends": '["torch"]', "eval.latency_height": 64,
                                  "eval.latency_width": 128})
    with pytest.raises(RunError, match="no model_best.pt"):
        remeasure_latency(cfg, run, "best")
    rows = remeasure_latency(cfg, run, "init")
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["miou"] == 0.25 and m["latency"] == rows
    assert [(x["backend"], x["weights"], x["resolution"]) for x in rows] == [("torch", "init", [64, 128])]
    assert rows[0]["median_ms"] > 0


def test_runs_retimed_round_robin_in_one_pass(teacher_run, data_root, tmp_path):
    import shutil

    from fasterseg.evaluation.run import retime_runs

    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        (run / "eval").mkdir(parents=True)
        shutil.copy(teacher_run / "model.json", run / "model.json")
        (run / "eval" / "metrics.json").write_text(json.dumps({"miou": 0.5, "latency": []}))
        runs.append(run)
    cfg = train_cfg(data_root, **{"eval.latency_backends": '["torch", "onnxruntime"]', "eval.latency_height": 64,
                                  "eval.latency_width": 128})
    report = retime_runs(cfg, runs, "init", rounds=3, progress=False)
    assert report["rounds"] == 3 and report["reference_gmacs_per_s"] > 0
    for run in runs:
        m = json.loads((run / "eval" / "metrics.json").read_text())
        assert m["miou"] == 0.5 and [x["backend"] for x in m["latency"]] == ["torch", "onnxruntime"]
        for x in m["latency"]:
            assert x["median_ms"] > 0 and x["spread_ms"] >= 0
            assert x["ratio_to_reference"] > 0 and x["method"] == "round-robin with 2 runs, 3 rounds"


@pytest.mark.parametrize("peer", ["fast_scnn", "bisenetv2"])
def test_bn_folding_keeps_the_outputs(peer, tiny_arch):
    """Folded copies (derived network and peers) equal the original in eval mode."""
    from fasterseg.nets.arch import Architecture
    from fasterseg.nets.build import fold_bn
    from fasterseg.nets.network import DerivedNet
    from fasterseg.nets.peers import build_peer

    for net in (DerivedNet(Architecture.load(tiny_arch), aux=False), build_peer(peer)):
        net.train()
        with torch.no_grad():
            for _ in range(3):  # non-trivial running statistics
                net(torch.randn(2, 3, 64, 128))
        net.eval()
        x = torch.randn(1, 3, 64, 128)
        with torch.no_grad():
            ref, got = net(x), fold_bn(net)(x)
        assert fold_bn(net).folded_bn > 0
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_predict_writes_overlays_and_label_ids(teacher_run, data_root, tmp_path):
    from PIL import Image

    from fasterseg.deploy.predict import predict_folder

    tree = prepare_data(train_cfg(data_root).data, progress=False)
    res = predict_folder(teacher_run, tree / "leftImg8bit" / "val", tmp_path / "pred", label_ids=True,
                         progress=False)
    ids = sorted((tmp_path / "pred" / "label_ids").rglob("*.png"))
    assert len(ids) == 2 and len(res.written) == 4 and not res.skipped
    assert len(list((tmp_path / "pred" / "overlays").rglob("*_overlay.png"))) == 2
    lab = np.asarray(Image.open(ids[0]))
    assert lab.shape == (128, 256) and set(np.unique(lab)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                                                               27, 28, 31, 32, 33}


# -- bad inputs ------------------------------------------------------------------------------------------
def test_missing_or_unfinished_teacher_is_refused(data_root, tiny_arch, tmp_path, teacher_run):
    with pytest.raises(TeacherError, match="holds no training run"):
        run_train(train_cfg(data_root), tiny_arch, tmp_path / "s1", teacher=tmp_path / "nope", progress=False)
    assert not (tmp_path / "s1").exists()
    half = tmp_path / "half"
    run_train(train_cfg(data_root), tiny_arch, half, progress=False, max_steps=1)
    with pytest.raises(TeacherError, match="unfinished"):
        run_train(train_cfg(data_root), tiny_arch, tmp_path / "s2", teacher=half, progress=False)
    with pytest.raises(TeacherError, match="data.image_height=128, the student uses 64"):
        run_train(train_cfg(data_root, **{"data.image_height": 64, "data.root": tmp_path / "d64"}), tiny_arch,
                  tmp_path / "s3", teacher=teacher_run, progress=False)


def test_another_model_or_config_on_resume_is_refused(teacher_run, data_root):
    with pytest.raises(TrainError, match="trains another model"):
        run_train(train_cfg(data_root), "peer:fast_scnn", teacher_run, resume=True, progress=False)
    with pytest.raises(RunError, match=r"train\.lr: 0\.05 -> 0\.1"):
        run_train(train_cfg(data_root, **{"train.lr": 0.1}), json.loads((teacher_run / "model.json").read_text()),
                  teacher_run, resume=True, progress=False)


def test_weights_that_do_not_fit_the_architecture(teacher_run, tmp_path):
    import shutil

    from fasterseg.nets.build import load_trained

    run = tmp_path / "copy"
    shutil.copytree(teacher_run, run)
    spec = json.loads((run / "model.json").read_text())
    spec["arch"]["fch"] = 8
    (run / "model.json").write_text(json.dumps(spec))
    with pytest.raises(RunError, match="model_best.pt does not fit the architecture in"):
        load_trained(run)


@pytest.mark.parametrize("bad, message", [(1e6, "exploded"), (float("nan"), "became nan")])
def test_exploding_or_nan_loss_stops_and_keeps_the_last_checkpoint(data_root, tiny_arch, tmp_path, monkeypatch, bad,
                                                                   message):
    import fasterseg.training.trainer as train

    calls = {"n": 0}
    real = train.segmentation_loss

    def broken(outputs, y, tc):
        calls["n"] += 1
        loss, parts = real(outputs, y, tc)
        return (loss * bad if calls["n"] > 2 else loss), parts

    monkeypatch.setattr(train, "segmentation_loss", broken)
    with pytest.raises(TrainError, match=rf"{message}.* step 3 .*last good checkpoint is last-00000002\.pt"):
        run_train(train_cfg(data_root), tiny_arch, tmp_path / "boom", progress=False)
    assert read_info(tmp_path / "boom")["status"] == "failed"


def test_a_study_starts_over_a_run_that_died_before_its_first_checkpoint(data_root, tiny_arch, tmp_path,
                                                                          monkeypatch):
    import fasterseg.training.trainer as train
    from fasterseg.runs import continuing
    from fasterseg.studies import train_variants

    real = train.segmentation_loss
    monkeypatch.setattr(train, "segmentation_loss", lambda o, y, tc: (real(o, y, tc)[0] * float("nan"), {}))
    run = tmp_path / "study" / "student-seed0"
    with pytest.raises(TrainError, match="became nan"):
        train_variants(train_cfg(data_root), {"student": {"model": tiny_arch, "teacher": None}}, (0,),
                       tmp_path / "study", progress=False)
    assert read_info(run)["status"] == "failed" and continuing(run) == {"restart": True}
    monkeypatch.setattr(train, "segmentation_loss", real)
    df = train_variants(train_cfg(data_root), {"student": {"model": tiny_arch, "teacher": None}}, (0,),
                        tmp_path / "study", progress=False)
    assert read_info(run)["status"] == "done" and continuing(run) == {}
    assert list(load_history(run)["steps"]["step"]) == list(range(1, 7)) and len(df) == 1


def test_a_search_folder_is_not_a_training_folder(data_root, tiny_arch, tmp_path):
    from fasterseg.runs import RunDir

    RunDir.start(tmp_path / "s", "search", profile("tiny"), ("search",)).close()
    with pytest.raises(RunError, match="holds a search run, not a train run"):
        run_train(train_cfg(data_root), tiny_arch, tmp_path / "s", progress=False)


# -- data parallel ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, cfg_json, arch, out, dump):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    import fasterseg.training.trainer as train
    from fasterseg.config import RunConfig

    real = train.TrainRun.write_weights

    def write_and_dump(self):
        real(self)  # rank 0 writes the weights; every rank dumps its own model, buffers included
        torch.save(self.t.model.state_dict(), f"{dump}-{rank}.pt")

    train.TrainRun.write_weights = write_and_dump
    train.run_train(RunConfig.from_dict(json.loads(cfg_json)), arch, out, progress=False)
    dist.destroy_process_group()


def _two_ranks(cfg, arch, out, dump) -> tuple[dict, dict]:
    import torch.multiprocessing as mp

    mp.start_processes(_rank, args=(2, _free_port(), cfg.to_json(), str(arch), str(out), str(dump)), nprocs=2,
                       start_method="spawn")
    return tuple(torch.load(f"{dump}-{r}.pt", weights_only=True) for r in (0, 1))


def test_two_processes_equal_one_process_accumulating(data_root, tiny_arch, tmp_path):
    """2 ranks (gloo) with the global batch split, each rank's batch norm on its own half (runtime.sync_bn=false),
    equal 1 process with 2 micro-batches: same weights on both ranks, and the same as the single process up to
    float summation order (atol 1e-5)."""
    cfg = train_cfg(data_root, **{"train.epochs": 1, "train.steps_per_epoch": 3, "train.batch_size": 4,
                                  "runtime.sync_bn": "false"})
    prepare_data(cfg.data, progress=False)
    import copy

    single_cfg = apply_overrides(copy.deepcopy(cfg), ["train.accumulate=2"])
    one = run_train(single_cfg, tiny_arch, tmp_path / "one", progress=False)
    r0, r1 = _two_ranks(cfg, tiny_arch, tmp_path / "two", tmp_path / "rank")
    single = _weights(one)
    for k, v in r0.items():
        if v.is_floating_point() and "running" not in k:
            assert torch.equal(v, r1[k]), k  # DDP keeps the ranks identical
            torch.testing.assert_close(v, single[k], rtol=0, atol=1e-5)
    assert read_info(tmp_path / "two")["status"] == "done"


def test_synchronized_batch_norm_keeps_the_ranks_alike(data_root, tiny_arch, tmp_path):
    """With runtime.sync_bn (the default with several processes) the ranks' batch-norm buffers stay equal, as their
    weights do (each rank normalises with the global batch's statistics)."""
    cfg = train_cfg(data_root, **{"train.epochs": 1, "train.steps_per_epoch": 3, "train.batch_size": 4})
    prepare_data(cfg.data, progress=False)
    r0, r1 = _two_ranks(cfg, tiny_arch, tmp_path / "two", tmp_path / "rank")
    assert [k for k in r0 if "running" in k]
    for k, v in r0.items():
        assert torch.equal(v, r1[k]), k


def _bn_rank(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    import torch.distributed as dist

    from fasterseg.runtime import CPUSyncBatchNorm

    dist.init_process_group("gloo")
    x = torch.randn(4, 3, 5, 6, generator=torch.Generator().manual_seed(0))[2 * rank:2 * rank + 2].requires_grad_()
    bn = CPUSyncBatchNorm(3)
    y = bn(x)
    (y * torch.arange(1.0, 4.0)[None, :, None, None]).sum().backward()
    torch.save({"y": y.detach(), "x_grad": x.grad, "w_grad": bn.weight.grad, "b_grad": bn.bias.grad,
                "mean": bn.running_mean, "var": bn.running_var}, f"{out}-{rank}.pt")
    dist.destroy_process_group()


def test_cpu_sync_batch_norm_equals_batch_norm_on_the_whole_batch(tmp_path):
    """Two gloo ranks with two images each: outputs, input gradients, running statistics and (summed) parameter
    gradients equal plain batch norm on the four images at once (float32 rounding)."""
    import torch.multiprocessing as mp

    mp.start_processes(_bn_rank, args=(2, _free_port(), str(tmp_path / "bn")), nprocs=2, start_method="spawn")
    r = [torch.load(tmp_path / f"bn-{k}.pt", weights_only=True) for k in (0, 1)]
    x = torch.randn(4, 3, 5, 6, generator=torch.Generator().manual_seed(0)).requires_grad_()
    bn = torch.nn.BatchNorm2d(3)
    y = bn(x)
    (y * torch.arange(1.0, 4.0)[None, :, None, None]).sum().backward()
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r[0]["y"], r[1]["y"]]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([r[0]["x_grad"], r[1]["x_grad"]]), x.grad, **close)
    torch.testing.assert_close(r[0]["w_grad"] + r[1]["w_grad"], bn.weight.grad, **close)
    torch.testing.assert_close(r[0]["b_grad"] + r[1]["b_grad"], bn.bias.grad, **close)
    for k in ("mean", "var"):
        assert torch.equal(r[0][k], r[1][k])
    torch.testing.assert_close(r[0]["mean"], bn.running_mean, **close)
    torch.testing.assert_close(r[0]["var"], bn.running_var, **close)


def test_worker_processes_load_the_same_batches(teacher_run, data_root):
    """Batches prepared in worker processes equal those loaded in the main process (a pure function of
    seed, epoch and step), also for a rank's share."""
    from fasterseg.data.batching import epoch_batches
    from fasterseg.data.cityscapes import build_dataset
    from fasterseg.data.transforms import TrainTransform

    ds = build_dataset(train_cfg(data_root).data, "train", TrainTransform(64, 128))
    idx = np.arange(len(ds))
    for rank in (0, 1):
        a = list(epoch_batches(ds, idx, 4, 1, 1, 4, 0, 3, workers=0, rank=rank, world=2))
        b = list(epoch_batches(ds, idx, 4, 1, 1, 4, 0, 3, workers=2, rank=rank, world=2))
        assert len(a) == len(b) == 3
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and len(xa) == 2


def test_pareto_front():
    from fasterseg.tradeoffs import pareto_front

    lat = np.array([1.0, 2.0, 3.0, 2.5, 1.0])
    acc = np.array([10.0, 20.0, 15.0, 25.0, 5.0])
    assert pareto_front(lat, acc).tolist() == [True, True, False, True, False]


def test_int8_quantisation_agrees_with_fp32_on_most_pixels(teacher_run, data_root, tmp_path):
    """Static int8 (calibrated on 4 training images) against fp32 ONNX on the validation images: the share of
    pixels with the same class must be at least 90 % (measured here: printed)."""
    from fasterseg.data.cityscapes import build_dataset
    from fasterseg.data.transforms import EvalTransform
    from fasterseg.deploy.export import export_network
    from fasterseg.nets.build import load_trained
    from fasterseg.nets.onnx import ort_predict, quantize_int8

    model, _ = load_trained(teacher_run)
    fp32 = export_network(model, tmp_path / "fp32.onnx", 128, 256)
    cfg = train_cfg(data_root)
    train = build_dataset(cfg.data, "train", EvalTransform())
    calib = np.stack([train[i][0].numpy() for i in range(4)])
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", calib)
    val = build_dataset(cfg.data, "val", EvalTransform())
    images = np.stack([val[i][0].numpy() for i in range(len(val))])
    agree = float((ort_predict(fp32, images) == ort_predict(int8, images)).mean())
    print(f"int8 vs fp32 class agreement: {100 * agree:.1f} % of pixels")
    assert agree >= 0.7  # margin: int8 kernels differ between CPUs (VNNI or not) for this barely trained net


def test_deployed_forms_report(teacher_run, data_root):
    """fp32 nearest and int8 against fp32 bilinear: the reference agrees with itself, the other forms' agreement is
    a share (how large depends on the CPU's rounding for this barely trained network: not compared), and their mIoU
    change is the difference of their mIoUs."""
    from fasterseg.deploy.forms import forms_lines, forms_report

    r = forms_report(teacher_run, train_cfg(data_root), calibration_images=4, latency_hw=(64, 128), rounds=2)
    f = r["forms"]
    assert list(f) == ["fp32_bilinear", "fp32_nearest", "int8_bilinear"]
    assert f["fp32_bilinear"]["class_agreement"] == 1.0 and f["fp32_bilinear"]["latency_ratio"] == 1.0
    for name in ("fp32_nearest", "int8_bilinear"):
        assert 0.0 < f[name]["class_agreement"] <= 1.0, name
        assert f[name]["miou_change_points"] == pytest.approx(100 * (f[name]["miou"] - f["fp32_bilinear"]["miou"]))
        assert f[name]["latency"]["median_ms"] > 0
    assert f["fp32_nearest"]["interpolation"] == "nearest" and f["int8_bilinear"]["precision"] == "int8"
    assert len(forms_lines(r)) == 4
