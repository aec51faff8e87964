"""The importer reproduces what the original code derives from the published files
(../shared/reference/README.md), and the committed JSON files are what it produces."""
import pytest
from conftest import need_reference

from fasterseg.importers.original import derive_original, load_arch_file
from fasterseg.nets import published

IDX = {"skip": 0, "conv": 1, "zoomed_conv": 2, "conv_2x": 3, "zoomed_conv_2x": 4}
SCALE = {8: 0, 16: 1, 32: 2}
S = 1 / 3

EXPECTED = {
    1: {
        32: ([0, 0, 0, 0, 1, 1, 1, 1, 2, 2], [3, 3, 4, 2, 4, 4, 4, 4, 4, 4], [S, S, S, 2 / 3, S, S, S, S, S]),
        16: ([0, 0, 0, 0, 0, 0, 1, 1, 1], [3, 3, 4, 4, 3, 3, 4, 4, 4], [S, S, S, S, S, S, S, 1.0]),
    },
    0: {
        32: (
            [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2],
            [2, 4, 4, 4, 4, 4, 4, 2, 4, 4, 4, 4, 4, 4, 3, 3],
            [1.0] * 15,
        ),
        16: (
            [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [2, 4, 4, 4, 4, 3, 4, 2, 4, 4, 4, 4, 4, 4, 4, 4],
            [1.0] * 15,
        ),
    },
}


@pytest.mark.reference
@pytest.mark.parametrize("idx", [0, 1])
def test_derivation_reproduces_the_published_networks(idx):
    arch = derive_original(load_arch_file(need_reference(f"arch_{idx}.pt")), idx)
    assert [b.ends_at for b in arch.branches] == [32, 16]
    for b in arch.branches:
        path, ops, widths = EXPECTED[idx][b.ends_at]
        assert [SCALE[s] for s in b.path] == path
        assert [IDX[o] for o in b.ops] == ops
        assert b.widths[:-1] == pytest.approx(widths)
        assert b.widths[-1] == pytest.approx(arch.head_width)
    assert arch.stem_width == pytest.approx(1.0 if idx == 0 else 8 / 12)


@pytest.mark.reference
@pytest.mark.parametrize("idx, name", [(0, "fasterseg_teacher"), (1, "fasterseg_student")])
def test_committed_json_matches_the_importer(idx, name):
    arch = derive_original(load_arch_file(need_reference(f"arch_{idx}.pt")), idx)
    shipped = published.load(name)
    assert [(b.ends_at, b.ops, b.path, b.widths) for b in arch.branches] == [
        (b.ends_at, b.ops, b.path, b.widths) for b in shipped.branches
    ]
