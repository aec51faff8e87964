"""Readers for data sets in the Cityscapes layout (the real one or our synthetic street scenes) and CamVid.

A reader meeting a broken tree fails with `DataTreeError`, naming the path and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from fasterseg.data.labels import CAMVID_VOID, CITYSCAPES_LABEL_IDS, IGNORE, label_id_to_train_id_lut
from fasterseg.data.synthetic import MARKER, spec_of, tree_path
from fasterseg.data.transforms import to_tensor_pair
from fasterseg.paths import resolve, where_relative_paths_resolve

IMG_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class DataTreeError(ValueError):
    """A data folder that cannot be read as the expected layout; the message says how to fix it."""


@dataclass(frozen=True)
class Sample:
    """One image/label pair on disk."""

    image: Path
    label: Path
    name: str


def read_image(path: Path) -> np.ndarray:
    """RGB image (H, W, 3) uint8 of any common mode: 8-bit grey, palette, RGBA (alpha dropped), CMYK converted;
    16-bit grey scaled to 8 bits (not clipped). Raises `DataTreeError` naming the file for an unreadable file or a
    mode that has no faithful 8-bit RGB form (32-bit integer or float pixels)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L"):
                a = np.asarray(im).astype(np.uint32)
                return np.repeat(((a * 255 + 32767) // 65535).astype(np.uint8)[..., None], 3, axis=2)
            if im.mode in ("I", "F"):
                raise DataTreeError(f"image {path} has {'32-bit integer' if im.mode == 'I' else 'float'} pixels "
                                    "(mode " + im.mode + "); save it as 8-bit RGB (or 16-bit grey) PNG or JPEG")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataTreeError(f"cannot read image {path}: {e}. Replace or delete the file.") from None


def read_label(path: Path) -> np.ndarray:
    """Single-channel label map (H, W) uint8; raises DataTreeError for an unreadable or colour file."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise DataTreeError(
                    f"label {path} has mode {im.mode}; expected a single-channel id map "
                    "(use the *_gtFine_labelIds.png files, not *_color.png)")
            return np.asarray(im).astype(np.uint8 if im.mode in ("L", "P") else np.int64)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataTreeError(f"cannot read label {path}: {e}. Replace or delete the file.") from None


class SegmentationDataset:
    """Image/label pairs -> (image float32 (3, H, W) normalised, train ids int64 (H, W)).

    `transform(image, label, rng)` (see `transforms.py`) receives a generator seeded from
    (seed, epoch, index), so the same epoch yields the same crops and flips on every run.
    """

    num_classes: int = 19

    def __init__(self, samples: list[Sample], transform: Callable | None = None, seed: int = 0):
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def to_train_ids(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and train ids (H, W) uint8 of sample i, validated."""
        s = self.samples[i]
        img = read_image(s.image)
        raw = read_label(s.label)
        if raw.shape != img.shape[:2]:
            raise DataTreeError(
                f"label {s.label} is {raw.shape[1]}x{raw.shape[0]} but its image {s.image} is "
                f"{img.shape[1]}x{img.shape[0]}; labels must match their image's size")
        return img, self.to_train_ids(raw, s.label)

    def __getitem__(self, i: int):
        img, lab = self.load(i)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            return self.transform(img, lab, rng)
        return to_tensor_pair(img, lab)


class CityscapesDataset(SegmentationDataset):
    """The Cityscapes layout: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` (label ids, mapped to train ids with
    cityscapesscripts' table; ignored classes become 255)."""

    _lut = label_id_to_train_id_lut()

    def __init__(self, root: str | Path, split: str = "train", transform=None, seed: int = 0):
        self.root = Path(root)
        self.split = split
        super().__init__(find_cityscapes_samples(self.root, split), transform, seed)

    def to_train_ids(self, raw: np.ndarray, path: Path) -> np.ndarray:
        bad = np.setdiff1d(np.unique(raw), sorted(CITYSCAPES_LABEL_IDS))
        if bad.size:
            raise DataTreeError(
                f"label {path} holds ids {bad.tolist()[:10]} outside the Cityscapes label ids (0..33); "
                "is it a *_gtFine_labelIds.png file? trainId files (*_labelTrainIds.png) and colour files "
                "must not be used as labelIds")
        return self._lut[raw.astype(np.uint8)]


def find_cityscapes_samples(root: Path, split: str) -> list[Sample]:
    """List the image/label pairs of one split, failing clearly on a broken tree."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataTreeError(f"data root {root} is a file; point data.root at the folder that holds leftImg8bit/ and "
                            "gtFine/")
    if not root.is_dir():
        raise DataTreeError(
            f"data root {root} does not exist: point data.root at a Cityscapes copy that holds leftImg8bit/ and "
            f"gtFine/, e.g. `fasterseg search --profile paper data.root=/path/to/cityscapes` "
            f"({where_relative_paths_resolve()})")
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for d, what in ((img_dir, "images"), (gt_dir, "labels")):
        if not d.is_dir():
            raise DataTreeError(
                f"missing folder {d} ({what} of split '{split}'). A Cityscapes tree holds "
                f"leftImg8bit/{split}/<city>/ and gtFine/{split}/<city>/; unpack leftImg8bit_trainvaltest.zip "
                "and gtFine_trainvaltest.zip into the same root")
    images = sorted(img_dir.glob(f"*/*{IMG_SUFFIX}"))
    if not images:
        raise DataTreeError(f"no *{IMG_SUFFIX} files under {img_dir}/<city>/; check the root and split")
    samples = []
    for img in images:
        stem = img.name[: -len(IMG_SUFFIX)]
        lab = gt_dir / img.parent.name / f"{stem}{LABEL_SUFFIX}"
        if not lab.exists():
            raise DataTreeError(
                f"image {img} has no label: expected {lab}. Add the gtFine file or remove the image")
        samples.append(Sample(img, lab, stem))
    return samples


class CamVidDataset(SegmentationDataset):
    """CamVid, the common 11-class layout: ``<split>/*.png`` with ``<split>annot/*.png``
    (class indices 0..10, 11 = void -> 255)."""

    num_classes = 11

    def __init__(self, root: str | Path, split: str = "train", transform=None, seed: int = 0):
        self.root = Path(root)
        self.split = split
        img_dir, gt_dir = self.root / split, self.root / f"{split}annot"
        if self.root.exists() and not self.root.is_dir():
            raise DataTreeError(f"data root {self.root} is a file; point data.root at the CamVid folder")
        if not self.root.is_dir():
            raise DataTreeError(f"data root {self.root} does not exist: point data.root at a CamVid copy, e.g. "
                                "data.dataset=camvid data.num_classes=11 data.root=/path/to/CamVid")
        for d in (img_dir, gt_dir):
            if not d.is_dir():
                raise DataTreeError(
                    f"missing folder {d}. The CamVid layout holds <split>/ images and <split>annot/ labels "
                    "(train, val, test)")
        images = sorted(img_dir.glob("*.png"))
        if not images:
            raise DataTreeError(f"no .png images in {img_dir}")
        samples = []
        for img in images:
            lab = gt_dir / img.name
            if not lab.exists():
                raise DataTreeError(f"image {img} has no label: expected {lab}")
            samples.append(Sample(img, lab, img.stem))
        super().__init__(samples, transform, seed)

    def to_train_ids(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.max(initial=0) > CAMVID_VOID:
            bad = np.unique(raw[raw > CAMVID_VOID]).tolist()[:10]
            raise DataTreeError(f"label {path} holds ids {bad} outside CamVid's 0..11 (11 = void)")
        out = raw.astype(np.uint8)
        out[out == CAMVID_VOID] = IGNORE
        return out


def dataset_root(cfg) -> Path:
    """Where a `DataConfig`'s images are: ``data.root`` for a real data set; for ``synthetic``, the spec's tree under
    it (`synthetic.tree_path`)."""
    root = resolve(cfg.root)
    if cfg.dataset == "synthetic":
        return tree_path(root, spec_of(cfg))
    return root


def build_dataset(cfg, split: str, transform=None):
    """The dataset named by a `DataConfig` (synthetic/cityscapes -> Cityscapes reader, camvid). Reading
    never generates anything: prepare the synthetic set first with `fasterseg.data.prepare.prepare_data`."""
    root = dataset_root(cfg)
    if cfg.dataset in ("synthetic", "cityscapes"):
        if cfg.dataset == "synthetic" and not (root / MARKER).exists():
            raise DataTreeError(f"no synthetic data set at {root}: prepare it first with `fasterseg data generate` "
                                "(or `fasterseg.data.prepare.prepare_data(cfg.data)` in Python)")
        return CityscapesDataset(root, split, transform, cfg.seed)
    if cfg.dataset == "camvid":
        return CamVidDataset(root, split, transform, cfg.seed)
    raise ValueError(f"unknown data set {cfg.dataset!r}; choose synthetic, cityscapes or camvid")
