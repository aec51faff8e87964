"""The prepared GPU check (`scripts/device_check.sh` runs it): what the kit does on one CUDA GPU, in one JSON file.

Sections, each recorded on its own (an error in one is written down and the next runs):

- ``environment``: GPU, driver, CUDA, torch, the CPU;
- ``search``: `paper`-profile search steps (L=16, F=12, both sets, the paper's batch 2 at 224x448) with AMP off,
  bf16 and fp16: seconds per step, peak GPU memory;
- ``train``: the published FasterSeg student trained at the paper's crop 512x1024 and batch 12 with AMP off,
  bf16 and fp16: seconds per step, peak GPU memory;
- ``evaluation``: whole 1024x2048 images through `evaluate_model` on the GPU (with and without flip), s/image;
- ``latency_table``: a few latency-table entries measured on CUDA (CUDA events) and the calibration probe re-timed
  against them;
- ``tensorrt``: the published student at 1024x2048 exported to ONNX, TensorRT engines built in fp32 and fp16, all
  timed interleaved (CUDA events) against PyTorch CUDA eager; skipped with the reason without TensorRT.

Random batches stand in for Cityscapes (none can be fetched there): the times do not depend on the pixels.
    python3 scripts/device_check.py --out data/bench/device-check.json [--quick]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, whatever Python runs it (the GPU machine has its own)

from fasterseg.config import apply_overrides, profile  # noqa: E402
from fasterseg.nets.build import build_model, inference_copy, kaiming_init, model_spec  # noqa: E402
from fasterseg.runtime import Runtime  # noqa: E402
from fasterseg.timing import cpu_record, device_sync  # noqa: E402

AMPS = ("none", "bf16", "fp16")
# --cpu-dry-run: the same code on the CPU with the tiny profile, to check the script before a GPU minute is spent
DRY = {"on": False}


def _profile():
    return profile("tiny" if DRY["on"] else "paper")


def _device() -> str:
    return "cpu" if DRY["on"] else "cuda"


def _amps() -> tuple[str, ...]:
    return ("none", "bf16") if DRY["on"] else AMPS


def _gpu_env() -> dict:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True)
    return {"gpu": torch.cuda.get_device_name(0), "nvidia_smi": smi.stdout.strip(), "cuda": torch.version.cuda,
            "torch": torch.__version__, "capability": list(torch.cuda.get_device_capability(0)),
            "python": sys.version.split()[0], "cpu": cpu_record(), "date": time.strftime("%Y-%m-%d %H:%M")}


def _timed_steps(step, n: int, warmup: int = 1) -> dict:
    """Median seconds per call of `step(i)` (CUDA events on the GPU) and the peak GPU memory."""
    cuda = not DRY["on"]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        step(i)
    times = []
    for i in range(n):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(warmup + i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            step(warmup + i)
            times.append(time.perf_counter() - t)
    times.sort()
    return {"seconds_per_step": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "steps": n,
            "peak_memory_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def _batch(n: int, h: int, w: int, classes: int = 19, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=g), torch.randint(0, classes, (n, h, w), generator=g)


def search_section(steps: int) -> dict:
    from fasterseg.latency import load_for
    from fasterseg.nas.searcher import Searcher

    out = {}
    for amp in _amps():
        cfg = apply_overrides(_profile(), [f"runtime.amp={amp}", f"runtime.device={_device()}",
                                           "latency.calibration=off"])
        s = Searcher(cfg, load_for(cfg), Runtime.start(cfg.runtime))
        h, w = cfg.search.crop
        b = cfg.search.batch_size
        out[amp] = _timed_steps(lambda i: s.step("search", _batch(b, h, w, seed=i), _batch(b, h, w, seed=i + 99)),
                                steps)
        out[amp].update(batch=b, crop=[h, w])
        s = None  # free the supernet before the next precision
        if not DRY["on"]:
            torch.cuda.empty_cache()
    return out


def train_section(steps: int) -> dict:
    from fasterseg.training.trainer import Trainer

    out = {}
    for amp in _amps():
        cfg = apply_overrides(_profile(), [f"runtime.amp={amp}", f"runtime.device={_device()}"])
        if DRY["on"]:
            cfg.train.crop, cfg.train.batch_size = (128, 256), 2
        torch.manual_seed(0)
        net = build_model(model_spec("fasterseg_student", 19))
        kaiming_init(net)
        t = Trainer(cfg, net, Runtime.start(cfg.runtime))
        h, w = cfg.train.crop
        b = cfg.train.batch_size
        out[amp] = _timed_steps(lambda i: t.step(*_batch(b, h, w, seed=i)), steps)
        out[amp].update(batch=b, crop=[h, w], network="fasterseg_student")
        t = None
        if not DRY["on"]:
            torch.cuda.empty_cache()
    return out


def evaluation_section(images: int) -> dict:
    from fasterseg.evaluation.scores import evaluate_model

    h, w = (128, 256) if DRY["on"] else (1024, 2048)

    class Random:  # whole images, as an evaluation dataset returns them
        def __len__(self):
            return images

        def __getitem__(self, i):
            x, y = _batch(1, h, w, seed=i)
            return x[0], y[0]

    cfg = apply_overrides(_profile(), [f"runtime.device={_device()}"])
    rt = Runtime.local(cfg.runtime)
    net = build_model(model_spec("fasterseg_student", 19), aux=False).to(rt.device)
    sync = device_sync(rt.device)
    out = {}
    for flip in (False, True):
        sync()
        t = time.perf_counter()
        evaluate_model(net, Random(), 19, flip=flip, runtime=rt)
        sync()
        out["flip" if flip else "no_flip"] = {"seconds_per_image": (time.perf_counter() - t) / images,
                                              "images": images, "resolution": [h, w]}
    return out


def latency_table_section(keys: int) -> dict:
    from fasterseg.latency.backends import get_backend
    from fasterseg.latency.build import build_table
    from fasterseg.latency.calibrate import measure_fit
    from fasterseg.latency.keys import space_keys
    from fasterseg.nets.space import SearchSpace

    cfg = _profile()
    h, w = (cfg.latency.height, cfg.latency.width) if DRY["on"] else (1024, 2048)
    space = SearchSpace.from_config(cfg.space)
    every = sorted(set(space_keys(space, cfg.space.stem_head_widths, 19, h, w)))
    chosen = every[:: max(1, len(every) // keys)][:keys]
    path = Path("/tmp/device_check_table.csv")
    backend = get_backend("torch", threads=1, device=_device())
    t = time.perf_counter()
    table = build_table(path, backend, space, cfg.space.stem_head_widths, 19, h, w, resume=False,
                        progress=False, keys=chosen)
    seconds = time.perf_counter() - t
    fit = measure_fit(table)
    return {"entries": len(table), "of_a_whole_table": len(every), "seconds": seconds, "backend": f"torch {_device()}",
            "sample": [{"key": list(k.as_tuple()), "median_ms": e.median_ms}
                       for k, e in list(table.entries.items())[:5]],
            "probe_factor": fit["factor"], "probe_ratios": fit["ratios"]}


def tensorrt_section(rounds: int) -> dict:
    from fasterseg.nets.onnx import export_onnx, tensorrt_available, tensorrt_call, tensorrt_engine
    from fasterseg.timing import interleaved_many

    net = inference_copy(build_model(model_spec("fasterseg_student", 19), aux=False)).eval()
    shape = (1, 3, 128, 256) if DRY["on"] else (1, 3, 1024, 2048)
    calls, out = {}, {}
    dev = net.to(_device())
    x = torch.randn(*shape, device=_device())

    def torch_call():
        with torch.inference_mode():
            dev(x)
    calls["torch_fp32"] = torch_call
    why = tensorrt_available()
    if why:
        out["tensorrt"] = f"skipped: {why}"
    else:
        onnx = export_onnx(net.cpu(), shape)
        dev = net.to(_device())
        for prec in ("fp32", "fp16"):
            t = time.perf_counter()
            engine = tensorrt_engine(onnx, fp16=prec == "fp16")
            out[f"build_seconds_{prec}"] = time.perf_counter() - t
            calls[f"tensorrt_{prec}"] = tensorrt_call(engine, shape)
    timed = interleaved_many(calls, rounds, warmup=3, progress=False, sync=device_sync(_device()))
    out["timings"] = {k: {"median_ms": v["median_ms"], "min_ms": v["min_ms"], "max_ms": v["max_ms"],
                          "fps": 1e3 / v["median_ms"]} for k, v in timed.items()}
    base = timed["torch_fp32"]["median_ms"]
    out["speedup_over_torch"] = {k: base / v["median_ms"] for k, v in timed.items()}
    out["network"], out["resolution"], out["interpolation"] = "fasterseg_student", list(shape[2:]), "bilinear"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "data" / "bench" / "device-check.json"))
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (a first look)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="the same code on the CPU, tiny sizes: checks the "
                    "script itself before a GPU is spent on it")
    args = ap.parse_args()
    DRY["on"] = args.cpu_dry_run
    if not torch.cuda.is_available() and not DRY["on"]:
        print("no CUDA device: this check is for a GPU machine (--cpu-dry-run checks the script on the CPU)")
        return 2
    n = 2 if args.quick or DRY["on"] else 4
    res = {"environment": {"dry_run": "cpu", "cpu": cpu_record()} if DRY["on"] else _gpu_env()}
    sections = [("search", lambda: search_section(n)), ("train", lambda: train_section(n)),
                ("evaluation", lambda: evaluation_section(2 if args.quick else 4)),
                ("latency_table", lambda: latency_table_section(8)),
                ("tensorrt", lambda: tensorrt_section(10 if args.quick else 30))]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, fn in sections:
        t = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001 - write it down, go on with the next section
            res[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        res[name + "_seconds"] = time.perf_counter() - t
        out.write_text(json.dumps(res, indent=2))  # after every section: a cut run keeps what it measured
        print(f"{name}: {res[name + '_seconds']:.0f} s", flush=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
