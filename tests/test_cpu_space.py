"""The CPU-shaped search space: depthwise-separable and inverted-residual operators, the searched stem, the
class decision forms, the int8 latency backend and interleaved table builds. The paper's space is untouched
(the published-parity tests in test_published.py cover it)."""
import math

import numpy as np
import pytest
import torch
from test_latency import FakeBackend, fake_ms

from fasterseg.config import ConfigError, load_config, profile
from fasterseg.latency.backends import get_backend
from fasterseg.latency.build import FACTOR_SEED, build_table
from fasterseg.latency.expected import ExpectedLatency
from fasterseg.latency.keys import LatencyKey, boundary_key, boundary_keys, network_blocks, space_keys, stem_keys
from fasterseg.latency.table import Entry, LatencyTable, latency_vs_macs
from fasterseg.latency.table import summary_lines as table_summary_lines
from fasterseg.latency.networks import random_architectures
from fasterseg.latency.validate import validate
from fasterseg.nets.arch import Architecture, ArchitectureError
from fasterseg.nets.counting import count
from fasterseg.nets.derive import DeriveRules, choose_decision, derive
from fasterseg.nets.network import DerivedNet, upsample_logits
from fasterseg.nets.onnx import export_onnx, ort_call, qdq_model, quantized
from fasterseg.nets.ops import Stem, build_op
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import Supernet
from fasterseg.timing import Timing, at_reference_speed, time_beside_reference

CPU_OPS = ("skip", "conv", "dwsep", "ir_e3", "ir_e6")
STEMS = ("original", "light", "dwsep")
FORMS = ("bilinear8", "bilinear2_nearest4", "nearest8")
SPACE = SearchSpace(layers=8, fch=4, ops=CPU_OPS, stems=STEMS, decisions=FORMS)
SHW = ((1.0, 1.0), (8 / 12, 8 / 12))
H, W = 128, 256
RULES = DeriveRules(down_gap_min=2)


def macs(module, shape) -> int:
    return int(count(module, shape).loc["total", "macs"])


