"""Estimated time and memory of each stage of the `paper` profile on one GPU (README, "Cityscapes on a GPU").

    .venv/bin/python scripts/gpu_estimates.py [--tflops 5] [--out data/bench/gpu_estimates.json]

No GPU ran this: every figure is an estimate from counts made here on the CPU. Multiply-adds are counted on the
networks themselves (`nets.counting.count`, at a small input, scaled by area: every map scales with it) and turned
into time at an assumed sustained rate (`--tflops`, fp32; a GTX 1080Ti peaks at 11.3, convolution-heavy training
typically sustains a third to a half of peak). A step is counted in forward-pass equivalents: a weight pass is a
forward and a backward (about 3 forwards), the architecture step's pass needs the backward through the activations
only (about 2). Memory: the search's from the kit's own estimate (`nets.footprint.supernet_bytes`, the check that
runs before every search); training's from the stored activations of one forward (every module's output, kept for
the backward) plus weights, gradients and momentum. Measured figures replace these where `scripts/device_check.sh`
runs on a GPU.
"""
from __future__ import annotations

import argparse
import json

import torch

from fasterseg.config import profile
from fasterseg.nets import published
from fasterseg.nets.counting import count
from fasterseg.nets.footprint import supernet_bytes
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import Supernet
from fasterseg.paths import resolve, write_text

SMALL = (64, 128)  # counting size; every figure is scaled from it by area


def macs_at(model: torch.nn.Module, h: int, w: int) -> float:
    """Multiply-adds of one forward of one image at h x w (counted at `SMALL`, scaled by area)."""
    return float(count(model, (1, 3, *SMALL)).loc["total", "macs"]) * (h * w) / (SMALL[0] * SMALL[1])


def activation_bytes(model: torch.nn.Module, h: int, w: int) -> float:
    """Bytes of every leaf module's output in one fp32 forward of one image at h x w (what a backward keeps)."""
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + o.numel()))
             for m in model.modules() if not list(m.children()) and not isinstance(m, torch.nn.Identity)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, *SMALL))
    for hk in hooks:
        hk.remove()
    return 4.0 * total[0] * (h * w) / (SMALL[0] * SMALL[1])


def estimates(tflops: float) -> dict:
    cfg = profile("paper")
    rate = tflops * 1e12 / 2  # multiply-adds per second
    s, t, d = cfg.search, cfg.train, cfg.data
    space = SearchSpace.from_config(cfg.space)
    torch.manual_seed(0)
    supernet = Supernet(space, d.num_classes, cfg.space.stem_head_widths)
    half = d.num_train * s.train_portion
    stages = []
    pre_steps = s.pretrain_epochs * int(half // s.pretrain_batch_size)
    pre = macs_at(supernet, *s.pretrain_crop) * s.pretrain_batch_size * 4 * 3  # 4 width passes, fwd + bwd
    search_steps = s.search_epochs * int(half // s.batch_size)
    step = macs_at(supernet, *s.crop) * s.batch_size * (3 * 3 + 2 * cfg.n_sets)  # 3 weight passes + arch passes
    w_bytes, a_bytes = supernet_bytes(cfg)
    stages.append({"stage": "search: pretraining", "steps": pre_steps, "gmacs_per_step": pre / 1e9,
                   "hours": pre_steps * pre / rate / 3600, "memory_gib": (w_bytes + a_bytes) / 2**30})
    stages.append({"stage": "search: architecture + weights", "steps": search_steps, "gmacs_per_step": step / 1e9,
                   "hours": search_steps * step / rate / 3600, "memory_gib": (w_bytes + a_bytes) / 2**30})
    h, w = t.crop
    steps = t.epochs * t.steps_per_epoch
    teacher = DerivedNet(published.load("fasterseg_teacher"), aux=True)
    student = DerivedNet(published.load("fasterseg_student"), aux=True)
    for name, net, extra in (("train the teacher", teacher, 0.0),
                             ("train the student, distilled", student, macs_at(teacher, h, w))):
        per = (3 * macs_at(net, h, w) + extra) * t.batch_size
        params = sum(p.numel() for p in net.parameters())
        mem = 3 * 4 * params + activation_bytes(net, h, w) * t.batch_size + (
            activation_bytes(teacher, h, w) * t.batch_size / 4 if extra else 0)  # a frozen teacher keeps little
        stages.append({"stage": name, "steps": steps, "gmacs_per_step": per / 1e9, "hours": steps * per / rate / 3600,
                       "memory_gib": mem / 2**30})
    ev = macs_at(student, d.image_height, d.image_width) * d.num_val
    stages.append({"stage": "evaluate the student (val, 1024x2048)", "steps": d.num_val, "gmacs_per_step":
                   ev / d.num_val / 1e9, "hours": ev / rate / 3600,
                   "memory_gib": activation_bytes(student, d.image_height, d.image_width) / 4 / 2**30})
    return {"estimated": True, "assumed_tflops_fp32": tflops, "profile": "paper", "stages": stages,
            "note": "estimates from counted multiply-adds at an assumed sustained rate; no GPU ran them"}


def markdown(res: dict) -> str:
    lines = ["| stage (paper profile, one GPU) | steps | GMACs per step | hours (estimated) | memory GiB (estimated) |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['stage']} | {r['steps']:,} | {r['gmacs_per_step']:.0f} | {r['hours']:.1f} | "
              f"{r['memory_gib']:.1f} |" for r in res["stages"]]
    lines.append(f"\nEstimated, not measured: multiply-adds counted on the networks here, at an assumed sustained "
                 f"{res['assumed_tflops_fp32']:g} TFLOP/s fp32 (`scripts/gpu_estimates.py`). The hours are lower "
                 "bounds: the search's small batches and many small kernels keep a GPU well below a steady rate. "
                 "Training memory counts weights, gradients, momentum and every module's output (functional "
                 "resizing and concatenation are not counted): also a lower bound.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflops", type=float, default=5.0, help="assumed sustained fp32 TFLOP/s of the GPU")
    ap.add_argument("--out", default="data/bench/gpu_estimates.json")
    args = ap.parse_args()
    res = estimates(args.tflops)
    write_text(resolve(args.out), json.dumps(res, indent=2) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
