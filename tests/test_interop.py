"""What a segmentation researcher plugs the kit into: the official Cityscapes evaluation, CamVid, the public API,
config files, TensorBoard, the original release's weights, latency tables that say when they do not fit."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fasterseg as fs
from fasterseg.cli import main
from fasterseg.config import ConfigError, apply_overrides, load_config, profile
from fasterseg.data.cityscapes import CityscapesDataset
from fasterseg.data.prepare import prepare_data
from fasterseg.data.transforms import EvalTransform, normalize
from fasterseg.evaluation.official import official_scores
from fasterseg.evaluation.scores import evaluate_model
from fasterseg.nets.build import load_trained, predict_image, predict_logits
from fasterseg.training.trainer import run_train

from conftest import need_reference

SMALL = ["data.num_train=8", "data.num_val=2", "train.epochs=1", "train.steps_per_epoch=3", "train.batch_size=2",
         "train.crop=[64, 128]", "train.val_every=1", "runtime.threads=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny training run (the published student at F=4 would be slow: a random derived architecture)."""
    from fasterseg.latency.networks import random_architectures
    from fasterseg.nets.derive import DeriveRules
    from fasterseg.nets.space import SearchSpace

    root = tmp_path_factory.mktemp("interop")
    arch = random_architectures(SearchSpace(8, 4), 1, [(1.0, 1.0)], 19, seed=3, rules=DeriveRules(2, 2, 2))[0]
    arch_file = arch.save(root / "tiny.json")
    cfg = apply_overrides(profile("tiny"), [f"data.root={root / 'data'}", *SMALL])
    run = run_train(cfg, arch_file, root / "run", progress=False)
    return cfg, run, prepare_data(cfg.data, progress=False)


# -- the official Cityscapes evaluation ------------------------------------------------------------------
def test_official_evaluator_accepts_predict_label_ids_and_agrees_with_the_kit(trained, tmp_path):
    """`predict --label-ids` writes one prediction per image in a folder of its own, and the synthetic layout has
    instance ids, so cityscapesscripts' evaluator runs with its defaults (instance scores included); its class mIoU
    equals the kit's on the same predictions."""
    cfg, run, tree = trained
    assert main(["predict", run.as_posix(), "--profile", "tiny", "--images", str(tree / "leftImg8bit" / "val"),
                 "--out", str(tmp_path / "pred"), "--label-ids", "--no-flip"]) == 0
    assert sorted(p.name for p in (tmp_path / "pred" / "label_ids").rglob("*.png")) == \
        sorted(p.name.replace("_leftImg8bit", "") for p in (tree / "leftImg8bit" / "val").rglob("*.png"))
    assert list((tree / "gtFine" / "val").rglob("*_gtFine_instanceIds.png"))
    official = official_scores(tree, tmp_path / "pred" / "label_ids")  # the evaluator's defaults: instances too
    assert {"averageScoreInstClasses", "classInstScores"} <= set(official) and "car" in official["classScores"]
    model, _ = load_trained(run)
    val = CityscapesDataset(tree, "val", EvalTransform())
    scores, _ = evaluate_model(model, val, 19, flip=False)
    assert official["averageScoreClasses"] == pytest.approx(scores.miou, abs=1e-9)


def test_evaluate_and_predict_agree_on_sizes_that_are_not_multiples_of_32(trained):
    """The evaluation pads the raw image with black; prediction pads the same way (not with the mean colour)."""
    _, run, tree = trained
    model, _ = load_trained(run)
    img = CityscapesDataset(tree, "val").load(0)[0][:100, :150].copy()
    lab = np.zeros(img.shape[:2], np.uint8)
    x, _ = EvalTransform()(img, lab)
    via_evaluation = predict_logits(model, x[None])[0, :, :100, :150]
    via_predict = predict_logits(model, torch.from_numpy(normalize(img))[None])[0]
    assert torch.equal(via_evaluation, via_predict)
    assert (predict_image(model, img) == via_evaluation.argmax(0).numpy()).all()


def test_predict_flips_as_the_profile_evaluates(trained, tmp_path, monkeypatch):
    import fasterseg.cli as cli
    from fasterseg.deploy.predict import Predictions

    seen = []
    monkeypatch.setattr(cli, "predict_folder", lambda *a, **k: seen.append(k["flip"]) or Predictions())
    _, run, tree = trained
    common = [run.as_posix(), "--images", str(tree / "leftImg8bit" / "val"), "--out", str(tmp_path / "p")]
    for argv in (["--profile", "paper"], ["--profile", "tiny"], ["--profile", "paper", "--no-flip"],
                 ["--profile", "tiny", "eval.flip=true"]):
        assert main(["predict", *common, *argv]) == 0
    assert seen == [True, False, False, True]


