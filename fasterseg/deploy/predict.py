"""`fasterseg predict`: a trained network applied to a folder of images.

Writes, under the output folder, keeping the input's sub-folders:

- ``overlays/<name>_overlay.png``: the prediction in the data set's colours blended over the image;
- with ``label_ids=True`` (Cityscapes classes only), ``label_ids/<name>.png`` holding Cityscapes *label ids*
  (not train ids), named ``<city>_<seq>_<frame>.png`` as the official evaluation
  (``cityscapesscripts``' ``evalPixelLevelSemanticLabeling``, ``CITYSCAPES_RESULTS=<out>/label_ids``) and the test
  server expect: one prediction per image, alone in its folder.

Images of any size and common mode are read as RGB (16-bit grey scaled), padded with black to multiples of 32
and the prediction cropped back, as the evaluation does; images smaller than the network accepts, and files that
cannot be read, are skipped and listed. Whether the image is also predicted mirrored follows ``eval.flip``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from fasterseg.data.cityscapes import DataTreeError, read_image
from fasterseg.data.labels import overlay, palette, train_id_to_label_id
from fasterseg.nets.build import load_network, predict_image
from fasterseg.runs import RunError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_SIDE = 64  # zoomed operators halve the 1/32 features once more: 64 pixels leave one


@dataclass
class Predictions:
    """What `predict_folder` wrote and what it skipped (file, reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    overlays: Path | None = None
    label_ids: Path | None = None


def output_name(image: Path) -> str:
    """``berlin_000000_000019_leftImg8bit.png`` -> ``berlin_000000_000019``: the stem the evaluation matches."""
    return image.stem.replace("_leftImg8bit", "")


def predict_folder(run: str | Path, images: str | Path, out: str | Path, label_ids: bool = False,
                   flip: bool = False, progress: bool = True, device: str | torch.device = "cpu") -> Predictions:
    """Predict every image under `images` (searched recursively) with the best weights of training run `run`, on
    `device`."""
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise RunError(f"--images {images}: {'is a file, not a folder' if images.exists() else 'does not exist'}")
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise RunError(f"no images (*.png, *.jpg) under {images}")
    model = load_network(run).to(device)
    n = model.spec["num_classes"]
    if label_ids and (n != 19 or model.dataset == "camvid"):
        raise RunError(f"--label-ids writes Cityscapes label ids; this network predicts {n} {model.dataset} classes")
    colours = palette(model.dataset, n)
    to_label = train_id_to_label_id() if label_ids else None
    res = Predictions(overlays=out / "overlays", label_ids=out / "label_ids" if label_ids else None)
    for f in tqdm(files, desc="predict", disable=not progress):
        try:
            img = read_image(f)
        except DataTreeError as e:
            res.skipped.append((f, str(e).split(": ", 1)[-1]))
            continue
        if min(img.shape[:2]) < MIN_SIDE:
            res.skipped.append((f, f"{img.shape[1]}x{img.shape[0]} pixels; images need at least {MIN_SIDE}x"
                                   f"{MIN_SIDE}"))
            continue
        pred = predict_image(model, img, flip)
        rel = f.relative_to(images).parent
        target = res.overlays / rel
        target.mkdir(parents=True, exist_ok=True)
        p = target / f"{output_name(f)}_overlay.png"
        Image.fromarray(overlay(img, pred, colours)).save(p)
        res.written.append(p)
        if to_label is not None:
            target = res.label_ids / rel
            target.mkdir(parents=True, exist_ok=True)
            p = target / f"{output_name(f)}.png"
            Image.fromarray(to_label[pred]).save(p)
            res.written.append(p)
    if not res.written:
        raise RunError(f"none of the {len(files)} images under {images} could be predicted: "
                       + "; ".join(f"{p.name}: {why}" for p, why in res.skipped[:5]))
    return res


def summary_lines(res: Predictions) -> list[str]:
    """The terminal lines of a `predict_folder` result."""
    lines = [f"{len(res.written)} files written: overlays in {res.overlays}"
             + (f", label ids in {res.label_ids} (CITYSCAPES_RESULTS for the official evaluation)"
                if res.label_ids else "")]
    if res.skipped:
        lines.append(f"skipped {len(res.skipped)} file(s):")
        lines += [f"  {p}: {why}" for p, why in res.skipped]
    return lines