@pytest.mark.parametrize("name", ["dwsep", "ir_e3", "ir_e6"])
@pytest.mark.parametrize("stride", [1, 2])
def test_new_operators_shapes_fixed_and_slimmable(name, stride):
    x = torch.randn(2, 8, 16, 32)
    assert build_op(name, 8, 16, stride)(x).shape == (2, 16, 16 // stride, 32 // stride)
    slim = build_op(name, 8, 16, stride, out_options=[8, 12, 16], in_options=[4, 6, 8])
    for c_in in (4, 6, 8):
        for c_out in (8, 12, 16):
            assert slim(x[:, :c_in], c_out).shape == (2, c_out, 16 // stride, 32 // stride)


def test_mac_counts_match_a_hand_count():
    # dwsep 8->16 at 16x16, stride 1: depthwise 8*9*16*16 + pointwise 8*16*16*16
    assert macs(build_op("dwsep", 8, 16, 1), (1, 8, 16, 16)) == 8 * 9 * 256 + 8 * 16 * 256
    # inverted residual t=3, 8->8, stride 2 at 16x16: expand 8->24 at 16x16, depthwise 24 at 8x8, project 24->8 at 8x8
    assert macs(build_op("ir_e3", 8, 8, 2), (1, 8, 16, 16)) == 8 * 24 * 256 + 24 * 9 * 64 + 24 * 8 * 64
    # t=6, 8->16, stride 1: 8*48*256 + 48*9*256 + 48*16*256
    assert macs(build_op("ir_e6", 8, 16, 1), (1, 8, 16, 16)) == 8 * 48 * 256 + 48 * 9 * 256 + 48 * 16 * 256
    # the depthwise-separable stem 3 -> 8 -> 16 -> 32 on 64x64: dense 3x3 conv to 32x32, then two dwsep stages
    stem = macs(Stem(8, 16, 32, kind="dwsep"), (1, 3, 64, 64))
    assert stem == 3 * 8 * 9 * 32 * 32 + (8 * 9 * 16 * 16 + 8 * 16 * 16 * 16) + (16 * 9 * 8 * 8 + 16 * 32 * 8 * 8)
    # and it is the lightest stem: original > light > dwsep
    original, light = (macs(Stem(8, 16, 32, kind=k), (1, 3, 64, 64)) for k in ("original", "light"))
    assert original > light > stem


def test_inverted_residual_adds_its_input_only_where_shapes_allow():
    torch.manual_seed(0)
    op = build_op("ir_e3", 8, 8, 1).eval()
    for m in op.modules():  # zero the projection: the block must then return its input
        if isinstance(m, torch.nn.BatchNorm2d) and m.num_features == 8:
            m.weight.data.zero_()
            m.bias.data.zero_()
    x = torch.randn(1, 8, 8, 8)
    assert torch.equal(op(x), x)
    assert build_op("ir_e3", 8, 16, 1)(x).shape[1] == 16  # no residual across widths


def test_decision_forms():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 4, 8)
    size = (32, 64)
    near = upsample_logits(logits, size, "nearest8")
    assert torch.equal(near, logits.repeat_interleave(8, -2).repeat_interleave(8, -1))
    assert torch.equal(near.argmax(1), logits.argmax(1).repeat_interleave(8, -2).repeat_interleave(8, -1))
    b2n4 = upsample_logits(logits, size, "bilinear2_nearest4")
    assert b2n4.shape == (1, 5, 32, 64) and torch.equal(b2n4[..., ::4, ::4].repeat_interleave(4, -2)
                                                        .repeat_interleave(4, -1), b2n4)
    assert not torch.equal(b2n4, near)
    with pytest.raises(ValueError, match="bicubic"):
        upsample_logits(logits, size, "bicubic")
    # the objective picks the cheaper form when it costs little mIoU, the accurate one when the loss is large
    assert choose_decision({"bilinear8": (0.40, 30.0), "nearest8": (0.399, 20.0)}, 25.0) == "nearest8"
    assert choose_decision({"bilinear8": (0.40, 30.0), "nearest8": (0.20, 29.0)}, 25.0) == "bilinear8"


@pytest.fixture(scope="module")
def table():
    keys = space_keys(SPACE, SHW, 19, H, W)
    return LatencyTable({k: Entry(fake_ms(k), 0.0, 1) for k in keys if not k.removed},
                        {"backend": "fake", "device": "test", "threads": 1, "resolution": [H, W], "prices_glue": True})


def test_the_table_holds_every_block_of_random_networks_of_the_space(table):
    archs = random_architectures(SPACE, 24, SHW, 19, seed=1, rules=RULES)
    assert {a.stem for a in archs} == set(STEMS) and {a.decision for a in archs} == set(FORMS)
    assert {o for a in archs for b in a.branches for o in b.ops} >= {"dwsep", "ir_e3", "ir_e6"}
    for a in archs:
        assert not table.missing(b.key for b in network_blocks(a, H, W))
        blocks = network_blocks(a, H, W)
        up = [b.key.op for b in blocks if b.key.op.startswith("upsample")]
        assert up == [{"bilinear8": "upsample", "bilinear2_nearest4": "upsample_bilinear2_nearest4",
                       "nearest8": "upsample_nearest8"}[a.decision]]
        stem = [b.key for b in blocks if b.part == "stem"]
        assert stem == stem_keys(SPACE.stem_channels(a.stem_width), H, W, a.stem)
        assert table.predict(a) > 0


def test_supernet_searches_the_stem_and_the_expected_latency_prices_it(table):
    torch.manual_seed(0)
    net = Supernet(SPACE, 19, SHW)
    out = net(torch.randn(2, 3, 64, 128), 1)
    sum(v.mean() for v in out.values()).backward()
    a = net.arch_sets[1]
    assert a.stem.grad is not None and a.stem.grad.abs().sum() > 0
    assert any(p is a.stem for p in a.by_kind()["beta"])
    expected = ExpectedLatency(SPACE, table, *SHW[1], 19)
    costs = expected.stem_ms
    assert len(costs) == 3
    with torch.no_grad():
        base = float(expected(a))
        a.stem.copy_(torch.tensor([0.0, 0.0, 30.0]))  # all the weight on the dwsep stem
        dw = float(expected(a))
    assert math.isclose(dw - base, float(costs[2] - costs.mean()), rel_tol=1e-6, abs_tol=1e-9)
    a.stem.grad = None
    expected(a).backward()
    assert a.stem.grad is not None
    arch = derive(a, SPACE, *SHW[1], 19, ends=(32, 16), rules=RULES, decision="nearest8")
    assert arch.stem == "dwsep" and arch.decision == "nearest8"
    assert any(d["kind"] == "stem" for d in arch.decisions)


def test_json_round_trip_keeps_operators_stem_and_decision(tmp_path):
    arch = random_architectures(SPACE, 6, SHW, 19, seed=3, rules=RULES)[5]
    arch.stem, arch.decision = "dwsep", "bilinear2_nearest4"
    path = arch.save(tmp_path / "a.json")
    again = Architecture.load(path)
    assert again == arch
    torch.manual_seed(0)
    x = torch.randn(1, 3, H, W)
    a_net, b_net = DerivedNet(arch, aux=False).eval(), DerivedNet(again, aux=False).eval()
    b_net.load_state_dict(a_net.state_dict())
    assert torch.equal(a_net(x), b_net(x))
    text = path.read_text().replace('"bilinear2_nearest4"', '"bicubic"')
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ArchitectureError, match="'decision' must be one of"):
        Architecture.load(bad)
    # the paper's defaults stay out of the file, so published and older files are unchanged
    arch.stem, arch.decision = "original", "bilinear8"
    assert "stem" not in arch.to_dict() and "decision" not in arch.to_dict()


