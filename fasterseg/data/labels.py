"""Cityscapes label table (from ``cityscapesscripts``) and CamVid's common 11-class table.

Label files store Cityscapes *label ids* (0..33); training uses *train ids* (0..18, 255 = ignore).
"""
from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

IGNORE = 255

#: the 19 evaluated Cityscapes classes, in train-id order
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in sorted((l for l in _CS_LABELS if 0 <= l.trainId < 255), key=lambda l: l.trainId)
)
#: RGB colour per train id, shape (19, 3), uint8
CITYSCAPES_PALETTE = np.array(
    [next(l.color for l in _CS_LABELS if l.trainId == t) for t in range(len(CITYSCAPES_CLASSES))], np.uint8
)
#: label ids that may legally appear in a ``*_gtFine_labelIds.png`` file
CITYSCAPES_LABEL_IDS: frozenset[int] = frozenset(l.id for l in _CS_LABELS if l.id >= 0)
#: label id -> name, for readable messages and the synthetic generator
LABEL_ID = {l.name: l.id for l in _CS_LABELS if l.id >= 0}


def label_id_to_train_id_lut() -> np.ndarray:
    """A 256-entry lookup table from Cityscapes label id to train id (255 for ignored/unknown)."""
    lut = np.full(256, IGNORE, np.uint8)
    for lab in _CS_LABELS:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    return lut


def label_id_colors() -> np.ndarray:
    """RGB colour per label id (256, 3), as in Cityscapes' ``*_gtFine_color.png`` files."""
    pal = np.zeros((256, 3), np.uint8)
    for lab in _CS_LABELS:
        if lab.id >= 0:
            pal[lab.id] = lab.color
    return pal


def colorize(train_ids: np.ndarray, palette: np.ndarray = CITYSCAPES_PALETTE) -> np.ndarray:
    """Train-id map (H, W) -> RGB image (H, W, 3) uint8; ignored pixels are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = palette
    return lut[np.asarray(train_ids, np.uint8)]


def overlay(img: np.ndarray, train_ids: np.ndarray, palette: np.ndarray = CITYSCAPES_PALETTE,
            alpha: float = 0.5) -> np.ndarray:
    """The colour labels (H, W) blended over the RGB image (H, W, 3) uint8; ignored pixels left as the image."""
    col = colorize(train_ids, palette).astype(np.float32)
    out = img.astype(np.float32)
    m = (np.asarray(train_ids) != IGNORE)[..., None]
    return np.where(m, (1 - alpha) * out + alpha * col, out).astype(np.uint8)


def train_id_to_label_id() -> np.ndarray:
    """(256,) uint8: Cityscapes train id -> label id (255 -> 0, unlabeled), for the official evaluation."""
    lut = np.zeros(256, np.uint8)
    for lab in _CS_LABELS:
        if 0 <= lab.trainId < 255 and not lab.ignoreInEval:
            lut[lab.trainId] = lab.id
    return lut


# CamVid, the common 11-class version (SegNet layout): 0..10 classes, 11 = void.
CAMVID_CLASSES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
    "pedestrian", "bicyclist",
)
CAMVID_PALETTE = np.array(
    [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
     [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]], np.uint8
)
CAMVID_VOID = 11


def class_names(dataset: str, num_classes: int) -> tuple[str, ...]:
    """The class names of a data set (``cityscapes``/``synthetic``: Cityscapes' 19, ``camvid``: CamVid's 11); other
    class counts are numbered."""
    names = CAMVID_CLASSES if dataset == "camvid" else CITYSCAPES_CLASSES
    return names if len(names) == num_classes else tuple(str(i) for i in range(num_classes))


def palette(dataset: str, num_classes: int) -> np.ndarray:
    """RGB colour per train id (num_classes, 3) uint8 of a data set (as `class_names`; others get a fixed spread
    of colours)."""
    pal = CAMVID_PALETTE if dataset == "camvid" else CITYSCAPES_PALETTE
    if len(pal) == num_classes:
        return pal
    rng = np.random.default_rng(0)
    return rng.integers(40, 256, (num_classes, 3)).astype(np.uint8)
