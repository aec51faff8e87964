"""`fasterseg bench ddp`: search and training steps with 1 and 2 processes (gloo, CPU, one thread each), and the
share of a step spent reducing gradients.

Each configuration runs in fresh processes (``torch.multiprocessing``, spawn) on random batches of the profile's
crop and batch (the global batch split across ranks, as `run_search`/`run_train` split it):

- search: `Searcher.step` (architecture step + weight step); the time inside `Runtime.all_reduce_grads` (bucketed)
  and `Runtime.agree` is the reduction;
- training: `Trainer.step` on a derived network under `DistributedDataParallel`, which overlaps its reduction with
  the backward pass: the reduction's share is the step's time with the real all-reduce hook against a hook that
  communicates nothing (``1 - t_without / t_with``).

Times are medians of `steps` steps after `warmup`, with the reference convolution timed in the same processes;
ratios are what to compare across machines.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fasterseg.config import apply_overrides, profile
from fasterseg.latency import load_for
from fasterseg.nas.searcher import Searcher
from fasterseg.nets.build import build_model, model_spec
from fasterseg.nets.ops import kaiming_init
from fasterseg.runtime import Runtime
from fasterseg.timing import REF_MACS, environment, reference_conv
from fasterseg.training.trainer import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(cfg, crop, batch: int, rank: int, step: int):
    g = torch.Generator().manual_seed(1000 * step + rank)
    h, w = crop
    return (torch.randn(batch, 3, h, w, generator=g), torch.randint(0, cfg.data.num_classes, (batch, h, w),
                                                                    generator=g))


def _noop_hook(state, bucket):
    """A DDP communication hook that communicates nothing (the bucket's own gradients)."""
    fut = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


def _worker(rank: int, world: int, port: int, kind: str, profile_name: str, steps: int, warmup: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    cfg = apply_overrides(profile(profile_name), ["runtime.threads=1", "runtime.device=cpu",
                                                  "runtime.sync_bn=false", "latency.calibration=off"])
    rt = Runtime.start(cfg.runtime)
    ref = reference_conv()
    times, reduce_times, refs = [], [], []
    if kind == "search":
        s = Searcher(cfg, load_for(cfg), rt)
        spent = {"t": 0.0}
        for name in ("all_reduce_grads", "agree"):
            fn = getattr(rt, name)

            def timed(*a, _fn=fn, **k):
                t = time.perf_counter()
                r = _fn(*a, **k)
                spent["t"] += time.perf_counter() - t
                return r
            setattr(rt, name, timed)
        per_rank = cfg.search.batch_size // world
        for i in range(warmup + steps):
            spent["t"] = 0.0
            t = time.perf_counter()
            s.step("search", _batch(cfg, cfg.search.crop, per_rank, rank, i), _batch(cfg, cfg.search.crop, per_rank,
                                                                                  rank, i + 10_000))
            if i >= warmup:
                times.append(time.perf_counter() - t)
                reduce_times.append(spent["t"])
                t = time.perf_counter()
                ref()
                refs.append(time.perf_counter() - t)
        images = cfg.search.batch_size * 2  # an architecture batch and a weight batch
    else:
        torch.manual_seed(0)
        net = build_model(model_spec("fasterseg_student", 19), 19)
        kaiming_init(net)
        tr = Trainer(cfg, net, rt)
        if kind == "train_without_reduction" and world > 1:
            tr.net.register_comm_hook(None, _noop_hook)
        per_rank = cfg.train.batch_size // world
        for i in range(warmup + steps):
            x, y = _batch(cfg, cfg.train.crop, per_rank, rank, i)
            t = time.perf_counter()
            tr.step(x, y)
            if i >= warmup:
                times.append(time.perf_counter() - t)
                reduce_times.append(0.0)
                t = time.perf_counter()
                ref()
                refs.append(time.perf_counter() - t)
        images = cfg.train.batch_size
    if rank == 0:
        step = statistics.median(times)
        reduce = statistics.median(reduce_times)
        ref_ms = statistics.median(refs) * 1e3
        Path(out).write_text(json.dumps({"seconds_per_step": step, "steps_per_s": 1 / step,
                                         "images_per_s": images / step, "reduce_share": reduce / step,
                                         "reference_median_ms": ref_ms,
                                         "reference_gmacs_per_s": REF_MACS / ref_ms / 1e6,
                                         "step_in_reference_convs": step * 1e3 / ref_ms}))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def bench_ddp(profile_name: str = "tiny", steps: int = 6, warmup: int = 2) -> dict:
    """Search and training steps with 1 and 2 processes (module docstring)."""
    cfg = profile(profile_name)
    out: dict = {"environment": environment(1), "profile": profile_name, "steps": steps,
                 "search": {"batch": cfg.search.batch_size, "crop": list(cfg.search.crop)},
                 "train": {"batch": cfg.train.batch_size, "crop": list(cfg.train.crop), "network": "fasterseg_student"}}
    with tempfile.TemporaryDirectory() as tmp:

        def run(kind: str, world: int) -> dict:
            f = Path(tmp) / f"{kind}-{world}.json"
            mp.start_processes(_worker, args=(world, _free_port(), kind, profile_name, steps, warmup, str(f)),
                               nprocs=world, start_method="spawn")
            return json.loads(f.read_text())

        for kind in ("search", "train"):
            for world in (1, 2):
                out[kind][f"processes_{world}"] = run(kind, world)
        # DDP overlaps its reduction with the backward pass: its share is what a hook that communicates nothing saves
        without = run("train_without_reduction", 2)
        two = out["train"]["processes_2"]
        two["reduce_share"] = max(0.0, 1 - without["step_in_reference_convs"] / two["step_in_reference_convs"])
        for kind in ("search", "train"):
            one, two = out[kind]["processes_1"], out[kind]["processes_2"]
            # each step's time first divided by the reference conv timed in the same processes
            out[kind]["speedup_2_over_1"] = one["step_in_reference_convs"] / two["step_in_reference_convs"]
    return out


def summary_lines(res: dict) -> list[str]:
    env = res["environment"]
    lines = [f"[gloo, CPU, 1 thread per process, load {env['load_average_1min']:.2f}] profile {res['profile']}: "
             f"median of {res['steps']} steps"]
    for kind in ("search", "train"):
        r = res[kind]
        for w in (1, 2):
            p = r[f"processes_{w}"]
            lines.append(f"  {kind} step, {w} process{'es' if w > 1 else ''} (global batch {r['batch']} at "
                         f"{r['crop'][0]}x{r['crop'][1]}): {p['steps_per_s']:.2f} steps/s, {p['images_per_s']:.1f} "
                         f"images/s, {100 * p['reduce_share']:.0f} % of the step reducing; "
                         f"{p['step_in_reference_convs']:.0f}x the reference conv ({p['reference_gmacs_per_s']:.0f} "
                         "GMAC/s)")
        lines.append(f"  {kind}: 2 processes {r['speedup_2_over_1']:.2f}x the steps/s of 1")
    return lines
