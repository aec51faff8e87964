"""Prepare a run's data explicitly, before any work: generate the synthetic street scenes (into a folder of their
own under ``data.root``, named by their content) or check that a real data set's root is where the config says."""
from __future__ import annotations

from pathlib import Path

from fasterseg.data.cityscapes import CamVidDataset, DataTreeError, find_cityscapes_samples
from fasterseg.data.synthetic import ensure, spec_of
from fasterseg.paths import resolve


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
