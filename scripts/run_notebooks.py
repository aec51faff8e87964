"""Execute notebooks in place (tiny profile) and strip volatile metadata, so they are committed executed.

    .venv/bin/python scripts/run_notebooks.py                 # all notebooks/NN_*.ipynb
    .venv/bin/python scripts/run_notebooks.py notebooks/00_data_tour.ipynb

Prints each notebook's run time (the contract: about a minute each in the tiny profile).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):  # stable ids (nbformat >= 4.5 requires them)
        cell.setdefault("id", f"cell-{i:02d}")
    os.environ["FASTERSEG_PROFILE"] = "tiny"
    t = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    dt = time.perf_counter() - t
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):  # warnings name library files: keep them relative to the checkout
            if out.get("output_type") == "stream":
                out["text"] = out["text"].replace(f"{ROOT}/", "")
    nb.metadata.pop("widgets", None) if not any("widget" in str(c.get("outputs", "")) for c in nb.cells) else None
    nbformat.write(nb, path)
    return dt


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for p in paths:
        print(f"{p.name}: {run(p):.1f} s", flush=True)
