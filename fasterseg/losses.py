"""Segmentation losses: OHEM cross-entropy (the original's) and the training loss of a network with auxiliary
heads. The supernet's weight loss is `fasterseg.nas.losses`; distillation is `fasterseg.training.distill`.

OHEM keeps the pixels whose probability of the true class is at most 0.7, and at least `min_kept`
of the hardest pixels (batch*H*W/16 at label resolution); label 255 is ignored. With fewer valid
pixels than `min_kept` every valid pixel is kept (as the original).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fasterseg.data.labels import IGNORE


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




def segmentation_loss(outputs, y: torch.Tensor, tc) -> tuple[torch.Tensor, dict[str, float]]:
    """OHEM on the final logits + aux_weight x OHEM on each auxiliary head present (`tc`: `TrainConfig`)."""
    main, *aux = outputs
    keep = int(tc.ohem_keep * y.numel())
    loss_main = ohem_cross_entropy(main.float(), y, tc.ohem_thresh, keep)
    loss_aux = sum((ohem_cross_entropy(a.float(), y, tc.ohem_thresh, keep) for a in aux if a is not None),
                   torch.zeros((), device=y.device))
    return loss_main + tc.aux_weight * loss_aux, {"loss_main": float(loss_main.detach()),
                                                 "loss_aux": float(loss_aux.detach())}


