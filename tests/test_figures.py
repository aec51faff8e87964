"""Committed figures (figures/*.png and the PNGs in the executed notebooks) show data; the plot helpers
place labels without overlaps and carry a PNG beside interactive plotly output."""
import base64
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fasterseg.viz.style import PlotlyWithPNG, blank_reason  # noqa: E402
from fasterseg.viz.tradeoff_plots import place_labels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def committed_pngs():
    for f in sorted((ROOT / "figures").glob("*.png")):
        yield f.name, f.read_bytes()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            for o in cell.get("outputs", []):
                if "image/png" in o.get("data", {}):
                    yield f"{nb.name} cell {i}", base64.b64decode(o["data"]["image/png"])


def _png(fig) -> bytes:
    b = io.BytesIO()
    fig.savefig(b, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return b.getvalue()


def test_every_committed_figure_shows_data():
    pngs = list(committed_pngs())
    assert len(pngs) > 30
    bad = [f"{name}: {why}" for name, png in pngs if (why := blank_reason(png))]
    assert not bad, "\n".join(bad)


def test_blank_and_single_coloured_figures_are_caught():
    fig, ax = plt.subplots(figsize=(6.4, 3))
    ax.set(title="axes, labels and a grid, no data", xlabel="step", ylabel="ms")
    ax.grid(alpha=0.3)
    assert blank_reason(_png(fig)).startswith("blank")
    fig, ax = plt.subplots(figsize=(6.4, 3))
    im = ax.imshow(np.full((10, 20), 0.2), vmin=0, vmax=0.4)  # alpha 0.2 +- nothing on a 0-0.4 scale
    fig.colorbar(im)
    assert blank_reason(_png(fig)).startswith("single-coloured")
    fig, ax = plt.subplots(figsize=(6.4, 3))
    ax.plot([0, 1], [1, 1])
    assert blank_reason(_png(fig)) is not None
    fig, ax = plt.subplots(figsize=(6.4, 3))
    ax.imshow(np.random.default_rng(0).random((10, 20)))
    assert blank_reason(_png(fig)) is None


def test_labels_are_placed_without_overlaps():
    rng = np.random.default_rng(0)
    px, py = rng.uniform(0, 60, 12), rng.uniform(0, 40, 12)  # a crowded cluster
    widths = rng.uniform(30, 90, 12)
    offsets = place_labels(px, py, widths, 10)
    boxes = []
    for x, y, w, (dx, dy) in zip(px, py, widths, offsets):
        left = x + dx if dx > 0 else x + dx - w
        boxes.append((left, y + dy, left + w, y + dy + 10))
    overlaps = [(i, j) for i in range(12) for j in range(i) if boxes[i][0] < boxes[j][2] and boxes[j][0] < boxes[i][2]
                and boxes[i][1] < boxes[j][3] and boxes[j][1] < boxes[i][3]]
    assert len(overlaps) <= 2  # only when every candidate spot is taken


def test_plotly_output_carries_its_png():
    go = pytest.importorskip("plotly.graph_objects")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"title": "t"})
    bundle = PlotlyWithPNG(fig, png=b"\x89PNG fake")._repr_mimebundle_()
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [3, 4]
    assert base64.b64decode(bundle["image/png"]) == b"\x89PNG fake"
    assert bundle["text/plain"] == "<plotly figure: t>"
