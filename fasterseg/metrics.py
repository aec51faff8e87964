"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

As in Cityscapes evaluation, pixels labelled 255 are ignored and classes absent from both the
prediction and the ground truth (IoU 0/0) are excluded from the mean (reported as NaN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255  # the kit's ignore label (`fasterseg.data.labels.IGNORE`; the metrics import nothing of the kit)


def confusion_matrix(pred, target, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    keep = target != ignore
    pred, target = pred[keep], target[keep]
    if target.size and (target.max() >= num_classes or target.min() < 0):
        raise ValueError(f"ground truth holds class {target.max()} but num_classes={num_classes}")
    if pred.size and (pred.max() >= num_classes or pred.min() < 0):
        raise ValueError(f"prediction holds class {pred.max()} but num_classes={num_classes}")
    return np.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class SegScores:
    """Scores of a confusion matrix: `iou` per class (NaN where the class is absent from both)."""

    iou: np.ndarray
    miou: float
    pixel_accuracy: float

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> "SegScores":
        cm = np.asarray(cm, np.float64)
        tp = np.diag(cm)
        denom = cm.sum(0) + cm.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)
        total = cm.sum()
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        return cls(iou=iou, miou=miou, pixel_accuracy=float(tp.sum() / total) if total else float("nan"))


class SegMeter:
    """Accumulates a confusion matrix over batches (logits or class maps)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.cm = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred, target) -> None:
        """pred: class ids (N, H, W) or logits (N, C, H, W) (torch or numpy); target (N, H, W)."""
        if hasattr(pred, "detach"):
            pred = pred.detach()
            if pred.dim() == 4:
                pred = pred.argmax(1)
            pred = pred.cpu().numpy()
        elif np.ndim(pred) == 4:
            pred = np.argmax(pred, 1)
        if hasattr(target, "detach"):
            target = target.detach().cpu().numpy()
        self.cm += confusion_matrix(pred, target, self.num_classes)

    def scores(self) -> SegScores:
        return SegScores.from_confusion(self.cm)
