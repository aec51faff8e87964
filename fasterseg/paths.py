"""Resolve the kit's relative paths (``data/...``, ``runs/...``, ``figures/``) against the project root,
so the CLI, the notebooks (which run in ``notebooks/``) and the tests see the same files."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def _root_from(start: str) -> Path:
    for d in (Path(start), *Path(start).parents):
        if _is_kit(d):
            return d
    return Path(start)


def _is_kit(d: Path) -> bool:
    return (d / "pyproject.toml").exists() and (d / "fasterseg").is_dir()


def project_root() -> Path:
    """Where relative paths point: ``$FASTERSEG_HOME``; else the nearest folder above the working directory
    holding the kit; else the checkout this package was imported from; else the working directory."""
    env = os.environ.get("FASTERSEG_HOME")
    if env:
        return Path(env).expanduser()
    here = _root_from(os.getcwd())
    if _is_kit(here):
        return here
    checkout = Path(__file__).resolve().parents[1]
    return checkout if _is_kit(checkout) else here


def resolve(path: str | Path) -> Path:
    """Absolute paths as they are; relative ones against `project_root()`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def where_relative_paths_resolve() -> str:
    """One phrase for error messages about a relative path."""
    how = "$FASTERSEG_HOME" if os.environ.get("FASTERSEG_HOME") else "the project root"
    return f"relative paths resolve against {how}, {project_root()}"


def check_writable(folder: str | Path, option: str = "--out") -> None:
    """Raise `OSError` with a one-line message when `folder` (or the nearest existing parent) cannot be
    written; creates nothing."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        raise OSError(f"{option} {folder}: {p} is a file, not a folder; choose another {option}")
    if not os.access(p, os.W_OK | os.X_OK):
        raise OSError(f"{option} {folder}: {p} is not writable; choose another {option}")


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


def file_digest(*paths: str | Path) -> str:
    """sha256 of the files' bytes, in order (a latency table and its sidecar, an architecture, a data marker)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()
