"""Training and evaluation transforms (numpy/PIL; seeded by the generator the dataset passes in).

Images are normalised with ImageNet statistics; labels stay train ids (255 = ignore).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fasterseg.data.labels import IGNORE

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W), ImageNet mean/std."""
    x = (img.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def to_tensor_pair(img: np.ndarray, lab: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised image tensor (3, H, W), label tensor int64 (H, W))."""
    return torch.from_numpy(normalize(img)), torch.from_numpy(lab.astype(np.int64))


def resize_pair(img: np.ndarray, lab: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear for the image, nearest for the label."""
    im = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    lb = np.asarray(Image.fromarray(lab).resize((w, h), Image.NEAREST))
    return im, lb


def pad_to_multiple(img: np.ndarray, lab: np.ndarray | None = None, multiple: int = 32):
    """Pad bottom/right so H and W are multiples of `multiple` (the network's output stride).

    Image padding is zeros, label padding is 255 (ignored). Returns (img, lab, (pad_h, pad_w)).
    """
    h, w = img.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        if lab is not None:
            lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE)
    return img, lab, (ph, pw)


@dataclass
class TrainTransform:
    """Down-sample, random scale (scale_min..scale_max), random crop (padding with ignore), flip."""

    crop_height: int
    crop_width: int
    scale_min: float = 0.75
    scale_max: float = 1.25
    downsample: int = 1  # the search phase down-samples images x2 before cropping
    flip: bool = True

    def __call__(self, img: np.ndarray, lab: np.ndarray, rng: np.random.Generator):
        h, w = lab.shape
        s = rng.uniform(self.scale_min, self.scale_max) / self.downsample
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        img, lab = resize_pair(img, lab, nh, nw)
        ch, cw = self.crop_height, self.crop_width
        ph, pw = max(0, ch - nh), max(0, cw - nw)
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE)
        y = int(rng.integers(0, lab.shape[0] - ch + 1))
        x = int(rng.integers(0, lab.shape[1] - cw + 1))
        img, lab = img[y:y + ch, x:x + cw], lab[y:y + ch, x:x + cw]
        if self.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        return to_tensor_pair(np.ascontiguousarray(img), np.ascontiguousarray(lab))


@dataclass
class EvalTransform:
    """Optional down-sampling, then padding to a multiple of 32; labels kept at the same size."""

    downsample: int = 1

    def __call__(self, img: np.ndarray, lab: np.ndarray, rng: np.random.Generator | None = None):
        if self.downsample != 1:
            h, w = lab.shape
            img, lab = resize_pair(img, lab, h // self.downsample, w // self.downsample)
        img, lab, _ = pad_to_multiple(img, lab)
        return to_tensor_pair(img, lab)
