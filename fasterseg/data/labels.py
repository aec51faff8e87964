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
