"""The official Cityscapes pixel-level evaluation (``cityscapesscripts``) on a folder of label-id predictions.

`official_scores` runs ``evalPixelLevelSemanticLabeling`` as its ``main()`` does — every ``gtFine/val`` label
file of `dataset_root` matched to one prediction under `results` by its ``<city>_<seq>_<frame>`` stem — with
instance-level scores on by default (they need ``*_gtFine_instanceIds.png``, which the synthetic layout has).
``fasterseg predict --label-ids`` writes such a folder (``<out>/label_ids``).

cityscapesscripts 2.3.0 (the latest release) still calls ``np.in1d``, which NumPy 2.4 removed; while the
evaluation runs, ``np.in1d`` is NumPy's replacement ``np.isin`` (same results). The evaluator's module reads its
settings at import, so it is imported here with ``CITYSCAPES_DATASET`` set, in a fresh module state.
"""
from __future__ import annotations

import contextlib
import glob
import importlib
import io
import os
import sys
from pathlib import Path

import numpy as np

MODULE = "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling"


@contextlib.contextmanager
def _numpy_in1d():
    had = hasattr(np, "in1d")
    if not had:
        np.in1d = np.isin
    try:
        yield
    finally:
        if not had:
            del np.in1d


def official_scores(dataset_root: str | Path, results: str | Path, instances: bool = True,
                    split: str = "val") -> dict:
    """The evaluator's result dictionary (``averageScoreClasses`` = class mIoU, ``averageScoreInstClasses``,
    ``classScores``, ...) for the label-id PNGs under `results` against `dataset_root`'s ``gtFine/<split>``."""
    old = os.environ.get("CITYSCAPES_DATASET")
    os.environ["CITYSCAPES_DATASET"] = str(dataset_root)
    try:
        sys.modules.pop(MODULE, None)
        ev = importlib.import_module(MODULE)
    finally:
        if old is None:
            os.environ.pop("CITYSCAPES_DATASET")
        else:
            os.environ["CITYSCAPES_DATASET"] = old
    args = ev.args
    args.predictionPath, args.predictionWalk = str(results), None
    args.evalInstLevelScore, args.JSONOutput, args.quiet = instances, False, True
    gts = sorted(glob.glob(os.path.join(str(dataset_root), "gtFine", split, "*", "*_gtFine_labelIds.png")))
    if not gts:
        raise FileNotFoundError(f"no gtFine/{split}/*/*_gtFine_labelIds.png under {dataset_root}")
    with _numpy_in1d(), contextlib.redirect_stdout(io.StringIO()):
        preds = [ev.getPrediction(args, gt) for gt in gts]
        return ev.evaluateImgLists(preds, gts, args)
