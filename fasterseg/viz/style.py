"""One place for figure output: byte-stable PNG/SVG files."""
from __future__ import annotations

import base64
import io
import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

plt.rcParams["svg.hashsalt"] = "fasterseg"


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (.png or .svg) without timestamps, so a rerun gives the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Date": None} if path.suffix == ".svg" else {"Software": None}
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=meta)
    return path


def plotly_png(fig, scale: float = 1.0) -> bytes | None:
    """A PNG of a plotly figure (kaleido, which drives a local Chromium; about 2-3 s per call), or None with a
    warning naming the fix when no browser can render it."""
    try:
        return fig.to_image(format="png", scale=scale)
    except Exception as e:  # kaleido missing, or no Chromium: the interactive figure still shows
        warnings.warn(f"no static PNG for this plotly figure ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                      "install Chromium (scripts/setup_browser.sh) for notebook viewers without JavaScript",
                      stacklevel=2)
        return None


class PlotlyWithPNG:
    """A plotly figure displayed with a PNG of itself in the same output: JupyterLab shows the interactive
    figure, viewers without JavaScript (GitHub, nbviewer, a static HTML export) show the PNG.
    `fig`: the plotly figure (kept as ``.fig``); `png`: PNG bytes (None: rendered now with `plotly_png`)."""

    def __init__(self, fig, png: bytes | None = None):
        self.fig = fig
        self.png = png if png is not None else plotly_png(fig)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"application/vnd.plotly.v1+json": json.loads(self.fig.to_json()),
                  "text/plain": f"<plotly figure: {self.fig.layout.title.text or 'untitled'}>"}
        if self.png:
            bundle["image/png"] = base64.b64encode(self.png).decode()
        return bundle


def blank_reason(png: bytes) -> str | None:
    """Why a rendered figure shows no data, or None. Data in the kit's plots is drawn in colour (lines,
    markers, heat-maps, graph nodes) and axes, text and grids in grey, so a figure is blank when under 0.3 % of
    its pixels are coloured (chroma > 40 of 255), and single-coloured when one colour (in steps of 16 per
    channel) covers over 90 % of them or fewer than 3 colours occur."""
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    coloured = a[(a.max(1) - a.min(1)) > 40] // 16
    if len(coloured) < 0.003 * len(a):
        return f"blank: only {100 * len(coloured) / len(a):.2f} % of the pixels are coloured"
    colours, counts = np.unique(coloured, axis=0, return_counts=True)
    if counts.max() > 0.9 * len(coloured) or len(colours) < 3:
        return f"single-coloured: one colour is {100 * counts.max() / len(coloured):.0f} % of the coloured pixels"
    return None
