"""The kit's public API: the few names a notebook or a script needs, re-exported by ``import fasterseg as fs``.

From a trained run to a class map::

    import fasterseg as fs
    net = fs.load_network("runs/pipeline-tiny/train-student")   # a run folder, an architecture or a published name
    classes = fs.predict(net, "street.png")                      # (H, W) train ids

A run from Python, as the command line does it::

    cfg = fs.profile("tiny")                                     # or fs.load_config("my.yaml", overrides=[...])
    search = fs.search(cfg, "runs/my-search")
    student = fs.train(cfg, search / "archs" / "...json", "runs/my-student", teacher="runs/my-teacher")
    metrics = fs.evaluate(cfg, student)
    summary = fs.export(cfg, student)

Each function validates the whole config first and raises one-line errors (`ConfigError`, `RunError`, ...).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fasterseg import pipeline
from fasterseg.config import RunConfig, load_config, profile
from fasterseg.data.cityscapes import read_image
from fasterseg.deploy.export import export_run
from fasterseg.evaluation.run import evaluate_run
from fasterseg.nas.run import run_search
from fasterseg.nets.arch import Architecture
from fasterseg.nets.build import load_network, predict_image
from fasterseg.pipeline import PipelineResult
from fasterseg.runs import load_history
from fasterseg.training.trainer import run_train

__all__ = ["Architecture", "RunConfig", "evaluate", "export", "load_config", "load_history", "load_network",
           "predict", "profile", "run_pipeline", "search", "train"]


def predict(network: torch.nn.Module, image: str | Path | np.ndarray | Image.Image, flip: bool = False) -> np.ndarray:
    """Class map (H, W) uint8 (train ids; 255 never) of one image of any size: a file (any common mode, 16-bit grey
    scaled), an RGB array (H, W, 3) uint8 or a PIL image. `network` from `load_network`."""
    if isinstance(image, (str, Path)):
        img = read_image(Path(image))
    elif isinstance(image, Image.Image):
        img = np.asarray(image.convert("RGB"))
    else:
        img = np.asarray(image)
    return predict_image(network, img, flip)


def search(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
           max_steps: int | None = None) -> Path:
    """Pretrain and co-search a teacher and a student into the run folder `out` (`fasterseg search`)."""
    return run_search(cfg, out, resume=resume, progress=progress, max_steps=max_steps)


def train(cfg: RunConfig, model: str | Path, out: str | Path, teacher: str | Path | None = None,
          resume: bool = False, progress: bool = True, max_steps: int | None = None) -> Path:
    """Train `model` (an architecture JSON file, a published name or ``peer:NAME``) from scratch into `out`,
    distilled from the finished training run `teacher` when given (`fasterseg train`)."""
    return run_train(cfg, model, out, resume=resume, teacher=teacher, progress=progress, max_steps=max_steps)


def evaluate(cfg: RunConfig, run: str | Path, which: str = "best", progress: bool = True) -> dict:
    """Evaluate a finished training run on the validation split; writes ``<run>/eval/`` (`fasterseg evaluate`)."""
    return evaluate_run(cfg, run, which=which, progress=progress)


def export(cfg: RunConfig, run: str | Path, out: str | Path | None = None, which: str = "best") -> dict:
    """The deployed form of a training run as ONNX, checked against PyTorch (`fasterseg export`)."""
    return export_run(run, cfg, out, which)


def run_pipeline(cfg: RunConfig, out: str | Path, progress: bool = True) -> PipelineResult:
    """The main job: data, latency table, search, training, distillation, evaluation, export, report."""
    return pipeline.run_pipeline(cfg, out, progress=progress)
