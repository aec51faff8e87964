import pytest
import torch

from fasterseg.nets.ops import OPS, PRIMITIVES, SlimBatchNorm2d, build_op
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import PREDICTIONS, Supernet


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 16), (16, 32)])
def test_operator_shapes_fixed_and_slimmable(name, stride, hw):
    x = torch.randn(2, 12, *hw)
    op = build_op(name, 12, 24, stride)
    assert op(x).shape == (2, 24, hw[0] // stride, hw[1] // stride)
    slim = build_op(name, 12, 24, stride, out_options=[8, 16, 24])
    for c_in, c_out in [(12, 24), (6, 8), (9, 16)]:
        y = slim(x[:, :c_in], c_out)
        assert y.shape == (2, c_out, hw[0] // stride, hw[1] // stride)


def test_registry_order_matches_the_original_indices():
    assert PRIMITIVES == ("skip", "conv", "zoomed_conv", "conv_2x", "zoomed_conv_2x") == tuple(OPS)[:5]


def test_zoomed_conv_quarter_cost_and_identity_skip():
    x = torch.randn(1, 8, 16, 16)
    assert build_op("skip", 8, 8, 1)(x) is x  # derived stride-1 skip with equal widths: identity
    seen = []
    op = build_op("zoomed_conv", 8, 8, 1)
    op.cbs[0].conv.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    assert op(x).shape[-2:] == (16, 16) and seen[0] == (8, 8)  # conv runs at half resolution


def test_switchable_bn_refuses_unknown_width():
    with pytest.raises(ValueError, match="allowed widths"):
        SlimBatchNorm2d([8, 16])(torch.randn(1, 12, 2, 2))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Supernet(SearchSpace(layers=6, fch=4), num_classes=5)


@pytest.mark.parametrize("hw", [(64, 64), (64, 128), (96, 160)])
@pytest.mark.parametrize("mode", ["max", "min", "random", "sampled"])
def test_supernet_shapes(net, hw, mode):
    out = net(torch.randn(2, 3, *hw), arch_set=1, widths=mode)
    assert tuple(out) == PREDICTIONS
    for v in out.values():
        assert v.shape == (2, 5, hw[0] // 8, hw[1] // 8)


def test_supernet_rejects_bad_input_sizes(net):
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="at least 64"):
        net(torch.randn(1, 3, 32, 64))


@pytest.mark.parametrize("active", [0, 1])
def test_gradients_reach_only_the_active_set(net, active):
    net.zero_grad(set_to_none=True)
    out = net(torch.randn(2, 3, 64, 64), arch_set=active, widths="sampled")
    sum(v.square().mean() for v in out.values()).backward()
    a = net.arch_sets[active]
    for kind, params in a.by_kind().items():
        if kind == "gamma" and not a.search_widths:
            continue  # the teacher's widths are fixed at max
        for p in params:
            assert p.grad is not None and p.grad.abs().sum() > 0, (kind, active)
    for p in net.arch_parameters(1 - active):
        assert p.grad is None


def test_parameter_groups_partition_everything(net):
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert not arch & weights and arch | weights == {id(p) for p in net.parameters()}
    assert net.names == ["teacher", "student"]
    shapes = {n: tuple(p.shape) for n, p in net.arch_sets[1].named_parameters()}
    assert shapes == {"alpha_0": (6, 5), "alpha_1": (5, 5), "alpha_2": (4, 5), "beta_1": (4, 2), "beta_2": (3, 2),
                      "gamma_0": (5, 5), "gamma_1": (5, 5), "gamma_2": (4, 5)}
    assert tuple(net.arch_sets[0].gamma(0).shape) == (5, 1)


def test_paper_scale_supernet_size():
    """At F=12, L=16 the slimmable supernet holds about 250 M weights (the paper)."""
    sp = SearchSpace(16, 12)
    from fasterseg.nets.supernet import SupernetCell

    n = sum(p.numel() for l in range(16) for s in range(min(l, 2) + 1)
            for p in SupernetCell(sp, s, sp.has_down(l, s)).parameters())
    assert 230e6 < n < 260e6