def test_predict_skips_and_lists_what_it_cannot_read(trained, tmp_path, capsys):
    _, run, tree = trained
    images = tmp_path / "in"
    images.mkdir()
    rgb = CityscapesDataset(tree, "val").load(0)[0]
    Image.fromarray(rgb).save(images / "a.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(images / "grey16.png")  # 16-bit grey
    Image.fromarray(rgb[:1, :1]).save(images / "tiny.png")
    (images / "broken.png").write_bytes(b"not a png")
    assert main(["predict", run.as_posix(), "--images", str(images), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 files written" in out and "skipped 2" in out and "broken.png" in out and "tiny.png: 1x1 pixels" in out
    grey = np.asarray(Image.open(tmp_path / "out" / "overlays" / "grey16_overlay.png"))
    assert grey.std() > 0  # scaled to 8 bits, not read as all white


# -- CamVid --------------------------------------------------------------------------------------------
def _camvid_tree(root: Path, source: Path) -> Path:
    """A small CamVid-layout tree (<split>/*.png, <split>annot/*.png with 0..10, 11 = void), 100x170 images (not
    multiples of 32), drawn from a synthetic tree's images and labels."""
    to_camvid = np.full(256, 11, np.uint8)  # Cityscapes train id -> CamVid class
    for cs, cv in {10: 0, 2: 1, 5: 2, 0: 3, 1: 4, 8: 5, 7: 6, 4: 7, 13: 8, 11: 9, 18: 10}.items():
        to_camvid[cs] = cv
    for split in ("train", "val", "test"):
        ds = CityscapesDataset(source, "train" if split == "train" else "val")
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(len(ds)):
            img, lab = ds.load(i)
            Image.fromarray(img[:100, :170]).save(root / split / f"f{i:03d}.png")
            Image.fromarray(to_camvid[lab[:100, :170]]).save(root / f"{split}annot" / f"f{i:03d}.png")
    return root


def test_the_readme_camvid_command_runs_with_camvid_names(tmp_path, capsys):
    source = prepare_data(apply_overrides(profile("tiny"), [f"data.root={tmp_path / 's'}", "data.num_train=8",
                                                            "data.num_val=4"]).data, progress=False)
    camvid = _camvid_tree(tmp_path / "CamVid", source)
    args = ["pipeline", "--profile", "tiny", "data.dataset=camvid", f"data.root={camvid}", "data.num_classes=11",
            "--out", str(tmp_path / "p"), "search.pretrain_epochs=1", "search.search_epochs=1",
            "search.steps_per_epoch=2", "search.batch_size=2", "search.pretrain_batch_size=2", "train.epochs=1",
            "train.steps_per_epoch=2", "train.batch_size=2", "train.crop=[64, 128]", "eval.overlays=1",
            'eval.latency_backends=["torch"]']
    assert main(args) == 0, capsys.readouterr().err
    per_class = (tmp_path / "p" / "train-student" / "eval" / "per_class.csv").read_text()
    assert "pedestrian" in per_class and "sign symbol" in per_class and "traffic sign" not in per_class


def test_no_latency_build_rewrites_a_committed_table(capsys):
    from fasterseg.paths import resolve

    table = resolve(profile("tiny").latency.table)
    before = table.read_bytes(), table.with_suffix(".json").read_bytes()
    assert main(["latency", "build", "--profile", "tiny"]) == 2
    assert "already holds a complete latency table" in capsys.readouterr().err
    assert (table.read_bytes(), table.with_suffix(".json").read_bytes()) == before


def test_the_suggested_build_command_carries_the_overrides_and_a_new_file():
    from fasterseg.latency import LatencyTableError, load_for

    cfg = apply_overrides(profile("tiny"), ["space.fch=6", "latency.table=data/latency/tiny_torch_cpu1_128x256.csv"])
    with pytest.raises(LatencyTableError, match=r"latency build --profile tiny space.fch=6 --out runs/latency/.*\.csv"
                                               r"`, then run with latency.table="):
        load_for(cfg)


def test_a_small_real_tree_names_the_field_that_applies(tmp_path):
    """A Cityscapes tree too small for the batch: the fix is more images in data.root (data.num_train only sizes
    the synthetic set)."""
    from fasterseg.nas.run import search_data
    from fasterseg.nas.searcher import SearchError

    src = prepare_data(apply_overrides(profile("tiny"), [f"data.root={tmp_path / 's'}", "data.num_train=3",
                                                         "data.num_val=1"]).data, progress=False)
    real = tmp_path / "cityscapes"
    for sub in ("leftImg8bit", "gtFine"):
        shutil.copytree(src / sub, real / sub)
    cfg = apply_overrides(profile("tiny"), ["data.dataset=cityscapes", f"data.root={real}"])
    with pytest.raises(SearchError, match="add images to the cityscapes tree at data.root") as e:
        search_data(cfg)
    assert "data.num_train" not in str(e.value)


def test_latency_show_warns_with_the_factor_on_a_table_that_does_not_fit(tmp_path, capsys):
    from fasterseg.latency import LatencyTable
    from fasterseg.latency.calibrate import rescaled
    from fasterseg.paths import resolve

    src = LatencyTable.load(resolve(profile("tiny").latency.table))
    path = rescaled(src, 50.0, "test: a table of a 50x slower machine").save(tmp_path / "slow.csv")
    assert main(["latency", "show", "--profile", "tiny", "--table", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("warning: ") and "does not fit this machine" in out and "x the recorded times" in out


# -- the public API, config files, tracking ----------------------------------------------------------------
def test_three_lines_from_a_trained_run_to_a_class_map(trained):
    _, run, tree = trained
    net = fs.load_network(run)
    classes = fs.predict(net, next((tree / "leftImg8bit" / "val").rglob("*.png")))
    assert classes.shape == (128, 256) and classes.dtype == np.uint8 and classes.max() < 19
    assert fs.predict(net, np.zeros((70, 90, 3), np.uint8)).shape == (70, 90)
    assert {"profile", "load_network", "predict", "search", "train", "evaluate", "export"} <= set(fs.__all__)


def test_config_file_round_trip_overrides_and_unknown_keys(tmp_path, capsys):
    path = tmp_path / "cpu.yaml"
    assert main(["config", "--profile", "cpu", "--write", str(path)]) == 0
    assert load_config(path) == profile("cpu")
    assert load_config(path, overrides=["search.lr=0.5"]).search.lr == 0.5
    path.write_text("profile: tiny\nsearch:\n  lr: 1e-3\n  arch_lr: 2e-3\n")
    cfg = load_config(path)
    assert (cfg.profile, cfg.search.lr, cfg.search.arch_lr, cfg.search.batch_size) == ("tiny", 1e-3, 2e-3, 4)
    path.write_text("serch:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="unknown section 'serch' \\(did you mean 'search'\\?\\)"):
        load_config(path)
    path.write_text("search:\n  btach_size: 2\n")
    with pytest.raises(ConfigError, match="no field 'btach_size' \\(did you mean 'batch_size'\\?\\)"):
        load_config(path)
    assert main(["search", "--config", str(path), "--out", str(tmp_path / "s")]) == 2
    assert "did you mean 'batch_size'" in capsys.readouterr().err


def test_tensorboard_events_and_provenance(trained, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, run, _ = trained
    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    ea.Reload()
    tags = ea.Tags()
    assert {"step/loss", "step/lr", "epoch/val_miou"} <= set(tags["scalars"]) and tags["images"]
    assert [e.step for e in ea.Scalars("step/loss")] == [1, 2, 3]
    info = json.loads((run / "run.json").read_text())
    p = info["provenance"]
    assert {"git", "command", "packages", "cpu"} <= set(p) and p["packages"]["torch"].startswith("2.13")
    assert "torch_capability" in p["cpu"] and "commit" in p["git"]
    off = run_train(apply_overrides(cfg, ["runtime.tensorboard=false"]), json.loads((run / "model.json").read_text()),
                    tmp_path / "off", progress=False, max_steps=1)
    assert not (off / "tensorboard").exists()


# -- the original release's weights ---------------------------------------------------------------------
def test_imported_original_weights_reproduce_the_original_logits(tmp_path):
    weights, io = need_reference("original_student_weights1.pt"), need_reference("original_student_io.npz")
    assert main(["import-weights", str(weights), "--arch", "fasterseg_student", "--out", str(tmp_path / "run")]) == 0
    model, _ = load_trained(tmp_path / "run")
    d = np.load(io)
    with torch.no_grad():
        logits = model(torch.from_numpy(d["image"])).numpy()
    assert np.abs(logits - d["logits"]).max() <= 1e-5 * max(1.0, np.abs(d["logits"]).max())


def test_weights_of_another_network_are_refused_naming_the_tensors(tmp_path, capsys):
    weights = need_reference("original_student_weights1.pt")
    assert main(["import-weights", str(weights), "--arch", "fasterseg_teacher", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "do not fit fasterseg_teacher" in err and "another shape" in err and "stem.0.conv.0.weight" in err


def test_teacher_names_map_both_ways(tmp_path):
    """The teacher has no reference file: its kit state dict renamed to the original's names imports back equal."""
    from fasterseg.importers.weights import map_state, original_key
    from fasterseg.nets import published
    from fasterseg.nets.network import DerivedNet

    model = DerivedNet(published.load("fasterseg_teacher"), aux=True)
    ends = [b.ends_at for b in model.arch.branches]
    state = model.state_dict()
    original = {original_key(k, ends): v for k, v in state.items()}
    original["ffm.channel_attention.1.conv.weight"] = torch.zeros(1)  # built but unused by the original: ignored
    back = map_state(original, model)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
