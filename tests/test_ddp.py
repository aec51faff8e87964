"""Several processes under torchrun (gloo, CPU, 2 processes): the commands of the README's devices section as a
user runs them. Each test starts real `torchrun` processes."""
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from fasterseg.config import profile
from fasterseg.runs import load_history, read_info

REPO = Path(__file__).resolve().parents[1]
TINY_DATA = ["data.num_train=8", "data.num_val=2"]
TRAIN = ["train.epochs=3", "train.steps_per_epoch=6", "train.batch_size=4", "train.crop=[64, 128]",
         "train.val_every=3", "train.checkpoint_every=2", "runtime.threads=1"]


def torchrun(args: list[str], tmp_path: Path, env: dict | None = None, background: bool = False):
    """`torchrun --standalone --nproc_per_node 2 -m fasterseg ARGS` in the repo, with its own data root."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fasterseg",
           *args]
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(env or {}))
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    from fasterseg.latency.networks import random_architectures
    from fasterseg.nets.derive import DeriveRules
    from fasterseg.nets.space import SearchSpace

    a = random_architectures(SearchSpace(8, 4), 1, [(1.0, 1.0)], 19, seed=3, rules=DeriveRules(2, 2, 2))[0]
    return a.save(tmp_path_factory.mktemp("ddp-arch") / "tiny.json")


def _weights(run: Path) -> dict:
    return torch.load(run / "model_last.pt", weights_only=True)


def test_pipeline_under_torchrun_and_its_training_equals_one_process_accumulating(tmp_path):
    """The tiny pipeline completes under torchrun (data and tables on rank 0, barriers, evaluation and export on
    rank 0); its teacher equals one process training the same architecture with the same two micro-batches
    (runtime.sync_bn=false: each micro-batch's own batch norm, as one process accumulating)."""
    data = f"data.root={tmp_path / 'data'}"
    small = [data, *TINY_DATA, "search.pretrain_epochs=1", "search.search_epochs=1", "search.steps_per_epoch=2",
             "search.batch_size=4", "search.pretrain_batch_size=4", "train.epochs=1", "train.steps_per_epoch=2",
             "train.batch_size=4", "train.crop=[64, 128]", "eval.overlays=1", 'eval.latency_backends=["torch"]',
             "runtime.sync_bn=false"]
    done = torchrun(["pipeline", "--profile", "tiny", "--out", str(tmp_path / "p"), *small], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("[9/9 report]") == 1  # one rank reports
    p = tmp_path / "p"
    assert (p / "report.md").exists() and (p / "train-student" / "export" / "model.onnx").exists()
    assert read_info(p / "train-teacher")["status"] == read_info(p / "train-student")["status"] == "done"
    from fasterseg.cli import main

    assert main(["train", "--profile", "tiny", "--model", str(p / "archs" / "teacher.json"), "--out",
                 str(tmp_path / "one"), *small, "train.accumulate=2"]) == 0
    two, one = _weights(p / "train-teacher"), _weights(tmp_path / "one")
    for k, v in two.items():
        if v.is_floating_point() and "running" not in k:  # batch-norm buffers track rank 0's half, not both
            torch.testing.assert_close(v, one[k], rtol=0, atol=1e-5)


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` started with FASTERSEG_TEST_TAG=`tag`."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FASTERSEG_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env and \
                b"LOCAL_RANK=%d" % rank in env:
            return int(d.name)
    return None


def test_a_killed_rank_stops_the_group_and_resume_ends_as_an_uninterrupted_run(arch, tmp_path):
    args = ["train", "--profile", "tiny", "--model", str(arch), f"data.root={tmp_path / 'data'}", *TINY_DATA, *TRAIN]
    whole = torchrun([*args, "--out", str(tmp_path / "whole")], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    tag = uuid.uuid4().hex
    proc = torchrun([*args, "--out", str(tmp_path / "cut")], tmp_path, env={"FASTERSEG_TEST_TAG": tag},
                    background=True)
    first = tmp_path / "cut" / "checkpoints" / "last-00000002.pt.sha256"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    pid = _rank_pid(tag, 1)
    assert pid is not None and proc.poll() is None, "the run ended before a rank could be killed"
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    info = read_info(tmp_path / "cut")
    assert info["status"] != "done"
    resumed = torchrun([*args, "--out", str(tmp_path / "cut"), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=0, atol=1e-6)
    steps = load_history(tmp_path / "cut")["steps"]["step"].tolist()
    assert steps == sorted(set(steps)) == list(range(1, 19))  # no step twice, none missing


def test_a_nan_on_one_rank_stops_both_at_the_same_step(arch, tmp_path):
    args = ["train", "--profile", "tiny", "--model", str(arch), f"data.root={tmp_path / 'data'}", *TINY_DATA, *TRAIN,
            "--out", str(tmp_path / "nan")]
    done = torchrun(args, tmp_path, env={"FASTERSEG_FAULTS": "nan_loss:rank=1,step=3"})
    assert done.returncode != 0
    info = read_info(tmp_path / "nan")
    assert info["status"] == "failed" and "on rank 1" in info["reason"] and "global step 3" in info["reason"]
    assert load_history(tmp_path / "nan")["steps"]["step"].tolist() == [1, 2]  # both ranks stopped before step 3
    assert len(re.findall(r"^error: ", done.stderr, flags=re.M)) == 1  # one message, from rank 0


def test_the_readme_devices_commands_are_valid():
    """Every command of the README's devices section, with the world size its torchrun line gives: its config is
    valid and its batches split across the processes (a GPU is named: checked on the CPU)."""
    from fasterseg.cli import parse
    from fasterseg.config import load_config
    from fasterseg.config_checks import world_problems

    text = (REPO / "README.md").read_text()
    section = text[text.index("**Devices and several processes.**"):]
    block = section[section.index("```bash") + 7:section.index("```", section.index("```bash") + 7)]
    commands = [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip().startswith("torchrun")]
    assert len(commands) >= 3
    for c in commands:
        c = c.split("#")[0]
        nproc = int(re.search(r"--nproc_per_node (\d+)", c).group(1))
        nodes = int(m.group(1)) if (m := re.search(r"--nnodes (\d+)", c)) else 1
        argv = c.split(" -m fasterseg ")[1].split()
        args = parse(argv)
        cfg = load_config(args.config, args.profile, args.overrides).validate()
        assert world_problems(cfg, args.command, nproc * nodes) == [], c
    assert profile("paper").runtime.sync_bn
