"""Distillation: the teacher's per-pixel class distribution taught to the student (docs/method.md §9).

    L_kd = weight * T^2 * KL( softmax(z_T / T) || softmax(z_S / T) )

on the final logits at crop resolution. Reduction (`distill.reduction`):

- ``element`` (default, the original's): the mean over every element N*C*H*W of the point-wise KL terms,
  as PyTorch's ``KLDivLoss()`` with its default reduction does in the original code. It equals the
  per-pixel KL divided by the number of classes C, so at weight 1 the term is 1/C of a per-pixel KL.
- ``pixel``: the KL summed over classes and averaged over pixels (the textbook per-pixel KL); use
  ``distill.weight`` ~ 1/C to match the original's magnitude.

The teacher (`Teacher`) is a finished training run: its architecture and best weights are loaded, it is
frozen, in eval mode and run under ``no_grad``; a teacher that does not fit the student's run is refused
with a message naming both files.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fasterseg.nets.build import build_model, model_weights_path
from fasterseg.runs import RunError, read_info

REDUCTIONS = ("element", "pixel")


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
            reduction: str = "element") -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) for logits (N, C, H, W) of equal shape (the
    teacher's are detached). Zero when they are equal; its gradient reaches the student only."""
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
    t = temperature
    log_s = F.log_softmax(student.float() / t, 1)
    log_t = F.log_softmax(teacher.detach().float() / t, 1)
    kl = log_t.exp() * (log_t - log_s)
    if reduction == "element":
        out = kl.mean()
    elif reduction == "pixel":
        out = kl.sum(1).mean()
    else:
        raise ValueError(f"distill.reduction={reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    return out * t * t


class TeacherError(RunError):
    """A teacher run that cannot teach this student; the message names both files."""


class Teacher:
    """A frozen teacher network loaded from a finished training run (`path`), its best weights."""

    def __init__(self, path: str | Path, num_classes: int, data_cfg, student_model: str | None = None,
                 device: torch.device | str = "cpu"):
        self.path = Path(path)
        info = read_info(self.path)
        if info is None or info.get("kind") != "train":
            raise TeacherError(f"teacher run {self.path} holds no training run (no run.json of kind train); train "
                               "the teacher first: fasterseg train --model <teacher arch> --out <folder>")
        if info.get("status") != "done":
            raise TeacherError(f"teacher run {self.path} is unfinished (status {info.get('status')}); finish it with "
                               f"fasterseg train --resume --out {self.path}")
        model_file = self.path / "model.json"
        spec = json.loads(model_file.read_text())
        other = f" (student: {student_model})" if student_model else ""
        if spec.get("num_classes") != num_classes:
            raise TeacherError(f"teacher {model_file} predicts {spec.get('num_classes')} classes, the student "
                               f"{num_classes}{other}")
        stored = json.loads((self.path / "config.json").read_text()).get("data", {})
        for k in ("dataset", "image_height", "image_width", "num_classes"):
            if k in stored and stored[k] != getattr(data_cfg, k):
                raise TeacherError(f"teacher {self.path / 'config.json'} was trained on data.{k}={stored[k]!r}, the "
                                   f"student uses {getattr(data_cfg, k)!r}{other}")
        self.model = build_model(spec, num_classes)
        weights = model_weights_path(self.path)
        try:
            self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError) as e:
            raise TeacherError(f"teacher weights {weights} do not fit its architecture {model_file}: "
                               f"{str(e).splitlines()[0]}") from None
        self.model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.spec, self.run_id = spec, info["id"]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's final logits (N, C, H, W) at the input's size."""
        return self.model(x)
