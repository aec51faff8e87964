"""Fault injection: named points where a test (or a user checking their own setup) makes the kit fail on purpose.

The environment variable ``FASTERSEG_FAULTS`` lists faults, separated by ``;``, each ``point[:key=value,...]``:

- ``nan_loss:rank=1,step=3`` — the training or search loss of rank 1 becomes NaN at global step 3;
- ``raise:point=checkpoint.written,after=2`` — an `InjectedFault` (a `KeyboardInterrupt`, like a kill: nothing
  catches it as an error) at the 2nd time the point is passed; points are named where the code calls `hit`
  (``checkpoint.tmp`` after a checkpoint's bytes are on disk under their temporary name, ``checkpoint.written``
  between a checkpoint and its checksum, ``weights.written`` between the final weights and the run's status, ...);
- ``disk_full:point=checkpoint.tmp`` — ``OSError(ENOSPC)`` at that point.

Without the variable every call returns at once. The fault-injection suite (``tests/test_faults.py``) drives
these points in subprocesses and checks what the kit leaves behind.
"""
from __future__ import annotations

import errno
import os

import torch

_counts: dict[str, int] = {}


class InjectedFault(KeyboardInterrupt):
    """A crash at a chosen point (a kill would stop the process there); derives from `KeyboardInterrupt` so that no
    ``except Exception`` in the kit mistakes it for an error it could handle."""


def _faults() -> list[tuple[str, dict[str, str]]]:
    spec = os.environ.get("FASTERSEG_FAULTS", "")
    out = []
    for item in filter(None, (x.strip() for x in spec.split(";"))):
        kind, _, args = item.partition(":")
        out.append((kind, dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)))
    return out


def hit(point: str) -> None:
    """A named point: raise the fault the environment asks for here, if any."""
    if "FASTERSEG_FAULTS" not in os.environ:
        return
    _counts[point] = _counts.get(point, 0) + 1
    for kind, args in _faults():
        if args.get("point") != point or _counts[point] != int(args.get("after", 1)):
            continue
        if kind == "raise":
            raise InjectedFault(f"injected fault at {point}")
        if kind == "disk_full":
            raise OSError(errno.ENOSPC, "No space left on device (injected)")


def loss(value: torch.Tensor, rank: int, step: int) -> torch.Tensor:
    """`value`, or NaN where a ``nan_loss`` fault names this rank and global step (1-based)."""
    if "FASTERSEG_FAULTS" not in os.environ:
        return value
    for kind, args in _faults():
        if kind == "nan_loss" and int(args.get("rank", 0)) == rank and int(args.get("step", 1)) == step:
            return value * float("nan")
    return value
