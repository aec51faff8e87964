"""Bad inputs and faults, tried as a new user would: each gives a one-line error and loses nothing."""
import json
import os

import pytest

from fasterseg.cli import main
from fasterseg.config import ConfigError, apply_overrides, profile
from fasterseg.data.synthetic import ForeignDataError, SyntheticSpec, ensure, generate


def _fake_cityscapes(root):
    """A tree in the Cityscapes layout that the kit did not generate."""
    for d in ("leftImg8bit/train/aachen", "gtFine/train/aachen"):
        (root / d).mkdir(parents=True)
    (root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png").write_bytes(b"real image")
    (root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png").write_bytes(b"real label")
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- defect 1: real data is never written into or deleted ------------------------------------------------
def test_real_data_is_never_touched(tmp_path):
    files = _fake_cityscapes(tmp_path)
    before = {p: p.read_bytes() for p in files}
    with pytest.raises(ForeignDataError, match="holds data the kit did not generate.*data.dataset=cityscapes"):
        ensure(tmp_path, SyntheticSpec(64, 128, 2, 1, 0), progress=False)
    # even with a (copied, old-layout) synthetic marker beside them, the kit writes only a tree of its own
    (tmp_path / "synthetic.json").write_text(json.dumps({"height": 64, "width": 128, "num_train": 1, "num_val": 1,
                                                         "seed": 5, "digest": "old"}))
    tree = ensure(tmp_path, SyntheticSpec(64, 128, 2, 1, 0), progress=False)
    assert tree.parent == tmp_path and {p: p.read_bytes() for p in files} == before
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file() and tree not in p.parents
                  and p.name not in ("synthetic.json", ".generate.lock")) == files


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ForeignDataError, match="not empty"):
        generate(tmp_path, SyntheticSpec(64, 128, 1, 1, 0), progress=False)


# -- defect 4: the whole config is validated before any work ---------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("search.search_epochs=abc", "search.search_epochs=abc: expected integer, got 'abc'"),
    ("search.lam=0.1", "search.lam=0.1: expected a list of numbers, got 0.1"),
    ("search.batch_size=true", "search.batch_size=true: expected integer"),
])
def test_overrides_are_type_checked(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(profile("tiny"), [override])


@pytest.mark.parametrize("override, message", [
    ("search.batch_size=0", "search.batch_size=0: must be >= 1"),
    ("search.search_epochs=-1", "search.search_epochs=-1: must be >= 1"),
    ("search.steps_per_epoch=-3", "search.steps_per_epoch=-3: must be >= 0"),
    ("search.lam=[0.1]", "search.lam has 1 values but there are 2 architecture sets"),
    ("search.crop=[100, 100]", "multiples of 32"),
    ("latency.penalty=soft", "latency.penalty='soft': choose one of decoupled, coarse"),
    ("runtime.device=tpu", "runtime.device='tpu'"),
])
def test_ranges_are_checked_before_any_work(override, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--profile", "tiny", "--out", str(out), override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid config") and message in err and err.count("\n") == 1
    assert not out.exists()  # nothing left behind


def test_training_sections_are_validated_too():
    with pytest.raises(ConfigError, match="train.accumulate=3 must divide train.batch_size=4"):
        apply_overrides(profile("tiny"), ["train.accumulate=3"]).validate()


def test_absurd_sizes_are_refused_before_allocating(tmp_path, capsys):
    assert main(["search", "--profile", "tiny", "--out", str(tmp_path / "r"), "space.fch=4000",
                 "search.crop=[4096, 8192]"]) == 2
    assert "more than this machine's" in capsys.readouterr().err


# -- defect 5: latency tables are validated ---------------------------------------------------------------
def _copy_table(tmp_path, edit=None, meta=None):
    from fasterseg.paths import resolve

    src = resolve(profile("tiny").latency.table)
    lines = src.read_text().splitlines()
    if edit:
        lines = edit(lines)
    dst = tmp_path / "t.csv"
    dst.write_text("\n".join(lines) + "\n")
    m = json.loads(src.with_suffix(".json").read_text())
    m.update(meta or {})
    dst.with_suffix(".json").write_text(json.dumps(m))
    return dst


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ls[:1] + [ls[1].rsplit(",", 3)[0] + ",-12,0.1,5"] + ls[2:], "must be finite and >= 0"),
    (lambda ls: ls[:1] + [ls[1].rsplit(",", 3)[0] + ",inf,0.1,5"] + ls[2:], "must be finite and >= 0"),
    (lambda ls: ls + [ls[1]], "appears twice"),
])
def test_bad_table_entries_are_refused(edit, message, tmp_path):
    from fasterseg.latency import LatencyTable, LatencyTableError

    path = _copy_table(tmp_path, edit)
    with pytest.raises(LatencyTableError, match=f"{path}.*{message}.*latency build"):
        LatencyTable.load(path)


@pytest.mark.parametrize("meta, field", [({"threads": 4}, "threads"), ({"backend": "onnxruntime"}, "backend"),
                                         ({"device_type": "cuda"}, "device_type")])
