import subprocess
import sys

from fasterseg.cli import main


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "fasterseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("demo", "data", "figures", "config"):
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


def test_demo_end_to_end_small(tmp_path, capsys):
    args = ["demo", "--profile", "tiny", "--out", str(tmp_path / "demo"), f"data.root={tmp_path / 'data'}",
            "data.num_train=12", "data.num_val=4", "search.pretrain_epochs=1", "search.search_epochs=1",
            "search.steps_per_epoch=2", "search.batch_size=2", "search.pretrain_batch_size=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[demo 4/4] derived student" in out and "predicted latency" in out
    assert (tmp_path / "demo" / "figures" / "alpha_evolution.png").exists()
    assert main(args) == 0  # a finished run is reused, not repeated
    assert "(done run found)" in capsys.readouterr().out
