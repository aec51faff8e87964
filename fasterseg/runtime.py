"""Where and how a run computes (the config's ``runtime`` section): device, threads, mixed precision, and the
process group when launched with ``torchrun`` (gloo on CPU, nccl on CUDA).

A run launched by ``torchrun --nproc_per_node N -m fasterseg ...`` sees ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in
its environment; `Runtime.start` then joins the process group, pins each rank to its GPU (``cuda:LOCAL_RANK``)
and splits the data across ranks. Only rank 0 writes logs and checkpoints. What the ranks do together:

- `all_reduce_grads`: gradients averaged in a few flat buckets (`BUCKET_MB` each), not one call per tensor;
- `agree`: every rank's stop code (a non-finite loss, Ctrl-C, SIGTERM) known to all, so all stop at the same step;
  a peer that died makes the collective fail, and `PeerLost` says so;
- `sync_batch_norm`: batch statistics over the global batch (``runtime.sync_bn``, on by default with more than one
  process): PyTorch's `SyncBatchNorm` on CUDA, `CPUSyncBatchNorm` (the same arithmetic, over gloo) on the CPU;
- `barrier`, `all_reduce_sum`, `shutdown` (``destroy_process_group``).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BUCKET_MB = 25  # gradient bucket size for the search's all-reduce (as DistributedDataParallel's default)
STOP_CODES = {1: "a non-finite or exploding loss", 2: "Ctrl-C or SIGTERM"}


class DeviceError(ValueError):
    """A device or precision this machine cannot give; the message names the field and the fix."""


class PeerLost(RuntimeError):
    """A collective failed: another process of the group died or stopped answering."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is refused with the fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"runtime.device={name} but no CUDA device is available here; use runtime.device=cpu "
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
    sync_bn: bool = False

    @classmethod
    def start(cls, cfg) -> "Runtime":
        """Resolve `cfg` (a `RuntimeConfig`), set threads and cuDNN, join torchrun's group if any."""
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
            raise DeviceError("runtime.amp=fp16 needs a CUDA device; use runtime.amp=bf16 or none on the CPU")
        return cls(device, amp, rank, world, r.workers, r.pin_memory and device.type == "cuda",
                   r.sync_bn and world > 1)

    @classmethod
    def local(cls, cfg) -> "Runtime":
        """`start` without joining a process group: this process alone (an evaluation on rank 0), on its device
        (``cuda:LOCAL_RANK`` under torchrun) with the configured threads."""
        device = resolve_device(cfg.device)
        if device.type == "cuda" and os.environ.get("LOCAL_RANK"):
            device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        amp = AMP_DTYPES.get(cfg.amp)
        if amp is torch.float16 and device.type != "cuda":
            amp = None
        return cls(device, amp, 0, 1, 0, False, False)

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

    # -- collectives ------------------------------------------------------------------------------------
    def all_reduce_grads(self, params, bucket_mb: float = BUCKET_MB) -> int:
        """Average the gradients of `params` over the ranks in flat buckets of about `bucket_mb` MB (a parameter
        without a gradient on this rank counts as zeros, so every rank reduces the same layout). Returns the number
        of all-reduce calls."""
        if self.world == 1:
            return 0
        params = [p for p in params if p.requires_grad]
        calls, bucket, size = 0, [], 0
        limit = bucket_mb * 2**20

        def flush():
            nonlocal calls
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket]
            flat = torch.cat([g.reshape(-1) for g in grads])
            self._collective(dist.all_reduce, flat)
            flat /= self.world
            k = 0
            for p, g in zip(bucket, grads):
                n = g.numel()
                p.grad = flat[k:k + n].view_as(p).clone()
                k += n
            calls += 1

        for p in params:
            bucket.append(p)
            size += p.numel() * p.element_size()
            if size >= limit:
                flush()
                bucket, size = [], 0
        if bucket:
            flush()
        return calls

    def all_reduce_sum(self, array):
        """Sum a numpy array over the ranks (confusion matrices); returns the summed array."""
        if self.world == 1:
            return array
        t = torch.as_tensor(array, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        self._collective(dist.all_reduce, t)
        return t.cpu().numpy().astype(array.dtype)

    def agree(self, code: int) -> list[int]:
        """Every rank's `code` (0: carry on; `STOP_CODES` otherwise), known to all ranks after one collective."""
        if self.world == 1:
            return [int(code)]
        v = torch.zeros(self.world, dtype=torch.int64)
        v[self.rank] = int(code)
        self._collective(dist.all_reduce, v)
        return [int(c) for c in v]

    def barrier(self) -> None:
        if self.world > 1:
            self._collective(dist.barrier)

    def _collective(self, fn, *args) -> None:
        try:
            fn(*args)
        except RuntimeError as e:  # gloo/nccl: a peer's socket closed, a timeout
            raise PeerLost(f"rank {self.rank} lost the other processes of the group ({str(e).splitlines()[0]})") \
                from None

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"device": str(self.device), "device_name": name, "amp": str(self.amp).replace("torch.", "") if self.amp
                else "fp32", "world_size": self.world, "threads": torch.get_num_threads(), "sync_bn": self.sync_bn}


def load_scaler(scaler: "torch.amp.GradScaler", state: dict | None) -> None:
    """Restore a gradient scaler from a checkpoint, whatever ``runtime.amp`` was then: a scaler that was off
    (``none``/``bf16``: an empty state) leaves an fp16 scaler at its initial scale; an fp16 state is dropped when
    the scaler is now off. ``runtime.amp`` may change when a run is resumed."""
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)


def shutdown() -> None:
    """Leave the process group (``destroy_process_group``), if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- synchronized batch norm ------------------------------------------------------------------------------
class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: d(sum over ranks)/d(this rank's input)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the global batch, over any process group (gloo on the
    CPU, where PyTorch's `SyncBatchNorm` refuses to run): the per-channel sums, sums of squares and counts of all
    ranks are added with a differentiable all-reduce, so gradients are those of the global batch too. The same
    parameters and buffers as `nn.BatchNorm2d` (state dicts load either way); eval mode is plain batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        local = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)),
                           torch.full((1,), float(x.numel() // c), device=x.device)])
        total = _SumOverRanks.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / max(float(n) - 1, 1.0))
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every `nn.BatchNorm2d` synchronized over the process group: PyTorch's `SyncBatchNorm` on CUDA,
    `CPUSyncBatchNorm` elsewhere. State dicts keep their keys."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(next(iter(child.state_dict().values())).device)
            setattr(model, name, new)
        else:
            sync_batch_norm(child, device)
    return model

