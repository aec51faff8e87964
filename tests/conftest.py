from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    """A small synthetic tree (8 train + 4 val images, 64x128), generated once per session."""
    from fasterseg.data.synthetic import SyntheticSpec, generate

    root = tmp_path_factory.mktemp("synthetic")
    return generate(root, SyntheticSpec(height=64, width=128, num_train=8, num_val=4, seed=3), progress=False)


def need_reference(name: str) -> Path:
    """Path of a file in ../shared/reference, or skip the test with the reason."""
    p = REFERENCE / name
    if not p.exists():
        pytest.skip(f"reference file {p} is absent (the published FasterSeg files live in ../shared/reference)")
    return p
