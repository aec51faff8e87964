"""Prepare a run's data explicitly, before any work: generate the synthetic street scenes (into a folder of their
own under ``data.root``, named by their content) or check that a real data set's root is where the config says."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fasterseg.data.cityscapes import CamVidDataset, DataTreeError, build_dataset, dataset_root, find_cityscapes_samples
from fasterseg.data.synthetic import MARKER, ensure, spec_of
from fasterseg.paths import file_digest, resolve


def prepare_data(cfg, progress: bool = True, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Make the data of a `DataConfig` ready to read; returns its root.

    ``synthetic``: generated on first use (a few seconds in the tiny profile) into ``<data.root>/<tree name>`` (the
    spec's content: size, counts, seed, generator version) and reused, never rewritten, afterwards;
    ``cityscapes``/``camvid``: the tree is listed (not read) so a wrong root fails here, with the fix.
    Raises `DataTreeError` (or `synthetic.ForeignDataError`) with a one-line message.
    """
    root = resolve(cfg.root)
    if cfg.dataset == "synthetic":
        return ensure(root, spec_of(cfg), progress=progress)
    if cfg.dataset == "cityscapes":
        for split in splits:
            find_cityscapes_samples(root, split)
        return root
    if cfg.dataset == "camvid":
        for split in splits:
            CamVidDataset(root, split)
        return root
    raise DataTreeError(f"unknown data set {cfg.dataset!r}; choose synthetic, cityscapes or camvid")


def data_digest(cfg) -> str:
    """A digest of the data a `DataConfig` names, recorded by a run and compared when it resumes: the synthetic
    tree's marker (its spec and every file's hash), or a real tree's listing (each image and label file's path and
    size): an image removed or replaced is noticed without reading every pixel."""
    root = dataset_root(cfg)
    if cfg.dataset == "synthetic":
        return file_digest(root / MARKER)
    h = hashlib.sha256()
    for split in ("train", "val"):
        try:
            ds = build_dataset(cfg, split)
        except DataTreeError:
            continue
        for smp in ds.samples:
            for f in (smp.image, smp.label):
                h.update(f"{f.relative_to(root)}:{f.stat().st_size}\n".encode())
    return h.hexdigest()


def label_warning(cfg, images: int = 32) -> str | None:
    """A warning when the first `images` training label maps hold no labelled pixel (every pixel ignored: training
    learns nothing, mIoU is undefined) or a single class (the mIoU says little); None otherwise."""
    ds = build_dataset(cfg, "train")
    counts = np.zeros(256, np.int64)
    n = min(images, len(ds))
    for i in range(n):
        counts += np.bincount(ds.load(i)[1].ravel(), minlength=256)
    present = [c for c in np.flatnonzero(counts[:cfg.num_classes])]
    if not present:
        return (f"every pixel of the first {n} training label maps under {dataset_root(cfg)} is ignored (255): "
                "training would learn nothing and the mIoU is undefined; check the labels (label ids, not colours)")
    if len(present) == 1:
        return (f"the first {n} training label maps under {dataset_root(cfg)} hold a single class ({present[0]}): "
                "the network can only learn to predict it")
    return None
