"""Fault injection: kills at stage boundaries and inside checkpoint writes (`fasterseg.faults` points), a full disk,
damaged records of every kind, hostile markers and links. Each test checks what the kit leaves behind: nothing
outside the run touched, a resume that ends as an uninterrupted run, and one-line errors naming the file and the
fix."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fasterseg.cli import main
from fasterseg.config import ConfigError, apply_overrides, profile
from fasterseg.data.prepare import prepare_data
from fasterseg.data.synthetic import ForeignDataError, SyntheticSpec, delete_owned, ensure
from fasterseg.runs import Checkpoints, RunError, load_history, read_info
from fasterseg.training.trainer import TrainError, run_train

SMALL = ["data.num_train=8", "data.num_val=2", "train.epochs=2", "train.steps_per_epoch=3", "train.batch_size=2",
         "train.crop=[64, 128]", "train.val_every=1", "train.checkpoint_every=2", "runtime.threads=1",
         "runtime.tensorboard=false"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("fault-data")


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    from fasterseg.latency.networks import random_architectures
    from fasterseg.nets.derive import DeriveRules
    from fasterseg.nets.space import SearchSpace

    a = random_architectures(SearchSpace(8, 4), 1, [(1.0, 1.0)], 19, seed=3, rules=DeriveRules(2, 2, 2))[0]
    return a.save(tmp_path_factory.mktemp("fault-arch") / "tiny.json")


def cfg_of(root, *extra):
    return apply_overrides(profile("tiny"), [f"data.root={root}", *SMALL, *extra])


@pytest.fixture(scope="module")
def whole(root, arch, tmp_path_factory):
    """An uninterrupted training: what every interrupted and resumed one must end as."""
    return run_train(cfg_of(root), arch, tmp_path_factory.mktemp("whole") / "run", progress=False)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = (torch.load(p / "model_last.pt", weights_only=True) for p in (a, b))
    assert set(wa) == set(wb)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-6)


def _faults(monkeypatch, spec: str) -> None:
    import fasterseg.faults as faults

    faults._counts.clear()
    monkeypatch.setenv("FASTERSEG_FAULTS", spec)


# -- kills inside checkpoint writes and between the weights and the status --------------------------------
@pytest.mark.parametrize("point", ["checkpoint.written", "atomic_write.tmp", "weights.written"])
def test_a_kill_inside_a_write_resumes_to_the_uninterrupted_result(point, root, arch, whole, tmp_path, monkeypatch):
    """Killed (at the 2nd checkpoint, between a checkpoint and its checksum or inside its atomic write, or between
    the final weights and the run's status): the run is not marked done, and --resume ends where an uninterrupted
    run ends, with no history row twice and no temporary file left."""
    # the 2nd checkpoint is best-3 (after step 3's validation); atomic writes: run.json, last-2 and its checksum,
    # then best-3
    _faults(monkeypatch, f"raise:point={point},after={ {'weights.written': 1, 'checkpoint.written': 2}.get(point, 4)}")
    out = tmp_path / "run"
    with pytest.raises(TrainError, match="interrupted"):
        run_train(cfg_of(root), arch, out, progress=False)
    assert read_info(out)["status"] == "stopped"
    monkeypatch.delenv("FASTERSEG_FAULTS")
    run_train(cfg_of(root), arch, out, resume=True, progress=False)
    assert read_info(out)["status"] == "done" and not list(out.rglob(".*.tmp"))
    _same_weights(whole, out)
    steps = load_history(out)["steps"]["step"].tolist()
    assert steps == list(range(1, 7))


def test_a_kill_in_the_first_checkpoint_write_asks_for_restart(root, arch, whole, tmp_path, monkeypatch):
    """Nothing usable to resume from, but records written: --resume says so (no silent restart from step 0 with the
    history counting 1, 2, 1, 2 ...) and --restart starts over cleanly."""
    _faults(monkeypatch, "raise:point=checkpoint.written,after=1")
    out = tmp_path / "run"
    with pytest.raises(TrainError):
        run_train(cfg_of(root), arch, out, progress=False)
    monkeypatch.delenv("FASTERSEG_FAULTS")
    with pytest.raises(RunError, match="nothing usable to resume from.*--restart"):
        run_train(cfg_of(root), arch, out, resume=True, progress=False)
    run_train(cfg_of(root), arch, out, resume=True, restart=True, progress=False)
    assert load_history(out)["steps"]["step"].tolist() == list(range(1, 7))
    _same_weights(whole, out)


def test_a_full_disk_is_named_and_the_run_resumes(root, arch, whole, tmp_path, monkeypatch):
    _faults(monkeypatch, "disk_full:point=atomic_write.tmp,after=4")
    out = tmp_path / "run"
    with pytest.raises(TrainError, match=r"the disk of .*checkpoints is full: writing .* needs [\d.]+ MB, [\d.]+ MB "
                                         r"are free"):
        run_train(cfg_of(root), arch, out, progress=False)
    assert read_info(out)["status"] == "stopped" and not list(out.rglob(".*.tmp"))
    monkeypatch.delenv("FASTERSEG_FAULTS")
    run_train(cfg_of(root), arch, out, resume=True, progress=False)
    _same_weights(whole, out)


def test_stale_temporary_files_are_removed_at_start(root, arch, tmp_path, monkeypatch):
    _faults(monkeypatch, "raise:point=atomic_write.tmp,after=4")
    out = tmp_path / "run"
    with pytest.raises(TrainError):
        run_train(cfg_of(root), arch, out, progress=False)
    assert list(out.rglob(".*.tmp"))  # a kill inside a write leaves its temporary file
    monkeypatch.delenv("FASTERSEG_FAULTS")
    run_train(cfg_of(root), arch, out, resume=True, progress=False)
    assert not list(out.rglob(".*.tmp"))


def test_sigterm_saves_like_ctrl_c(root, arch, tmp_path):
    """SIGTERM (what a scheduler or torchrun sends) stops at a step boundary with a checkpoint, status stopped."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fasterseg", "train", "--profile", "tiny", "--model", str(arch), "--out", str(out),
           f"data.root={root}", *SMALL, "train.epochs=40"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    ckpt = out / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not list(ckpt.glob("*.sha256")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 2 and "SIGTERM: stopping after this step" in err and "Traceback" not in err
    info = read_info(out)
    assert info["status"] == "stopped" and info["reason"] == "interrupted"
    assert f"{info['step']:08d}" in sorted(p.name for p in ckpt.glob("last-*.pt"))[-1]


def test_rotation_keeps_the_newest_usable_generations(tmp_path):
    c = Checkpoints(tmp_path, "fasterseg-test-checkpoint", keep=2)
    for step in (1, 2):
        c.save({"x": torch.tensor([step])}, step)
    bad = c.paths()[0]
    bad.write_bytes(bad.read_bytes()[:-3] + b"xyz")  # generation 2 damaged
    c.save({"x": torch.tensor([3])}, 3)
    assert [p.name for p in c.paths()] == ["last-00000003.pt", "last-00000001.pt"]  # 1 kept, not the damaged 2
    newest = c.paths()[0]
    newest.write_bytes(newest.read_bytes()[:-1] + b"!")  # one flipped byte later: the run is not lost
    state, path = c.load(warn=lambda m: None)
    assert path.name == "last-00000001.pt" and int(state["x"]) == 1


# -- the data the kit deletes ------------------------------------------------------------------------------
def _partial_with(tmp_path: Path, entries: list[dict]) -> Path:
    parent = tmp_path / "synthetic"
    partial = parent / ".64x128-1+1-seed0-v2.partial-999"
    partial.mkdir(parents=True)
    (partial / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return partial


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("rel", ["../victim.txt", "../../victim.txt", "/ABS/victim.txt"])
def test_a_hostile_list_deletes_nothing_outside(tmp_path, rel):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    rel = rel.replace("/ABS", str(tmp_path))
    partial = _partial_with(tmp_path, [{"path": rel, "sha256": _sha(victim)}])
    with pytest.raises(ForeignDataError, match="not a path inside the tree.*nothing was deleted"):
        delete_owned(partial, [{"path": rel, "sha256": _sha(victim)}])
    with pytest.warns(UserWarning, match="left .* in place"):  # a generation that meets it leaves it, warns
        ensure(tmp_path / "synthetic", SyntheticSpec(64, 128, 1, 1, 0), progress=False)
    assert victim.read_text() == "keep me" and partial.exists()


def test_deletion_follows_no_link(tmp_path):
    outside = tmp_path / "photos"
    outside.mkdir()
    (outside / "a.png").write_bytes(b"precious")
    partial = _partial_with(tmp_path, [])
    (partial / "leftImg8bit").symlink_to(outside, target_is_directory=True)
    entry = {"path": "leftImg8bit/a.png", "sha256": _sha(outside / "a.png")}
    with pytest.raises(ForeignDataError, match="is a symbolic link"):
        delete_owned(partial, [entry])
    assert (outside / "a.png").read_bytes() == b"precious"


def test_a_file_changed_since_it_was_written_is_not_deleted(tmp_path):
    partial = _partial_with(tmp_path, [])
    f = partial / "leftImg8bit" / "x.png"
    f.parent.mkdir()
    f.write_bytes(b"new content")
    with pytest.raises(ForeignDataError, match="content changed"):
        delete_owned(partial, [{"path": "leftImg8bit/x.png", "sha256": "0" * 64}])
    assert f.exists()


def test_a_partial_tree_of_the_kit_is_removed_file_by_file(tmp_path):
    spec = SyntheticSpec(64, 128, 1, 1, 0)
    partial = _partial_with(tmp_path, [])
    f = partial / "leftImg8bit" / "a.png"
    f.parent.mkdir()
    f.write_bytes(b"partial")
    (partial / "journal.jsonl").write_text(json.dumps({"path": "leftImg8bit/a.png", "sha256": _sha(f)}) + "\n")
    tree = ensure(tmp_path / "synthetic", spec, progress=False)
    assert tree.exists() and not partial.exists()


# -- inputs changed under a run ------------------------------------------------------------------------------
def test_a_resume_refuses_a_changed_latency_table(tmp_path):
    from fasterseg.latency import LatencyTable
    from fasterseg.latency.calibrate import rescaled
    from fasterseg.nas.run import run_search
    from fasterseg.paths import resolve

    table = rescaled(LatencyTable.load(resolve(profile("tiny").latency.table)), 1.0).save(tmp_path / "t.csv")
    cfg = apply_overrides(profile("tiny"), [f"data.root={tmp_path / 'd'}", "data.num_train=8", "data.num_val=2",
                                            "search.steps_per_epoch=2", f"latency.table={table}",
                                            "latency.calibration=off", "runtime.tensorboard=false"])
    run_search(cfg, tmp_path / "s", progress=False, max_steps=1)
    rescaled(LatencyTable.load(table), 50.0).save(table)  # x50 on disk, the same path
    with pytest.raises(RunError, match="latency_table changed"):
        run_search(cfg, tmp_path / "s", resume=True, progress=False)


def test_a_resume_refuses_a_training_set_with_images_removed(arch, tmp_path):
    src = prepare_data(cfg_of(tmp_path / "syn").data, progress=False)
    real = tmp_path / "cityscapes"
    shutil.copytree(src / "leftImg8bit", real / "leftImg8bit")
    shutil.copytree(src / "gtFine", real / "gtFine")
    cfg = apply_overrides(cfg_of(tmp_path / "syn"), ["data.dataset=cityscapes", f"data.root={real}"])
    run_train(cfg, arch, tmp_path / "run", progress=False, max_steps=1)
    victim = sorted((real / "leftImg8bit" / "train").rglob("*.png"))[0]
    victim.unlink()
    (real / "gtFine" / "train" / victim.parent.name / victim.name.replace("leftImg8bit", "gtFine_labelIds")).unlink()
    with pytest.raises(RunError, match="its data changed"):
        run_train(cfg, arch, tmp_path / "run", resume=True, progress=False)


# -- the pipeline --------------------------------------------------------------------------------------------
PIPE = ["data.num_train=8", "data.num_val=2", "search.pretrain_epochs=1", "search.search_epochs=1",
        "search.steps_per_epoch=1", "search.batch_size=2", "search.pretrain_batch_size=2", "train.epochs=1",
        "train.steps_per_epoch=2", "train.batch_size=2", "train.crop=[64, 128]", "eval.overlays=1",
        'eval.latency_backends=["torch"]', "runtime.tensorboard=false"]


@pytest.fixture(scope="module")
def pipeline_whole(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipe")
    assert main(["pipeline", "--profile", "tiny", "--out", str(base / "p"), f"data.root={base / 'd'}", *PIPE]) == 0
    return base


@pytest.mark.parametrize("point", ["pipeline.derive", "pipeline.student", "evaluation.figures"])
def test_a_pipeline_killed_at_a_stage_ends_as_an_uninterrupted_one(point, pipeline_whole, tmp_path, monkeypatch,
                                                                   capsys):
    args = ["pipeline", "--profile", "tiny", "--out", str(tmp_path / "p"), f"data.root={pipeline_whole / 'd'}", *PIPE]
    _faults(monkeypatch, f"raise:point={point}")
    assert main(args) == 130
    monkeypatch.delenv("FASTERSEG_FAULTS")
    assert main(args) == 0
    a, b = pipeline_whole / "p", tmp_path / "p"
    _same_weights(a / "train-student", b / "train-student")
    ma, mb = (json.loads((x / "train-student" / "eval" / "metrics.json").read_text()) for x in (a, b))
    assert ma["miou"] == mb["miou"]
    for f in ("overlays.png", "confusion.png"):  # an evaluation killed before its end is made again, whole
        assert (b / "train-teacher" / "eval" / f).exists() and (b / "train-student" / "eval" / f).exists()
    assert "figures/training_curves.png" in (b / "report.md").read_text() or (b / "figures").exists()


def test_a_pipeline_refuses_other_settings_and_remakes_a_damaged_export(pipeline_whole, capsys):
    args = ["pipeline", "--profile", "tiny", "--out", str(pipeline_whole / "p"), f"data.root={pipeline_whole / 'd'}",
            *PIPE]
    assert main([*args, "train.lr=0.5"]) == 2
    assert "started with another config (train.lr: 0.05 -> 0.5)" in capsys.readouterr().err
    onnx = pipeline_whole / "p" / "train-student" / "export" / "model.onnx"
    onnx.write_bytes(b"damaged")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[8/9 export]" in out and onnx.read_bytes() != b"damaged"


def test_a_done_run_without_its_weights_is_repaired(root, arch, whole, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    (out / "model_best.pt").unlink()
    run_train(cfg_of(root), arch, out, resume=True, progress=False)
    assert (out / "model_best.pt").exists()
    _same_weights(whole, out)


# -- damaged records and bad inputs: one line naming the file or field ----------------------------------
@pytest.mark.parametrize("content", [b"garbage{", b"", "{}".encode("utf-16"), b"[1, 2]"])
@pytest.mark.parametrize("name", ["run.json", "config.json", "model.json", "history/steps.csv"])
def test_damaged_records_are_named(name, content, whole, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    (out / name).write_bytes(content)
    if name == "history/steps.csv":
        with pytest.raises(RunError, match="steps.csv is damaged"):
            load_history(out)
        return
    code = main(["evaluate", str(out), "--profile", "tiny"] if name == "model.json" else
                ["train", "--resume", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1 and name in err


def test_a_damaged_sidecar_or_metrics_file_is_named(whole, tmp_path, capsys):
    from fasterseg.evaluation.run import write_latency
    from fasterseg.latency import LatencyTable, LatencyTableError
    from fasterseg.paths import resolve

    src = resolve(profile("tiny").latency.table)
    shutil.copy(src, tmp_path / "t.csv")
    (tmp_path / "t.json").write_text("not json")
    with pytest.raises(LatencyTableError, match="t.json is damaged"):
        LatencyTable.load(tmp_path / "t.csv")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{broken")
    with pytest.raises(RunError, match="metrics.json is damaged"):
        write_latency(tmp_path, [])


@pytest.mark.parametrize("override, message", [
    ("search.arch_lr=1e999", "expected a finite number"),
    ("space.layers=1000000", "the search would need"),
    ("runtime.device=cuda", "no CUDA device is available here; use runtime.device=cpu"),
])
def test_absurd_or_impossible_settings_are_one_line(override, message, tmp_path, capsys):
    if override == "runtime.device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["search", "--profile", "tiny", "--out", str(tmp_path / "s"), f"data.root={tmp_path / 'd'}", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_an_absurd_architecture_is_refused_by_the_loader(tmp_path):
    from fasterseg.nets import published
    from fasterseg.nets.arch import Architecture, ArchitectureError

    d = published.load("fasterseg_student").to_dict()
    d["fch"] = 1_000_000_000
    (tmp_path / "huge.json").write_text(json.dumps(d))
    with pytest.raises(ArchitectureError, match="at most fch 256"):
        Architecture.load(tmp_path / "huge.json")


def test_a_data_root_that_is_a_file_is_named(tmp_path, capsys):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    assert main(["data", "check", "--root", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(ForeignDataError, match="is a file"):
        prepare_data(apply_overrides(profile("tiny"), [f"data.root={f}"]).data, progress=False)


def test_an_all_ignore_data_set_is_warned_about(tmp_path):
    from PIL import Image

    from fasterseg.data.prepare import label_warning

    src = prepare_data(cfg_of(tmp_path / "syn").data, progress=False)
    real = tmp_path / "cityscapes"
    shutil.copytree(src, real, ignore=shutil.ignore_patterns("synthetic.json"))
    for lab in (real / "gtFine" / "train").rglob("*_gtFine_labelIds.png"):
        Image.fromarray(np.zeros_like(np.asarray(Image.open(lab)))).save(lab)  # label id 0: unlabeled
    cfg = apply_overrides(cfg_of(tmp_path / "syn"), ["data.dataset=cityscapes", f"data.root={real}"])
    assert "every pixel of the first" in label_warning(cfg.data)


def test_the_config_must_be_finite_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="finite"):
        apply_overrides(profile("tiny"), ["search.arch_lr=1e999"])
