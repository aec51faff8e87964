import pytest
import torch
import torch.nn as nn

from fasterseg.cli import main
from fasterseg.losses import ohem_cross_entropy
from fasterseg.nets.counting import count, operator_costs, receptive_field
from fasterseg.nets.ops import build_op
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import Supernet
from fasterseg.nas.losses import downsample_labels, supernet_weight_loss
from fasterseg.timing import interleaved


def test_count_macs_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 4, 1, stride=2))
    df = count(net, (1, 3, 16, 16), depth=1)
    assert df.loc["0", "macs"] == 16 * 16 * 8 * 3 * 9
    assert df.loc["2", "macs"] == 8 * 8 * 4 * 8
    assert df.loc["total", "params"] == 3 * 8 * 9 + 8 * 4 + 4


def test_receptive_fields_of_operators():
    rf = {name: receptive_field(build_op(name, 4, 4, 1), 4) for name in ("conv", "conv_2x", "zoomed_conv")}
    assert rf["conv"] == 3 and rf["conv_2x"] == 5 and rf["zoomed_conv"] > rf["conv_2x"]
    costs = operator_costs(8, 32, 32)
    assert costs.loc[("zoomed_conv", 1), "GMACs"] == pytest.approx(costs.loc[("conv", 1), "GMACs"] / 4)


def test_ohem_keeps_hard_pixels_and_ignores_255():
    torch.manual_seed(0)
    logits = torch.zeros(1, 3, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits[0, 0] = 10.0  # every pixel confidently class 0 ...
    target[0, 0, 0] = 2  # ... except one labelled 2: the only hard pixel
    target[0, 3, 3] = 255
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1)
    assert loss.item() == pytest.approx(10.0, abs=1e-3)  # only the hard pixel counts
    full = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    assert full < loss


def test_supernet_weight_loss_passes():
    net = Supernet(SearchSpace(5, 4), 5)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    loss, parts = supernet_weight_loss(net, x, downsample_labels(y))
    assert set(parts) == {"teacher_sampled", "student_sampled", "max", "min"} and loss.requires_grad
    _, parts = supernet_weight_loss(net, x, downsample_labels(y), pretrain=True)
    assert set(parts) == {"max", "min", "random"}


def test_interleaved_reports_ratio():
    """A fixed clock (the candidate takes 1 ms, the reference 4 ms), not the machine: the ratio is exact."""
    from fasterseg.timing import REF_MACS

    now = [0.0]

    def advance(seconds):
        return lambda: now.__setitem__(0, now[0] + seconds)

    r = interleaved(advance(0.001), rounds=5, warmup=1, clock=lambda: now[0], reference=advance(0.004))
    assert r["median_ms"] == pytest.approx(1.0) and r["reference_median_ms"] == pytest.approx(4.0)
    assert r["ratio_to_reference"] == pytest.approx(0.25) and r["rounds"] == 5
    assert r["reference_gmacs_per_s"] == pytest.approx(REF_MACS / 4e-3 / 1e9)


def test_cli_arch_show(capsys):
    assert main(["arch", "show", "fasterseg_student", "--size", "64", "128"]) == 0
    out = capsys.readouterr().out
    assert "zoomed_conv_2x" in out and "total" in out and "1/32 + 1/16" in out