def test_export_to_onnx_and_int8_agrees_with_pytorch():
    arch = next(a for a in random_architectures(SPACE, 12, SHW, 19, seed=2, rules=RULES)
                if {"dwsep", "ir_e6"} <= {o for b in a.branches for o in b.ops})
    arch.stem, arch.decision = "dwsep", "nearest8"
    torch.manual_seed(0)
    net = DerivedNet(arch, aux=False).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        want = net(x).numpy()
    fp32 = export_onnx(net, (1, 3, 64, 128))
    got = ort_call(fp32, x)()[0]
    assert got.shape == want.shape == (1, 19, 64, 128)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    calibration = np.random.default_rng(0).standard_normal((2, 3, 64, 128)).astype(np.float32)
    int8 = quantized(fp32, calibration)
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    q = ort_call(int8, x)()[0]
    assert q.shape == want.shape
    assert (q.argmax(1) == want.argmax(1)).mean() > 0.5  # int8 of an untrained net: mostly the same classes


@pytest.mark.parametrize("decision", FORMS)
def test_class_map_output_is_the_argmax_of_the_logits_also_through_onnx_and_int8(decision):
    """`ClassMap`: a nearest8 student's class map taken at 1/8 and repeated is exactly the argmax of its
    up-sampled logits; other forms take the full-resolution argmax. The ONNX and int8 exports keep it."""
    from fasterseg.nets.build import ClassMap

    arch = random_architectures(SPACE, 1, SHW, 19, seed=4, rules=RULES)[0]
    arch.decision = decision
    torch.manual_seed(0)
    net = DerivedNet(arch, aux=False).eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        want = net(x).argmax(1)
        got = ClassMap(net).eval()(x)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    fp32 = export_onnx(ClassMap(net).eval(), (1, 3, 64, 128))
    onnx_map = ort_call(fp32, x[:1])()[0]
    assert onnx_map.shape == (1, 64, 128) and (onnx_map == want[:1].numpy()).mean() > 0.999
    int8 = quantized(fp32, np.random.default_rng(0).standard_normal((2, 3, 64, 128)).astype(np.float32))
    q = ort_call(int8, x[:1])()[0]
    assert q.shape == (1, 64, 128) and q.dtype == np.int64 and set(np.unique(q)) <= set(range(19))


def test_int8_backend_times_a_quantised_block():
    b = get_backend("onnxruntime_int8", threads=1, samples=3, warmup=1, min_sample_ms=0.1)
    assert b.describe()["backend"] == "onnxruntime_int8" and "int8" in b.method()
    key = LatencyKey("ir_e3", 16, 32, 8, 8, 1)
    t = b.time(key.module(), key.input_shape())
    assert t.median_ms > 0 and t.count == 3


class Drifting:
    """A clock for `time_beside_reference`: the machine runs at `speed(n)` (a factor on every duration), changing
    with the number of calls so far; the candidate costs 2 units, the reference 10."""

    def __init__(self, speed):
        self.now, self.calls, self.speed = 0.0, 0, speed

    def __call__(self):
        return self.now

    def run(self, units):
        self.calls += 1
        self.now += units * self.speed(self.calls) * 1e-3


