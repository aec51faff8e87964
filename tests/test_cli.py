import json
import subprocess
import sys

import pytest
from conftest import REPO

from fasterseg.cli import main


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "fasterseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("pipeline", "demo", "search", "data", "figures", "config"):
        assert cmd in out.stdout


def test_data_check_reports_and_fails_clearly(tiny_tree, tmp_path, capsys):
    assert main(["data", "check", "--root", str(tiny_tree)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "8 images" in out and "road" in out
    assert main(["data", "check", "--root", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_override_error_is_reported(capsys):
    assert main(["config", "--profile", "tiny", "data.nope=3"]) == 2
    assert "has no field" in capsys.readouterr().err


def test_pipeline_end_to_end_small(tmp_path, capsys):
    args = ["pipeline", "--profile", "tiny", "--out", str(tmp_path / "p"), f"data.root={tmp_path / 'data'}",
            "data.num_train=12", "data.num_val=4", "search.pretrain_epochs=1", "search.search_epochs=1",
            "search.steps_per_epoch=2", "search.batch_size=2", "search.pretrain_batch_size=2", "train.epochs=1",
            "train.steps_per_epoch=2", "train.batch_size=2", "train.crop=[64, 128]", "eval.overlays=1",
            'eval.latency_backends=["torch"]']
    assert main(args) == 0
    out = capsys.readouterr().out
    for stage in ("[4/9 derive]", "[5/9 teacher]", "[6/9 student]", "[7/9 evaluate]", "[8/9 export]", "[9/9 report]"):
        assert stage in out
    assert "predicted_ms" in out and "measured_ms_torch" in out and "majority_miou" in out
    p = tmp_path / "p"
    for f in ("report.md", "archs/student.json", "figures/training_curves.png", "figures/per_class_iou.png",
              "figures/arch_student.png", "train-student/model_best.pt", "train-student/export/model.onnx"):
        assert (p / f).exists(), f
    assert json.loads((p / "train-student" / "model.json").read_text())["teacher"].endswith("train-teacher")
    assert main(args) == 0  # a finished run is reused, not repeated
    assert "(done: skipped)" in capsys.readouterr().out


def test_resume_without_profile_uses_the_stored_config(tmp_path, capsys):
    out = tmp_path / "s"
    common = [f"data.root={tmp_path / 'data'}", "data.num_train=12", "data.num_val=4", "search.pretrain_epochs=1",
              "search.search_epochs=1", "search.steps_per_epoch=2", "search.batch_size=2",
              "search.pretrain_batch_size=2"]
    assert main(["search", "--profile", "tiny", "--out", str(out), "--max-steps", "1", *common]) == 0
    assert "stopped at the step cap" in capsys.readouterr().out
    assert main(["search", "--resume", "--out", str(out)]) == 0
    assert main(["search", "--resume", "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out


def test_bench_networks_report_structure(tmp_path, capsys):
    """`fasterseg bench networks --profile tiny`: structure of the report (not timings)."""
    out = tmp_path / "bench.json"
    assert main(["bench", "networks", "--profile", "tiny", "--rounds", "1", "--lut-keys", "6", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    names = {r["network"] for r in res["networks"]}
    assert names == {"fasterseg_student", "fast_scnn", "lraspp_mobilenetv3_large", "bisenetv2", "ddrnet23_slim"}
    for r in res["networks"]:
        assert r["resolution"] == [128, 256] and r["params_M"] > 0
        for rt in ("torch", "torch_channels_last", "ort_fp32", "ort_int8"):
            assert r[rt]["median_ms"] > 0 and r[rt]["ratio_to_reference"] > 0
        assert r["fps_ort_fp32"] == pytest.approx(1e3 / r["ort_fp32"]["median_ms"])
    miou = {r["network"]: r["miou_equal_budget"] for r in res["networks"]}
    assert res["networks"][0]["seeds"] >= 1
    assert 25 < miou["fast_scnn"] < 40  # from the committed cpu-budget reference runs
    assert res["search_step"]["seconds_per_step"] > 0 and res["search_step"]["layers"] == 8
    lb = res["lut_build"]
    assert lb["entries_timed"] == 6 and lb["entries_in_table"] > 100 and lb["extrapolated"]
    assert lb["seconds_whole_table"] == pytest.approx(lb["seconds_per_entry"] * lb["entries_in_table"])
    printed = capsys.readouterr().out
    assert "| fast_scnn | 128x256 |" in printed and "Search step" in printed and "Latency table build" in printed


def test_bench_networks_up_to_the_class_map_at_a_chosen_size(tmp_path, capsys):
    """`--output classes --resolutions 64x128`: every network timed up to its class map, at that size only."""
    out = tmp_path / "classes.json"
    assert main(["bench", "networks", "--profile", "tiny", "--rounds", "1", "--no-search", "--only", "fast_scnn",
                 "--output", "classes", "--resolutions", "64x128", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["output"] == "classes" and [r["resolution"] for r in res["networks"]] == [[64, 128]]
    assert res["networks"][0]["ort_int8"]["median_ms"] > 0
    with pytest.raises(SystemExit):
        main(["bench", "networks", "--resolutions", "512by1024"])
    assert "is not a size HxW" in capsys.readouterr().err


def test_bench_panel_times_control_moves(tmp_path, capsys):
    """`fasterseg bench panel`: the tuning panel over the committed cpu sweep, one control change per move."""
    out = tmp_path / "panel.json"
    assert main(["bench", "panel", "--rounds", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    r = res["panel"]
    assert r["rounds"] == 2 and r["median_ms"] > 0 and r["ratio_to_reference"] > 0
    assert r["sweep"] == "data/runs/sweep-cpu" and res["profile"] == "cpu"
    assert "one control move updates in" in capsys.readouterr().out


def test_the_readme_gpu_walkthrough_commands_parse_and_their_configs_are_valid():
    """Every `$FS ...` line of the README's "Cityscapes on a GPU" walk-through: the CLI accepts it and its config is
    valid (the data path is a placeholder: nothing runs)."""
    from fasterseg.cli import parse
    from fasterseg.config import load_config

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Cityscapes on a GPU"):]
    block = section[section.index("```bash") + 7:section.index("```", section.index("```bash") + 7)]
    commands = [c.split("#")[0].strip() for c in block.replace("\\\n", " ").splitlines() if c.strip().startswith("$FS")]
    assert len(commands) >= 6
    for c in commands:
        argv = c.replace("$C", "/path/to/cityscapes").split()[1:]
        args = parse(argv)
        if hasattr(args, "profile"):
            load_config(getattr(args, "config", None), args.profile, getattr(args, "overrides", [])).validate()
