"""The GPU paths. CI has no GPU: the tests marked `gpu` skip there; the device check's own code is run on the CPU
(its dry run) so that a GPU minute is never spent on a broken script."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")


def test_the_device_check_script_runs_its_sections_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, "scripts/device_check.py", "--cpu-dry-run", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(out.read_text())
    for section in ("search", "train", "evaluation", "latency_table", "tensorrt"):
        assert "error" not in r[section], (section, r[section])
    assert r["search"]["none"]["seconds_per_step"] > 0 and r["latency_table"]["entries"] > 0
    assert "torch_fp32" in r["tensorrt"]["timings"]


@pytest.mark.gpu
@cuda
def test_cuda_timing_reads_cuda_events():
    from fasterseg.timing import time_calls

    a = torch.randn(2048, 2048, device="cuda")
    t = time_calls(lambda: a @ a, samples=5, warmup=2, device="cuda")
    assert t.median_ms > 0 and t.count == 5


@pytest.mark.gpu
@cuda
def test_a_search_step_in_fp16_on_the_gpu_keeps_finite_weights():
    from fasterseg.config import apply_overrides, profile
    from fasterseg.latency import load_for
    from fasterseg.nas.searcher import Searcher
    from fasterseg.runtime import Runtime

    cfg = apply_overrides(profile("tiny"), ["runtime.device=cuda", "runtime.amp=fp16", "latency.calibration=off"])
    s = Searcher(cfg, load_for(cfg), Runtime.start(cfg.runtime))
    x, y = torch.randn(4, 3, 64, 128), torch.randint(0, 19, (4, 64, 128))
    s.step("search", (x, y), (x, y))
    assert s.weight_scaler.is_enabled() and all(torch.isfinite(p).all() for p in s.net.parameters())


@pytest.mark.gpu
@cuda
def test_evaluation_runs_on_the_gpu():
    from fasterseg.evaluation.scores import evaluate_model
    from fasterseg.nets.build import build_model, model_spec
    from fasterseg.runtime import Runtime

    net = build_model(model_spec("fasterseg_student", 19), aux=False).cuda()
    data = [(torch.randn(3, 128, 256), torch.randint(0, 19, (128, 256))) for _ in range(2)]
    scores, cm = evaluate_model(net, data, 19, runtime=Runtime(torch.device("cuda")))
    assert cm.sum() == 2 * 128 * 256