def test_time_beside_reference_follows_a_drifting_machine():
    clock = Drifting(lambda n: 1.0 if n < 40 else 3.0)  # the machine slows 3x halfway
    t, ref = time_beside_reference(lambda: clock.run(2), samples=21, warmup=1, min_sample_ms=0.0,
                                   reference=lambda: clock.run(10), clock=clock)
    assert math.isclose(t.median_ms / ref.median_ms, 0.2, rel_tol=1e-9)
    assert math.isclose(at_reference_speed(t, ref, 50.0).median_ms, 10.0, rel_tol=1e-9)
    # interference only slows calls down: the fastest samples give the ratio even when most are disturbed
    clock = Drifting(lambda n: 1.0 if n % 4 == 0 else 1.0 + (n % 7))
    t, ref = time_beside_reference(lambda: clock.run(2), samples=41, warmup=1, min_sample_ms=0.0,
                                   reference=lambda: clock.run(10), clock=clock)
    assert math.isclose(at_reference_speed(t, ref, 10.0).median_ms, 2.0, rel_tol=1e-9)


class DriftingBackend(FakeBackend):
    """`FakeBackend` on a machine that slows down 2x after half the entries; `time_beside` sees it in both."""

    def __init__(self, n_slow_after):
        super().__init__()
        self.n_slow_after = n_slow_after

    def time_beside(self, module, input_shape, reference=None):
        t = self.time(module, input_shape)
        slow = 2.0 if self.calls > self.n_slow_after else 1.0
        return (Timing(t.median_ms * slow, t.spread_ms * slow, t.count, t.median_ms * slow),
                Timing(10.0 * slow, 0.0, t.count, 10.0 * slow))


def test_an_interleaved_build_is_consistent_on_a_machine_that_slows_down(tmp_path, monkeypatch):
    import fasterseg.latency.build as build

    monkeypatch.setattr(build, "time_calls", lambda *a, **k: Timing(10.0, 0.0, 15, 10.0))  # the starting reference
    steady, drifting = FakeBackend(), DriftingBackend(n_slow_after=40)
    space = SearchSpace(layers=6, fch=4, ops=CPU_OPS, stems=STEMS, decisions=FORMS)
    a = build_table(tmp_path / "a.csv", steady, space, SHW, 19, 64, 128, progress=False, interleave=False)
    b = build_table(tmp_path / "b.csv", drifting, space, SHW, 19, 64, 128, progress=False)
    assert a.entries.keys() == b.entries.keys() and drifting.calls > 80
    ratio = [b.entries[k].median_ms / a.entries[k].median_ms for k in a.entries]
    assert max(ratio) - min(ratio) < 1e-9  # one consistent scale: the slowdown is divided out
    ref = LatencyTable.load(tmp_path / "b.csv").meta["reference"]
    assert ref["interleaved"] and ref["at_ms"] in (10.0, 20.0) and ref["speeds_seen"][1] / ref["speeds_seen"][0] == 2
    assert "load_end" in ref and "load_start" in ref
    # validation normalises each network the same way, and records the load
    archs = random_architectures(space, 3, SHW, 19, seed=0, rules=DeriveRules(1, 1, 2))
    table = LatencyTable.load(tmp_path / "b.csv")
    df, summary = validate(table, DriftingBackend(n_slow_after=1), archs, progress=False)
    assert summary["normalised_to_reference"] and len(summary["load_average"]) == 2
    assert np.allclose(df["measured_ms"], df["measured_ms_raw"] * table.reference_ms / df["reference_ms"])


