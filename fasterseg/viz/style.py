"""One place for figure output: byte-stable PNG/SVG files."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

plt.rcParams["svg.hashsalt"] = "fasterseg"


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (.png or .svg) without timestamps, so a rerun gives the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Date": None} if path.suffix == ".svg" else {"Software": None}
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=meta)
    return path
