"""Losses: OHEM cross-entropy (the original's segmentation loss) and the supernet's weight loss.

OHEM keeps the pixels whose probability of the true class is at most 0.7, and at least `min_kept`
of the hardest pixels (batch*H*W/16 at label resolution); label 255 is ignored. With fewer valid
pixels than `min_kept` every valid pixel is kept (as the original).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.labels import IGNORE
from .supernet import Supernet


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, thresh: float = 0.7,
                       min_kept: int | None = None, ignore: int = IGNORE) -> torch.Tensor:
    """OHEM CE. logits (N, C, h, w) are resized (bilinear) to target (N, H, W) when sizes differ."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=True)
    n = target.numel()
    min_kept = n // 16 if min_kept is None else min_kept
    valid = target != ignore
    num_valid = int(valid.sum())
    if num_valid == 0:
        return logits.sum() * 0.0
    tgt = target.clone()
    if min_kept <= num_valid:  # as the original: with fewer valid pixels than min_kept, every one is kept
        with torch.no_grad():
            prob = F.softmax(logits, 1).gather(1, tgt.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
            threshold = torch.tensor(thresh, dtype=prob.dtype)
            if min_kept > 0:
                threshold = torch.maximum(torch.kthvalue(prob[valid], min_kept).values, threshold)
            tgt[valid & (prob > threshold)] = ignore
    return F.cross_entropy(logits, tgt, ignore_index=ignore)


def downsample_labels(target: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """Nearest down-sampling of a label map (N, H, W): the search scores the 1/8 logits against it."""
    return target[:, factor // 2::factor, factor // 2::factor].contiguous()


def supernet_weight_loss(net: Supernet, x: torch.Tensor, y: torch.Tensor, pretrain: bool = False,
                         criterion=ohem_cross_entropy) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one weight step (the original's ``_loss``): summed over the five predictions of

    - search: every architecture set at its own widths (``sampled``), plus the sandwich passes at
      ``max`` and ``min`` widths (of the first set);
    - pretrain: ``max``, ``min`` and two ``random`` width passes (no architecture set is preferred).
    Returns the loss and its parts (floats) for logging.
    """
    passes = [("max", 0), ("min", 0), ("random", 0), ("random", 0)] if pretrain else \
        [("sampled", i) for i in range(len(net.arch_sets))] + [("max", 0), ("min", 0)]
    total, parts = 0.0, {}
    for mode, i in passes:
        out = net(x, arch_set=i, widths=mode)
        loss = sum(criterion(v, y) for v in out.values())
        key = f"{net.names[i]}_{mode}" if mode == "sampled" else mode
        parts[key] = parts.get(key, 0.0) + float(loss.detach())
        total = total + loss
    return total, parts