def test_an_int8_table_prices_the_quantisation_boundary_a_network_does_not_pay():
    key = LatencyKey("dwsep", 16, 32, 8, 8, 1)
    assert boundary_key(key) == LatencyKey("qdq", 16, 32, 8, 8, 1)
    assert boundary_key(LatencyKey("conv3x3", 64, 128, 3, 8, 2)) is None  # the image is quantised in a network too
    assert boundary_key(LatencyKey("upsample", 8, 16, 19, 19, 8)) is None  # the logits' up-sampling runs in float
    table = LatencyTable({key: Entry(1.0, 0.0, 1), boundary_key(key): Entry(0.25, 0.0, 1)}, {})
    assert table[key] == 0.75 and table[boundary_key(key)] == 0.25
    # measured: the boundary model is a quantise-dequantise pair, and an int8 block carries one on its input
    b = get_backend("onnxruntime_int8", threads=1, samples=3, warmup=1, min_sample_ms=0.1)
    assert b.time(boundary_key(key).module(), (1, 8, 16, 32)).median_ms > 0
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(qdq_model((1, 8, 16, 32))).graph.node]
    assert ops == ["QuantizeLinear", "DequantizeLinear"]
    space = SearchSpace(layers=6, fch=4, ops=CPU_OPS)
    keys = space_keys(space, SHW, 19, 64, 128)
    assert {k.op for k in boundary_keys(keys)} == {"qdq"} and len(boundary_keys(keys)) < len(keys) / 4


def test_config_checks_name_the_bad_field():
    cfg = profile("tiny")
    cfg.space.ops = ("conv", "dwsep")
    with pytest.raises(ConfigError, match=r"space.ops=.*'skip' first"):
        cfg.validate()
    cfg = profile("tiny")
    cfg.space.stems = ("dwsep",)
    with pytest.raises(ConfigError, match="space.stems"):
        cfg.validate()
    cfg = profile("tiny")
    cfg.space.decisions = ("bicubic",)
    with pytest.raises(ConfigError, match="space.decisions"):
        cfg.validate()
    cfg = profile("tiny")
    cfg.latency.backend = "onnxruntime-int8"
    with pytest.raises(ConfigError, match="onnxruntime_int8"):
        cfg.validate()


def test_the_paper_profile_keeps_the_papers_space_and_the_committed_cpu_space_config_loads():
    for name in ("paper", "cpu", "tiny"):
        assert SearchSpace.from_config(profile(name).space).is_paper
    cfg = load_config("configs/cpu-space.yaml")
    space = SearchSpace.from_config(cfg.space)
    assert not space.is_paper and space.ops == CPU_OPS and space.stems == STEMS and space.decisions == FORMS
    assert cfg.latency.backend == "onnxruntime_int8"


def test_the_network_factor_is_fitted_on_other_networks_and_scales_every_block(tmp_path):
    space = SearchSpace(layers=6, fch=4, ops=CPU_OPS)
    rules = DeriveRules(1, 1, 2)

    class NetworksRunSlower(FakeBackend):
        """Blocks as FakeBackend; a whole network 0.9x the sum of its blocks (what a network saves)."""

        def time(self, module, input_shape):
            if isinstance(module, DerivedNet):
                return Timing(0.9 * plain.predict(module.arch), 0.0, 1, 0.9 * plain.predict(module.arch))
            return super().time(module, input_shape)

    plain = build_table(tmp_path / "a.csv", FakeBackend(), space, SHW, 19, 64, 128, progress=False,
                        interleave=False)
    fitted = build_table(tmp_path / "b.csv", NetworksRunSlower(), space, SHW, 19, 64, 128, progress=False,
                         interleave=False, factor_networks=4, rules=rules)
    meta = LatencyTable.load(tmp_path / "b.csv").meta["network_factor"]
    assert math.isclose(meta["factor"], 0.9) and meta["networks"] == 4 and meta["seed"] == FACTOR_SEED != 0
    key = next(k for k in plain.entries if k.op == "dwsep")
    assert math.isclose(fitted[key], 0.9 * plain[key])
    arch = random_architectures(space, 1, SHW, 19, seed=0, rules=rules)[0]
    assert math.isclose(fitted.predict(arch), 0.9 * plain.predict(arch))
    assert "network_factor" in "\n".join(table_summary_lines(fitted))


def test_latency_against_macs_counts_each_entry(table):
    df = latency_vs_macs(table, ("conv", "dwsep", "ir_e6"))
    assert set(df["op"]) == {"conv", "dwsep", "ir_e6"} and (df["stride"] == 1).all()
    for _, r in df.sample(5, random_state=0).iterrows():
        key = LatencyKey(r["op"], r["h"], r["w"], r["c_in"], r["c_out"], 1)
        assert r["macs"] == macs(key.module(), key.input_shape())
        assert math.isclose(r["latency_ms"], table[key])
        assert math.isclose(r["gmacs_per_s"], r["macs"] / table[key] / 1e6)
