"""Published architectures, as JSON (no pickles): the FasterSeg teacher and student.

Made once by ``fasterseg arch import`` from the original release's ``arch_0.pt`` / ``arch_1.pt``;
each file stores its parameter and MAC counts at 1x3x1024x2048 (``source.counts``), which a test
checks against a fresh build.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path

import torch

from fasterseg.nets.arch import Architecture, ArchitectureError
from fasterseg.paths import resolve as resolve_path

HERE = Path(__file__).parent


def names() -> list[str]:
    """Names of the architectures shipped with the kit."""
    return sorted(p.stem for p in HERE.glob("*.json"))


def path(name: str) -> Path:
    p = HERE / f"{name}.json"
    if not p.exists():
        raise ArchitectureError(f"no published architecture {name!r}; available: {', '.join(names())}")
    return p


def load(name: str) -> Architecture:
    """A shipped architecture by name (e.g. ``fasterseg_student``)."""
    return Architecture.load(path(name))


def load_params(name: str) -> dict:
    """Architecture logits of a published network (``alpha_s``, ``beta_s``, ``gamma_s`` as tensors),
    converted once from the original release; with its ``layers``, ``fch`` and stored scores."""
    p = HERE / "params" / f"{name}.json"
    if not p.exists():
        raise ValueError(f"no published parameters for {name!r}; run `fasterseg arch import`")
    d = json.loads(p.read_text())
    d["logits"] = {k: torch.tensor(v) for k, v in d["logits"].items()}
    return d


def resolve(name_or_path: str | Path) -> Architecture:
    """A shipped architecture by name, or an architecture JSON file by path (relative paths resolve
    against the project root). Raises `ArchitectureError` with a one-line message otherwise: a missing
    file, a folder, or a misspelt name (listing the published names and the closest one)."""
    text = str(name_or_path)
    if text in names():
        return load(text)
    p = Path(text) if Path(text).exists() else resolve_path(text)
    if p.is_dir():
        raise ArchitectureError(f"{text} is a folder; give an architecture JSON file (e.g. a run's "
                                f"archs/student_search_epochNN.json) or a published name: {', '.join(names())}")
    if not p.exists():
        close = difflib.get_close_matches(text, names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ArchitectureError(f"no architecture file {text} and no published architecture of that name "
                                f"(published: {', '.join(names())}).{hint}")
    return Architecture.load(p)
