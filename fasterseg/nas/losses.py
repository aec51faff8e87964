"""The supernet's weight loss: the forward passes of one weight step (every architecture set at its own widths
plus the max/min sandwich passes; max, min and two random widths while pretraining), identical passes merged, and
labels down-sampled to the 1/8 predictions."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

from fasterseg.losses import ohem_cross_entropy
from fasterseg.nets.supernet import Supernet


def downsample_labels(target: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """Nearest down-sampling of a label map (N, H, W): the search scores the 1/8 logits against it."""
    return target[:, factor // 2::factor, factor // 2::factor].contiguous()


@contextmanager
def repeated_bn_updates(net: nn.Module, times: int):
    """Within the block, one training-mode forward updates every batch norm's running statistics as
    `times` forwards of the same batch would: momentum m becomes 1 - (1 - m) ** times, and the batch
    count of every batch norm the block used grows by `times`."""
    if times == 1:
        yield
        return
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None]
    saved = [(m.momentum, int(m.num_batches_tracked)) for m in bns]
    for m in bns:
        m.momentum = 1 - (1 - m.momentum) ** times
    try:
        yield
    finally:
        for m, (mom, count) in zip(bns, saved):
            m.momentum = mom
            if int(m.num_batches_tracked) != count:
                m.num_batches_tracked += times - 1


def weight_passes(net: Supernet, pretrain: bool) -> list[tuple[str, int, list[str]]]:
    """The forward passes of one weight step as (width mode, set, log keys), identical passes merged.

    - search: every architecture set at its own widths (``sampled``), plus the sandwich passes at
      ``max`` and ``min`` widths (of the first set);
    - pretrain: ``max``, ``min`` and two ``random`` width passes (no architecture set is preferred).
    A set whose widths are not searched runs at max widths when ``sampled``, so its pass and the ``max``
    pass of the same set compute the same loss: that computation runs once and counts twice (log keys
    name every pass it stands for)."""
    passes = [("max", 0), ("min", 0), ("random", 0), ("random", 0)] if pretrain else \
        [("sampled", i) for i in range(len(net.arch_sets))] + [("max", 0), ("min", 0)]
    runs: list[tuple[str, int, list[str]]] = []
    for mode, i in passes:
        key = f"{net.names[i]}_{mode}" if mode == "sampled" else mode
        run_mode = "max" if mode == "sampled" and not net.arch_sets[i].search_widths else mode
        twin = next((r for r in runs if (r[0], r[1]) == (run_mode, i) and run_mode != "random"), None)
        if twin is None:
            runs.append((run_mode, i, [key]))
        else:
            twin[2].append(key)
    return runs


def supernet_weight_loss(net: Supernet, x: torch.Tensor, y: torch.Tensor, pretrain: bool = False,
                         criterion=ohem_cross_entropy) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one weight step (the original's ``_loss``): summed over the five predictions of
    every pass of `weight_passes`. A merged pass counts once per pass it stands for (its gradient is
    exactly the sum of the identical passes', and batch-norm statistics move as after each of them).
    Returns the loss and its parts (floats, one per pass) for logging.
    """
    total, parts = 0.0, {}
    for mode, i, keys in weight_passes(net, pretrain):
        with repeated_bn_updates(net, len(keys)):
            out = net(x, arch_set=i, widths=mode)
        loss = sum(criterion(v, y) for v in out.values())
        for key in keys:
            parts[key] = parts.get(key, 0.0) + float(loss.detach())
        total = total + (loss if len(keys) == 1 else len(keys) * loss)
    return total, parts