def test_a_table_for_another_setup_is_refused_for_a_search(meta, field, tmp_path):
    from fasterseg.latency import LatencyTableError, load_for

    path = _copy_table(tmp_path, meta=meta)
    cfg = apply_overrides(profile("tiny"), [f"latency.table={path}"])
    with pytest.raises(LatencyTableError, match=f"{field}: table has"):
        load_for(cfg)


def test_missing_table_says_where_relative_paths_resolve(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTERSEG_HOME", str(tmp_path))
    assert main(["latency", "show", "--profile", "tiny", "--table", "nope.csv"]) == 2
    assert "no latency table" in capsys.readouterr().err
    from fasterseg.latency import LatencyTableError, load_for

    with pytest.raises(LatencyTableError, match=rf"relative paths resolve against \$FASTERSEG_HOME, {tmp_path}"):
        load_for(apply_overrides(profile("tiny"), ["latency.table=nope.csv"]))


# -- defect 7: one-line messages --------------------------------------------------------------------------
@pytest.mark.parametrize("arg, message", [
    ("fasterseg_studnet", "Did you mean 'fasterseg_student'"),
    ("missing.json", "no architecture file"),
    (".", "is a folder"),
])
def test_architecture_arguments(arg, message, capsys):
    assert main(["arch", "show", arg]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("value", [None, "abc"])
def test_null_or_text_fields_in_an_architecture(value, tmp_path, capsys):
    from fasterseg.nets import published

    d = json.loads(published.path("fasterseg_student").read_text())
    d["fch"] = value
    p = tmp_path / "a.json"
    p.write_text(json.dumps(d))
    assert main(["arch", "show", str(p)]) == 2
    assert f"'fch' must be an integer, got {json.dumps(value)}" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_non_root(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert main(["search", "--profile", "tiny", "--out", str(ro / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder is needed: unwritable for root as well
    assert main(["search", "--profile", "tiny", "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--out" in err


def test_missing_data_root_message(tmp_path, capsys):
    root = tmp_path / "cityscapes"
    assert main(["search", "--profile", "tiny", "--out", str(tmp_path / "run"), "data.dataset=cityscapes",
                 f"data.root={root}"]) == 2
    err = capsys.readouterr().err
    assert "data.root=" in err and "generate" not in err and not (tmp_path / "run").exists()
    assert not root.exists()  # nothing generated into the path meant for Cityscapes


def test_resume_of_nothing(tmp_path, capsys):
    assert main(["search", "--profile", "tiny", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_another_kind_of_run_is_refused(tmp_path):
    from fasterseg.runs import RunDir, RunError

    cfg = profile("tiny")
    RunDir.start(tmp_path / "r", "train", cfg, ("train",)).close()
    with pytest.raises(RunError, match="holds a train run, not a search run"):
        RunDir.start(tmp_path / "r", "search", cfg, ("search",))


def test_a_table_built_elsewhere_is_caught_with_the_factor(tmp_path, monkeypatch):
    """Entries scaled x3 (a table built on a 3x slower machine): the probe, timed here by a fixed clock that gives
    the original table's times (so neither the CPU nor its load matter), runs 1/3 of the recorded times, and a
    search with latency.calibration=check refuses with the factor and the fixes; rescale scales by it."""
    import fasterseg.latency.calibrate as calibrate
    from fasterseg.latency import LatencyTable, LatencyTableError, load_for
    from fasterseg.latency.calibrate import rescaled
    from fasterseg.paths import resolve

    cfg = profile("tiny")
    src = LatencyTable.load(resolve(cfg.latency.table))
    path = rescaled(src, 3.0, "test: built elsewhere").save(tmp_path / "slow.csv")
    monkeypatch.setattr(calibrate, "time_block", lambda backend, key: src.entries[key].median_ms)
    cfg = apply_overrides(cfg, [f"latency.table={path}", "latency.calibration=check"])
    load_for(cfg)  # without the fit check it loads
    with pytest.raises(LatencyTableError, match=r"run 0\.33x the recorded times.*latency.calibration=rescale"):
        load_for(cfg, check_fit=True)
    fixed = load_for(apply_overrides(cfg, ["latency.calibration=rescale"]), check_fit=True)
    assert fixed.meta["rescaled"][-1]["factor"] == pytest.approx(1 / 3)
    key = next(iter(src.entries))
    assert fixed.entries[key].median_ms == pytest.approx(src.entries[key].median_ms, rel=1e-4)  # CSV: 6 digits
    monkeypatch.setattr(calibrate, "time_block", lambda backend, key: 1.1 * src.entries[key].median_ms)
    assert load_for(apply_overrides(cfg, [f"latency.table={resolve(profile('tiny').latency.table)}"]),
                    check_fit=True)  # 1.1x: within the tolerance, used as it is


def test_relative_paths_resolve_against_the_project_root_from_any_directory(tmp_path, monkeypatch):
    from fasterseg.latency import load_for
    from fasterseg.paths import project_root, resolve

    monkeypatch.delenv("FASTERSEG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # somewhere else entirely
    assert resolve("data/latency") == project_root() / "data/latency" and (project_root() / "pyproject.toml").exists()
    assert load_for(profile("tiny")).entries  # the profile's relative table path is found from here too
