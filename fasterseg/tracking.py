"""Experiment tracking: TensorBoard event files beside a run's CSV histories, and what a run records about where
it ran.

`Tracker` writes ``<run>/tensorboard/`` (``tensorboard --logdir runs/``): scalars per step and per epoch,
histograms (the architecture parameters' probabilities) and images (prediction overlays). It is on by default and
off with ``runtime.tensorboard=false``; only the process that writes the run's records (rank 0) writes events. A
resumed run purges the events after its checkpoint's step, so TensorBoard shows one history, as the CSVs do. The
CSV histories stay the record of truth; the events are for looking.

`provenance` is what ``run.json`` records at every start: the git commit of the kit (and whether its tree was
dirty), the command line, package versions, the CPU (model, vector extensions, PyTorch's kernels) and the GPU.

tensorboard is imported when a `Tracker` opens (about 1.5 s), not by ``import fasterseg``.
"""
from __future__ import annotations

import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from fasterseg.paths import project_root
from fasterseg.timing import cpu_record

PACKAGES = ("torch", "numpy", "onnxruntime", "onnx", "pandas", "pillow", "cityscapesscripts", "tensorboard")


class Tracker:
    """TensorBoard events of one run (a no-op when disabled, on ranks other than 0, or without tensorboard)."""

    def __init__(self, run: str | Path, enabled: bool = True, purge_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - tensorboard is a dependency of the kit
            warnings.warn(f"no TensorBoard events: {e}; install tensorboard or set runtime.tensorboard=false",
                          stacklevel=2)
            return
        self.writer = SummaryWriter(str(Path(run) / "tensorboard"), purge_step=purge_step or None)

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        """Every finite number of `values` as ``<prefix>/<name>`` at `step`."""
        if self.writer is None:
            return
        for k, v in values.items():
            if k in ("step", "epoch"):
                continue  # the x axis, not a measurement
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and np.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def histogram(self, name: str, values, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(name, np.asarray(values, dtype=np.float64), step)

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        """An RGB image (H, W, 3) uint8."""
        if self.writer is not None:
            self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def git_state(root: Path | None = None) -> dict:
    """``{"commit": sha, "dirty": bool}`` of the kit's checkout, or ``{"commit": None}`` outside a git tree."""
    root = root or project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return {"commit": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def provenance(device: torch.device | None = None) -> dict:
    """Where and from what a run ran (module docstring)."""
    rec = {"git": git_state(), "command": sys.argv, "python": sys.version.split()[0],
           "packages": package_versions(), "cpu": cpu_record()}
    if device is not None and device.type == "cuda":
        rec["gpu"] = {"name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                      "capability": list(torch.cuda.get_device_capability(device))}
    return rec
