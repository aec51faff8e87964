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
