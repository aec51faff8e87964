"""Scores of a network on a data set: whole images at full resolution, a confusion matrix, mIoU.

- `evaluate_model`: the confusion matrix over an evaluation split (images padded to multiples of 32 with black,
  prediction cropped back; optionally averaged with the mirrored image), hence mIoU, per-class IoU and pixel
  accuracy (`metrics.SegScores`); data-parallel ranks each take a share of the images and the matrices are
  summed.
- `majority_baseline`: predicting the most frequent training class everywhere, so every mIoU has a reference.
- `per_class_table`: per-class IoU and ground-truth share, by class name.

Training validates with `evaluate_model`; `fasterseg.evaluation.run` evaluates a finished run with it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from fasterseg.data.labels import IGNORE
from fasterseg.metrics import SegMeter, SegScores
from fasterseg.nets.build import predict_logits
from fasterseg.runtime import Runtime


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, dataset, num_classes: int, flip: bool = False, batch_size: int = 1,
                   images: int = 0, runtime=None, progress: bool = False) -> tuple[SegScores, np.ndarray]:
    """(scores, confusion matrix (C, C), rows = ground truth) of `model` on `dataset` (an evaluation
    dataset: whole images, labels at full resolution). `images` > 0 evaluates the first that many."""
    rt = runtime or Runtime(next(model.parameters()).device)
    n = min(len(dataset), images) if images else len(dataset)
    mine = list(range(rt.rank, n, rt.world))
    was_training = model.training
    model.eval()
    meter = SegMeter(num_classes)
    for k in tqdm(range(0, len(mine), batch_size), desc="evaluate", disable=not progress, leave=False):
        xs, ys = zip(*(dataset[i] for i in mine[k:k + batch_size]))
        x, y = rt.to(torch.stack(xs), torch.stack(ys))
        with rt.autocast():
            logits = predict_logits(model, x, flip)
        meter.update(logits, y)
    model.train(was_training)
    cm = rt.all_reduce_sum(meter.cm)
    return SegScores.from_confusion(cm), cm


def class_pixels(dataset, num_classes: int, images: int = 0) -> np.ndarray:
    """Labelled pixels per class (int64, length C) over a dataset's label maps (no image decoding)."""
    counts = np.zeros(num_classes, np.int64)
    n = min(len(dataset), images) if images else len(dataset)
    for i in range(n):
        lab = dataset.load(i)[1]
        lab = lab[lab != IGNORE]
        counts += np.bincount(lab.ravel(), minlength=num_classes)[:num_classes]
    return counts


def majority_baseline(train, val, num_classes: int, images: int = 0) -> dict:
    """mIoU and pixel accuracy of predicting the most frequent training class at every pixel of `val`."""
    cls = int(class_pixels(train, num_classes).argmax())
    gt = class_pixels(val, num_classes, images)
    cm = np.zeros((num_classes, num_classes), np.int64)
    cm[:, cls] = gt
    s = SegScores.from_confusion(cm)
    return {"class": cls, "miou": s.miou, "pixel_accuracy": s.pixel_accuracy}


def per_class_table(scores: SegScores, cm: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Per-class IoU (and the ground-truth pixel share) as a table indexed by class name."""
    gt = cm.sum(1)
    return pd.DataFrame({"iou": scores.iou, "gt_share": gt / max(1, gt.sum())},
                        index=pd.Index(class_names[: len(gt)], name="class"))


