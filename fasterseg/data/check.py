"""Validate a data tree and summarise it: image counts per split and class pixel frequencies."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fasterseg.data.cityscapes import CamVidDataset, CityscapesDataset, DataTreeError
from fasterseg.data.labels import CAMVID_CLASSES, CITYSCAPES_CLASSES, IGNORE
from fasterseg.metrics import SegScores, confusion_matrix


@dataclass
class TreeSummary:
    """What `check_tree` found: counts per split, sizes, and pixel counts per class and split."""

    root: Path
    dataset: str
    counts: dict[str, int]
    sizes: dict[str, list[tuple[int, int]]]
    pixels: pd.DataFrame  # index: class name (+ "ignored"), columns: splits, values: pixel counts
    problems: list[str] = field(default_factory=list)

    def frequencies(self) -> pd.DataFrame:
        """Share of labelled (non-ignored) pixels per class and split, in percent."""
        px = self.pixels.drop(index="ignored", errors="ignore")
        return 100 * px / px.sum()

    def report(self) -> str:
        lines = [f"{self.dataset} tree at {self.root}"]
        for split, n in self.counts.items():
            sz = sorted(set(self.sizes[split]))
            shown = ", ".join(f"{h}x{w}" for h, w in sz[:3]) + (" ..." if len(sz) > 3 else "")
            lines.append(f"  {split:<5} {n:5d} images  (HxW {shown})")
        freq = self.frequencies().round(2)
        lines.append("class pixel frequencies (% of labelled pixels):")
        lines.append(freq.to_string())
        ign = self.pixels.loc["ignored"] / self.pixels.sum() * 100 if "ignored" in self.pixels.index else None
        if ign is not None:
            lines.append("ignored pixels (%): " + ", ".join(f"{k} {v:.2f}" for k, v in ign.items()))
        return "\n".join(lines)


def check_tree(root: str | Path, dataset: str = "cityscapes", splits=("train", "val"),
               progress: bool = False) -> TreeSummary:
    """Read every image and label of `splits` under `root`; raise `DataTreeError` on the first problem.

    `dataset` is ``cityscapes`` (also for the synthetic set) or ``camvid``.
    """
    cls, names = {"cityscapes": (CityscapesDataset, CITYSCAPES_CLASSES),
                  "synthetic": (CityscapesDataset, CITYSCAPES_CLASSES),
                  "camvid": (CamVidDataset, CAMVID_CLASSES)}[dataset]
    counts, sizes, pixels = {}, {}, {}
    for split in splits:
        ds = cls(root, split)
        hist = np.zeros(256, np.int64)
        sizes[split] = []
        for i in tqdm(range(len(ds)), desc=f"checking {split}", disable=not progress):
            img, lab = ds.load(i)
            sizes[split].append(lab.shape)
            hist += np.bincount(lab.reshape(-1), minlength=256)
        counts[split] = len(ds)
        col = {name: hist[k] for k, name in enumerate(names)}
        col["ignored"] = hist[IGNORE]
        pixels[split] = col
    return TreeSummary(Path(root), dataset, counts, sizes, pd.DataFrame(pixels))


__all__ = ["check_tree", "TreeSummary", "DataTreeError"]



def resolution_ceiling(labels: list[np.ndarray], factors=(8, 16, 32), num_classes: int = 19) -> pd.DataFrame:
    """Per-class IoU (percent) of the best prediction made at 1/factor resolution: the label map's
    majority class in each factor x factor block, up-sampled back (nearest) and scored against the
    full-resolution labels. Thin classes lose most. Index: classes present; columns ``1/<factor>``,
    plus a row ``mIoU``. Label maps must have H, W divisible by every factor.
    """
    out = {}
    for f in factors:
        cm = np.zeros((num_classes, num_classes), np.int64)
        for lab in labels:
            h, w = lab.shape
            blocks = lab.reshape(h // f, f, w // f, f).transpose(0, 2, 1, 3).reshape(h // f, w // f, f * f)
            onehot = np.zeros((h // f, w // f, 256), np.int32)
            np.add.at(onehot, (np.arange(h // f)[:, None, None], np.arange(w // f)[None, :, None], blocks), 1)
            onehot[..., IGNORE] = -1  # an ignored pixel never wins a block with labelled pixels
            coarse = onehot[..., :num_classes].argmax(-1)
            pred = np.repeat(np.repeat(coarse, f, 0), f, 1)
            cm += confusion_matrix(pred, lab, num_classes)
        s = SegScores.from_confusion(cm)
        out[f"1/{f}"] = np.append(s.iou * 100, s.miou * 100)
    df = pd.DataFrame(out, index=list(CITYSCAPES_CLASSES[:num_classes]) + ["mIoU"])
    return df.dropna(how="all")
