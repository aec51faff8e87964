"""Resolve the kit's relative paths (``data/...``, ``runs/...``, ``figures/``) against the project root,
so the CLI, the notebooks (which run in ``notebooks/``) and the tests see the same files."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def _root_from(start: str) -> Path:
    for d in (Path(start), *Path(start).parents):
        if (d / "pyproject.toml").exists() and (d / "fasterseg").is_dir():
            return d
    return Path(start)


def project_root() -> Path:
    """``$FASTERSEG_HOME``, else the nearest folder above the cwd holding the kit, else the cwd."""
    env = os.environ.get("FASTERSEG_HOME")
    return Path(env) if env else _root_from(os.getcwd())


def resolve(path: str | Path) -> Path:
    """Absolute paths as they are; relative ones against `project_root()`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (plus a final newline) to `path`, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
    return path


def display_path(path: str | Path) -> str:
    """`path` relative to the project root when inside it (for messages that must not depend on where
    the kit is checked out), else as it is."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(project_root().resolve()))
    except ValueError:
        return str(p)
