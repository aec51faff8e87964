"""Where and how a run computes (the config's ``runtime`` section): device, threads, mixed precision, and
the process group when launched with ``torchrun`` (gloo on CPU, nccl on CUDA).

A run launched by ``torchrun --nproc_per_node N -m fasterseg ...`` sees ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``
in its environment; `Runtime.start` then joins the process group, pins each rank to its GPU
(``cuda:LOCAL_RANK``) and splits the data across ranks. Only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is refused with the fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device={name} but no CUDA device is available here; use runtime.device=cpu "
                           "(or auto)")
    return torch.device(name)


@dataclass
class Runtime:
    """The resolved runtime of one process: device, AMP dtype, rank and world size."""

    device: torch.device
    amp: torch.dtype | None = None
    rank: int = 0
    world: int = 1
    workers: int = 0
    pin_memory: bool = False

    @classmethod
    def start(cls, cfg) -> "Runtime":
        """Resolve `cfg.runtime` (a `RuntimeConfig`), set threads and cuDNN, join torchrun's group if any."""
        r = cfg
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        device = resolve_device(r.device)
        if world > 1 and device.type == "cuda":
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
            torch.cuda.set_device(device)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if r.threads:
            torch.set_num_threads(r.threads)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = r.cudnn_benchmark
        amp = AMP_DTYPES.get(r.amp)
        if amp is torch.float16 and device.type != "cuda":
            raise RuntimeError("runtime.amp=fp16 needs a CUDA device; use runtime.amp=bf16 or none on the CPU")
        return cls(device, amp, rank, world, r.workers, r.pin_memory and device.type == "cuda")

    @property
    def main(self) -> bool:
        """Whether this process writes records (rank 0)."""
        return self.rank == 0

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op without AMP)."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def scaler(self) -> "torch.amp.GradScaler":
        """A gradient scaler (active only for fp16)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp is torch.float16)

    def to(self, *tensors: torch.Tensor):
        nb = self.pin_memory
        return tuple(t.to(self.device, non_blocking=nb) for t in tensors)

    def all_reduce_grads(self, params) -> None:
        """Average the gradients of `params` over the ranks (every rank holds the same set of them)."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def all_reduce_sum(self, array):
        """Sum a numpy array over the ranks (confusion matrices); returns the summed array."""
        if self.world == 1:
            return array
        t = torch.as_tensor(array, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.cpu().numpy().astype(array.dtype)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"device": str(self.device), "device_name": name, "amp": str(self.amp).replace("torch.", "") if self.amp
                else "fp32", "world_size": self.world, "threads": torch.get_num_threads()}
