"""`fasterseg predict`: a trained network applied to a folder of images.

For every image (``*.png``, ``*.jpg``, searched recursively) it writes ``<name>_overlay.png`` (the
prediction in Cityscapes colours blended over the image) and, with ``label_ids=True``,
``<name>*.png`` holding Cityscapes *label ids* (not train ids), the format the Cityscapes test server
expects (file names keep the ``_leftImg8bit`` part replaced by nothing, e.g. ``berlin_000000_000019.png``).
Images of any size are padded to multiples of 32 and the prediction cropped back.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def train_id_to_label_id() -> np.ndarray:
    """(256,) uint8: Cityscapes train id -> label id (255 -> 0, unlabeled)."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros(256, np.uint8)
    for lab in labels:
        if 0 <= lab.trainId < 255 and not lab.ignoreInEval:
            lut[lab.trainId] = lab.id
    return lut


def predict_folder(run: str | Path, images: str | Path, out: str | Path, label_ids: bool = False,
                   flip: bool = False, progress: bool = True) -> list[Path]:
    """Predict every image under `images` with the best weights of training run `run`; returns the files."""
    from tqdm.auto import tqdm

    from .data.transforms import normalize
    from .evaluate import load_trained, predict_logits
    from .viz.data_plots import overlay

    images, out = Path(images), Path(out)
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images (*.png, *.jpg) under {images}")
    model, spec = load_trained(run)
    to_label = train_id_to_label_id() if label_ids else None
    if label_ids and spec["num_classes"] != 19:
        raise ValueError(f"label-id output is for the 19 Cityscapes classes; this network has {spec['num_classes']}")
    written = []
    for f in tqdm(files, desc="predict", disable=not progress):
        img = np.asarray(Image.open(f).convert("RGB"))
        x = torch.from_numpy(normalize(img))
        with torch.no_grad():
            pred = predict_logits(model, x[None], flip).argmax(1)[0].numpy().astype(np.uint8)
        stem = f.stem.replace("_leftImg8bit", "")
        target = out / f.relative_to(images).parent
        target.mkdir(parents=True, exist_ok=True)
        p = target / f"{stem}_overlay.png"
        Image.fromarray(overlay(img, pred)).save(p)
        written.append(p)
        if to_label is not None:
            p = target / f"{stem}.png"
            Image.fromarray(to_label[pred]).save(p)
            written.append(p)
    return written
