import copy

import pytest
import torch

from fasterseg.nets import published
from fasterseg.nets.arch import Architecture, ArchitectureError
from fasterseg.nets.derive import choose_ends, derive
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import ArchSet

SPACE = SearchSpace(layers=12, fch=4)


def _random_params(seed):
    torch.manual_seed(seed)
    a = ArchSet(SPACE, search_widths=True)
    for p in a.parameters():
        p.data = torch.randn_like(p) * 2
    # make skips frequent, to exercise the removal rules
    for s in range(3):
        a.alpha(s).data[:, 0] += torch.rand(a.alpha(s).shape[0]) * 3
    return a


@pytest.mark.parametrize("seed", range(12))
def test_derivation_invariants_on_random_parameters(seed):
    params = _random_params(seed)
    before = {k: v.clone() for k, v in params.state().items()}
    for ends in [(32, 16), (32, 8)]:
        arch = derive(params, SPACE, 8 / 12, 8 / 12, 19, ends=ends)
        for b in arch.branches:
            scales = b.path
            assert all(c in (a, 2 * a) for a, c in zip(scales, scales[1:]))  # never up, one step at a time
            assert scales[-1] == b.ends_at and scales[0] == 8
            assert sum(b.downs()) == {8: 0, 16: 1, 32: 2}[b.ends_at]
            n_full = SPACE.layers
            min_len = round(n_full / 3) + 2 * {8: 0, 16: 1, 32: 2}[b.ends_at]
            assert len(b.ops) >= min_len
            # skips only where the path goes down (a stride-2 factorized reduce)
            assert all(op != "skip" or d for op, d in zip(b.ops, b.downs()))
            # no stretch between downs (or after the last) is removed entirely: every scale after
            # 1/8 keeps at least one cell that does not go down
            for s in sorted(set(scales))[1:]:
                assert any(p == s and not d for p, d in zip(scales, b.downs()))
        arch.validate()
        DerivedNet(arch).eval()(torch.randn(1, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in params.state().items())  # derivation edits nothing


def test_down_positions_follow_beta():
    params = ArchSet(SPACE)
    with torch.no_grad():
        for s in range(3):
            params.alpha(s)[:, 1] = 1.0  # plain convs everywhere: nothing removed
        params.beta(1)[:, 0] = -5.0
        params.beta(1)[4, 0] = 5.0  # node (6, 1) from down: go down at layer 5
        params.beta(2)[:, 0] = -5.0
        params.beta(2)[7, 0] = 5.0  # node (10, 2) from down: go down at layer 9 (beta_2 row 7)
    arch = derive(params, SPACE, 1.0, 1.0, 19, ends=(32, 16))
    b32, b16 = arch.branches
    assert b16.path[:6] == [8] * 6 and b16.path[6] == 16
    assert [i for i, d in enumerate(b32.downs()) if d] == [5, 9]


def test_teacher_ignores_skip():
    params = _random_params(3)
    with torch.no_grad():
        for s in range(3):
            params.alpha(s)[:, 0] = 10.0  # skip is everyone's favourite
    arch = derive(params, SPACE, 1.0, 1.0, 19, ignore_skip=True)
    assert all(op != "skip" for b in arch.branches for op in b.ops)
    assert all(len(b.ops) == SPACE.layers for b in arch.branches)  # nothing removed


def test_choose_ends_objective():
    assert choose_ends({"8+32": (0.5, 5.0), "16+32": (0.4, 5.0)}) == (32, 8)
    assert choose_ends({"8+32": (0.40, 20.0), "16+32": (0.40, 5.0)}) == (32, 16)
    assert choose_ends(None) == (32, 16)


def test_json_round_trip(tmp_path):
    arch = derive(_random_params(1), SPACE, 8 / 12, 8 / 12, 19)
    again = Architecture.load(arch.save(tmp_path / "a.json"))
    assert again.to_dict() == arch.to_dict()


def _student_dict():
    return published.load("fasterseg_student").to_dict()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["branches"][0]["ops"].__setitem__(2, "sep_conv"), "unknown operator 'sep_conv'"),
    (lambda d: d["branches"][0]["path"].__setitem__(5, 8), "goes up in scale at cell 5"),
    (lambda d: d["branches"][0]["widths"].pop(), "wrong lengths: 10 ops, 10 path entries, 9 widths"),
    (lambda d: d["branches"][0]["widths"].__setitem__(1, 0.4), "width 0.4 is off the list"),
    (lambda d: d["branches"][0]["path"].__setitem__(0, 16), "first cell must take the stem"),
    (lambda d: d["branches"][1].__setitem__("ends_at", 32), "two branches end at the same scale"),
    (lambda d: d.__setitem__("head_width", 0.3), "head_width 0.3 is not one of the width ratios"),
    (lambda d: d["branches"][0]["widths"].__setitem__(-1, 1.0), "must be the head width"),
    (lambda d: d.pop("fch"), "missing field"),
    (lambda d: d.__setitem__("format", "genotype"), "not a FasterSeg architecture"),
    (lambda d: d.__setitem__("version", 7), "unsupported version"),
    (lambda d: d["branches"][0]["path"].__setitem__(4, 32), "skips a scale"),
])
def test_malformed_documents_are_refused(edit, message):
    d = copy.deepcopy(_student_dict())
    edit(d)
    with pytest.raises(ArchitectureError, match=message):
        Architecture.from_dict(d)


def test_invalid_json_text():
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        Architecture.from_json("{nope")


@pytest.mark.parametrize("name", published.names())
def test_every_published_architecture_builds_with_its_stored_counts(name):
    from fasterseg.nets.counting import totals

    arch = published.load(name)
    counts = arch.source["counts"]
    net = DerivedNet(arch, aux=True)
    params_m = sum(p.numel() for p in net.parameters()) / 1e6
    assert params_m == pytest.approx(counts["params_M"], rel=1e-6)
    _, gmacs = totals(net, (1, 3, 128, 256))  # MACs scale with pixels: 1024x2048 = 64x
    assert gmacs * 64 == pytest.approx(counts["GMACs"], rel=1e-3)
    assert net(torch.randn(1, 3, 64, 128)).shape == (1, 19, 64, 128)
    logits, a16, a32 = net.train()(torch.randn(2, 3, 64, 128), aux=True)
    assert a16.shape == a32.shape == logits.shape == (2, 19, 64, 128)
