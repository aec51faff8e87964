import math
import zlib

import pytest
import torch
from conftest import need_reference

from fasterseg.latency.backends import Backend
from fasterseg.latency.build import build_table
from fasterseg.latency.expected import ExpectedLatency, LatencyPenalty
from fasterseg.latency.keys import LatencyKey, space_keys
from fasterseg.latency.table import Entry, LatencyTable, LatencyTableError, MissingEntriesError
from fasterseg.nets import published
from fasterseg.nets.derive import DeriveRules, derive
from fasterseg.nets.ops import PRIMITIVES
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import ArchSet
from fasterseg.timing import Timing

SPACE = SearchSpace(layers=8, fch=4)
SHW = ((1.0, 1.0), (8 / 12, 8 / 12))
H, W = 128, 256
RULES = DeriveRules(down_gap_min=2)


def fake_ms(key: LatencyKey) -> float:
    """A deterministic pseudo-latency per key (no measuring in unit tests)."""
    return 0.01 + (zlib.crc32(repr(key.as_tuple()).encode()) % 1000) / 1000


class FakeBackend(Backend):
    """Test double: 'measures' fake_ms, counts calls, can fail after n calls (to test resume)."""

    name = "fake"

    def __init__(self, fail_after=None):
        super().__init__()
        self.calls, self.fail_after = 0, fail_after

    def describe(self):
        return {"backend": "fake", "device": "test", "device_type": "cpu", "threads": 1, "versions": {}}

    def time(self, module, input_shape):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return Timing(float(sum(p.numel() for p in module.parameters()) / 1e6 + input_shape[1] * 1e-3), 0.001, 3)


@pytest.fixture(scope="module")
def table():
    keys = space_keys(SPACE, SHW, 19, H, W)
    return LatencyTable({k: Entry(fake_ms(k), 0.0, 1) for k in keys if not k.removed},
                        {"backend": "fake", "device": "test", "threads": 1, "resolution": [H, W], "prices_glue": True})


def test_round_trip_and_metadata_checks(table, tmp_path):
    table.entries[LatencyKey("head", 16, 32, 64, 19)] = Entry(0.5, float("nan"), 0)
    p = table.save(tmp_path / "t.csv")
    again = LatencyTable.load(p, expect={"resolution": [H, W]})
    assert again.meta == table.meta and len(again) == len(table)
    assert all(again[k] == pytest.approx(v.median_ms, rel=1e-5) for k, v in table.entries.items())
    with pytest.raises(LatencyTableError, match=r"resolution: table has \[128, 256\], expected \[1024, 2048\]"):
        LatencyTable.load(p, expect={"resolution": [1024, 2048]})
    p.with_suffix(".json").unlink()
    with pytest.raises(LatencyTableError, match="no metadata sidecar"):
        LatencyTable.load(p)


def test_missing_keys_are_listed_or_measured(table):
    partial = LatencyTable(dict(list(table.entries.items())[:10]), dict(table.meta))
    want = list(table.entries)[:13]
    with pytest.raises(MissingEntriesError, match="lacks 3 entries") as e:
        partial.check_keys(want)
    assert e.value.keys == sorted(want[10:])
    assert partial.check_keys(want, backend=FakeBackend()) == sorted(want[10:])  # measured on demand
    assert partial.missing(want) == []
    other = FakeBackend()
    other.describe = lambda: {"backend": "torch", "device": "elsewhere", "threads": 1}
    with pytest.raises(LatencyTableError, match="cannot fill missing entries"):
        LatencyTable({}, dict(table.meta)).check_keys(want, backend=other)


def test_stride1_skip_is_free(table):
    assert table[LatencyKey("skip", 16, 32, 32, 32, 1)] == 0.0


def _onehot(seed, d1, d2, space=SPACE):
    g = torch.Generator().manual_seed(seed)
    a = ArchSet(space, True)
    with torch.no_grad():
        for s in range(3):
            A, G = a.alpha(s), a.gamma(s)
            A.fill_(-1e4)
            A[torch.arange(A.shape[0]), torch.randint(1, 5, (A.shape[0],), generator=g)] = 1e4
            G.fill_(-1e4)
            G[torch.arange(G.shape[0]), torch.randint(0, 5, (G.shape[0],), generator=g)] = 1e4
        for s, d in ((1, d1), (2, d2)):
            B = a.beta(s)
            B[:, 0], B[:, 1] = -1e4, 1e4
            B[SPACE.beta_row(d + 1, s)] = torch.tensor([1e4, -1e4])
    return a


def _hand_sum(table, a, d1, d2, ends, last, stem_w=8 / 12, head_w=8 / 12):
    """The LUT sum along the paths the one-hot parameters select, written out without library helpers.
    `last[(end, scale index)]`: channels of the finer feature that branch's refinement concatenates."""
    R = SPACE.width_ratios
    ch = lambda s, r: int(round(s * 4 * r))  # noqa: E731
    op_at = lambda l, s: PRIMITIVES[int(a.alpha(s)[l - s].argmax())]  # noqa: E731
    width_of = lambda l, s: R[int(a.gamma(s)[l - max(s - 1, 0)].argmax())]  # noqa: E731
    c1, c2, c3 = 2 * ch(2, stem_w), 2 * ch(4, stem_w), ch(8, stem_w)
    total = table[LatencyKey("conv3x3", H, W, 3, c1, 2)] + table[LatencyKey("conv_2x", H // 2, W // 2, c1, c2, 2)] \
        + table[LatencyKey("conv_2x", H // 4, W // 4, c2, c3, 2)]
    paths = {32: [0] * (d1 + 1) + [1] * (d2 - d1) + [2] * (8 - d2 - 1),
             16: [0] * (d1 + 1) + [1] * (8 - d1 - 1), 8: [0] * 8}
    seen = set()
    for e in ends:
        path = paths[e]
        c_in = c3
        for l in range(8):
            s = path[l]
            nxt = path[l + 1] if l < 7 else s
            c_out = ch(8 * 2 ** nxt, width_of(l, nxt)) if l < 7 else ch(8 * 2 ** s, head_w)
            cell = (l, s, nxt)
            prefix_shared = all(paths[ends[0]][i] == paths[ends[1]][i] for i in range(l + 2)) if l < 7 else False
            if not (prefix_shared and cell in seen):
                key = LatencyKey(op_at(l, s), H // (8 * 2 ** s), W // (8 * 2 ** s), c_in, c_out, 1 + (nxt > s))
                total += table[key]
            seen.add(cell)
            c_in = c_out
    c8, c16, c32 = ch(8, head_w), ch(16, head_w), ch(32, head_w)
    for e in ends:
        if e == 32:
            total += table[LatencyKey("conv1x1", H // 32, W // 32, c32, c16)]
            total += table[LatencyKey("upcat", H // 32, W // 32, c16, c16 + last[(32, 1)], 2)]
            total += table[LatencyKey("conv3x3", H // 16, W // 16, c16 + last[(32, 1)], c16)]
        if e in (32, 16):
            total += table[LatencyKey("conv1x1", H // 16, W // 16, c16, c8)]
            total += table[LatencyKey("upcat", H // 16, W // 16, c8, c8 + last[(e, 0)], 2)]
            total += table[LatencyKey("conv3x3", H // 8, W // 8, c8 + last[(e, 0)], c8)]
    total += (
        table[LatencyKey("fusion", H // 8, W // 8, 2 * c8, 2 * c8)]
        + table[LatencyKey("head", H // 8, W // 8, 2 * c8, 19)]
    )
    total += table[LatencyKey("upsample", H // 8, W // 8, 19, 19, 8)]
    return total


@pytest.mark.parametrize("seed, d1, d2", [(0, 2, 4), (1, 2, 5), (2, 3, 5), (3, 2, 4)])
@pytest.mark.parametrize("ends", [(32, 16), (32, 8)])
def test_one_hot_expected_latency_equals_the_path_sum(table, seed, d1, d2, ends):
    a = _onehot(seed, d1, d2)
    R = SPACE.width_ratios
    ch = lambda s, r: int(round(s * 4 * r))  # noqa: E731
    width_of = lambda l, s: R[int(a.gamma(s)[l - max(s - 1, 0)].argmax())]  # noqa: E731
    # the finer features a branch concatenates: the input of its down-going cell at that scale
    last = {(32, 1): ch(16, width_of(d2 - 1, 1))}
    for e in (32, 16):
        last[(e, 0)] = ch(8, 8 / 12) if d1 == 0 else ch(8, width_of(d1 - 1, 0))
    expected = float(ExpectedLatency(SPACE, table, 8 / 12, 8 / 12, 19, ends)(a).detach())
    assert expected == pytest.approx(_hand_sum(table, a, d1, d2, ends, last), rel=1e-9)
    # and the derived network's prediction agrees (same one-hot parameters, no skips)
    arch = derive(a, SPACE, 8 / 12, 8 / 12, 19, ends=ends, rules=RULES)
    assert table.predict(arch) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "kind, live",
    [
        ("alpha", dict(alpha=True, beta=False, gamma=False)),
        ("beta", dict(alpha=False, beta=True, gamma=False)),
        ("gamma", dict(alpha=False, beta=False, gamma=True)),
    ],
)
def test_each_decoupled_term_reaches_only_its_own_parameters(table, kind, live):
    torch.manual_seed(0)
    a = ArchSet(SPACE, True)
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randn_like(p))
    ExpectedLatency(SPACE, table, 8 / 12, 8 / 12, 19)(a, **live).backward()
    for k, params in a.by_kind().items():
        for p in params:
            has = p.grad is not None and p.grad.abs().sum() > 0
            assert has == (k == kind), (k, kind)


def test_penalty_modes(table):
    a = ArchSet(SPACE, True)
    E = ExpectedLatency(SPACE, table, 8 / 12, 8 / 12, 19)
    loss, d = LatencyPenalty(E, lam=0.5)(a)
    lat = 0.002 * d["latency_alpha_ms"] + 0.994 * d["latency_beta_ms"] + 0.004 * d["latency_gamma_ms"]
    assert d["latency_weighted_ms"] == pytest.approx(lat) and loss.item() == pytest.approx(0.5 * lat, rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in a.parameters())
    a.zero_grad()
    loss, d = LatencyPenalty(E, lam=1.0, mode="coarse")(a)
    assert loss.item() == pytest.approx(d["latency_full_ms"], rel=1e-6)
    with pytest.raises(ValueError, match="choose one of decoupled, coarse, scaled"):
        LatencyPenalty(E, mode="fine")


def test_scaled_penalty_is_coarse_with_each_gradient_times_its_rate(table):
    """The ablation: the value of the coarse term, each kind's gradient multiplied by its rate."""
    E = ExpectedLatency(SPACE, table, 8 / 12, 8 / 12, 19)
    rates = (0.002, 0.994, 0.004)
    grads = {}
    for mode in ("coarse", "scaled"):
        a = ArchSet(SPACE, True)
        loss, _ = LatencyPenalty(E, lam=1.0, mode=mode, rates=rates)(a)
        loss.backward()
        grads[mode] = (loss.item(), {n: p.grad.clone() for n, p in a.named_parameters()})
    assert grads["scaled"][0] == pytest.approx(grads["coarse"][0], rel=1e-6)
    coarse, scaled = grads["coarse"][1], grads["scaled"][1]
    kinds = {"alpha": rates[0], "beta": rates[1], "gamma": rates[2], "stem": rates[1]}  # the stem goes with beta
    seen = set()
    for name, g in coarse.items():
        kind = name.split("_")[0]
        assert g.abs().sum() > 0
        seen.add(kind)
        torch.testing.assert_close(scaled[name], g * kinds[kind], rtol=1e-5, atol=1e-9)
    assert seen >= {"alpha", "beta", "gamma"}  # and "stem" in a space with searched stems


def test_narrower_widths_predict_less(table):
    mono = LatencyTable({k: Entry(k.c_in * k.c_out * k.h * k.w * 1e-7, 0.0, 1) for k in table.entries}, table.meta)
    a = ArchSet(SPACE, True)
    E = ExpectedLatency(SPACE, mono, 8 / 12, 8 / 12, 19)
    with torch.no_grad():
        for s in range(3):
            a.gamma(s)[:, -1] = 20.0  # max widths
    wide = float(E(a).detach())
    with torch.no_grad():
        for s in range(3):
            a.gamma(s)[:, -1] = 0.0
            a.gamma(s)[:, 0] = 20.0  # min widths
    assert float(E(a).detach()) < wide


def test_build_is_resumable_and_deduplicated(tmp_path):
    keys = space_keys(SPACE, SHW, 19, H, W)[:40] * 2  # duplicates are measured once
    path = tmp_path / "lut.csv"
    with pytest.raises(KeyboardInterrupt):
        build_table(path, FakeBackend(fail_after=15), SPACE, SHW, 19, H, W, keys=keys, progress=False, interleave=False)
    partial = LatencyTable.load(path)
    assert len(partial) == 15 and partial.meta["complete"] is False
    backend = FakeBackend()
    table = build_table(path, backend, SPACE, SHW, 19, H, W, keys=keys, progress=False, interleave=False)
    n_needed = len({k for k in keys if not k.removed})
    assert backend.calls == n_needed - 15 and len(table) == n_needed and table.meta["complete"] is True
    assert LatencyTable.load(path).meta["entries"] == n_needed


def test_space_keys_cover_every_derived_network(table):
    from fasterseg.latency.networks import random_architectures

    for arch in random_architectures(SPACE, 12, SHW, 19, seed=1, rules=RULES):
        assert table.predict(arch) > 0  # raises MissingEntriesError otherwise


def test_validate_reports_correlation(table):
    from fasterseg.latency.networks import random_architectures
    from fasterseg.latency.validate import validate

    class Proportional(FakeBackend):
        def time(self, module, input_shape):
            return Timing(table.predict(module.arch) * 1.1, 0.0, 1)

    nets = random_architectures(SPACE, 8, SHW, 19, seed=2, rules=RULES)
    df, summary = validate(table, Proportional(), nets, progress=False)
    assert summary["spearman"] == pytest.approx(1.0) and summary["mape"] == pytest.approx(0.1 / 1.1, rel=1e-6)
    assert summary["mape_ci"] == pytest.approx([0.1 / 1.1] * 2, rel=1e-6)  # every network off by the same share


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_networks():
    import numpy as np

    from fasterseg.latency.validate import agreement

    rng = np.random.default_rng(0)
    widths = {}
    for n in (10, 80):
        measured = rng.uniform(1, 10, n)
        predicted = measured * rng.normal(1.0, 0.15, n)
        a = agreement(predicted, measured)
        for k in ("spearman", "mape"):
            lo, hi = a[f"{k}_ci"]
            assert lo <= a[k] <= hi
        widths[n] = a["mape_ci"][1] - a["mape_ci"][0]
        assert agreement(predicted, measured) == a  # seeded
    assert widths[80] < widths[10]
    assert agreement([1.0, 2.0, 3.0, 4.0], [1.1, 2.1, 2.9, 4.2])["spearman_ci"] is None  # too few for an interval


@pytest.mark.reference
def test_published_table_imports_and_predicts_the_student():
    from fasterseg.importers.original import convert_latency_table

    t = convert_latency_table(need_reference("latency_lookup_table.npy"))
    assert len(t) == 667 and t.resolution == (1024, 2048) and t.meta["backend"] == "tensorrt"
    ms = t.predict(published.load("fasterseg_student"))
    assert 5.0 < ms < 6.5 and math.isclose(1000 / ms, 175.4, rel_tol=0.01)


def test_committed_published_table_matches_the_importer():
    t = LatencyTable.load(
        __import__("fasterseg.paths", fromlist=["resolve"]).resolve("data/latency/gtx1080ti_tensorrt_1024x2048.csv"),
        expect={"resolution": [1024, 2048]},
    )
    assert t.predict(published.load("fasterseg_student")) == pytest.approx(5.7018, abs=1e-3)


def test_unpickler_refuses_code(tmp_path):
    import pickle

    import numpy as np

    from fasterseg.importers.pickle_guard import load_npy_object

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.npy"
    np.save(p, np.array(Evil(), dtype=object), allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        load_npy_object(p)


def test_paper_profile_uses_the_published_table():
    """The paper profile searches against the committed 1080Ti table (no glue entries, none needed)."""
    from fasterseg.config import profile
    from fasterseg.latency import load_for

    cfg = profile("paper")
    t = load_for(cfg)
    assert not t.prices_glue and t.resolution == (1024, 2048)
    space = SearchSpace.from_config(cfg.space)
    student = ArchSet(space, True)
    ms = float(ExpectedLatency(space, t, 8 / 12, 8 / 12, 19)(student).detach())
    assert 4.0 < ms < 15.0  # a uniform student on the 1080Ti, in ms


def test_light_stem_is_priced_consistently_and_kept_out_of_original_tables():
    """A `light` stem (space.stem): its own table keys, the expectation with one-hot parameters equals the derived
    network's prediction, the architecture remembers it, and original-stem tables and documents are unchanged."""
    from fasterseg.latency.build import space_meta
    from fasterseg.nets.arch import Architecture
    from fasterseg.nets.network import DerivedNet

    light = SearchSpace(layers=8, fch=4, stem="light")
    keys = space_keys(light, SHW, 19, H, W)
    stem_ops = {k.op for k in keys if k.h == H // 2 and k.c_in == 2 * light.channels(2, 1.0)}
    assert stem_ops == {"conv"}  # single 3x3 convs instead of conv_2x blocks
    table = LatencyTable({k: Entry(fake_ms(k), 0.0, 1) for k in keys if not k.removed},
                         {"backend": "fake", "device": "test", "threads": 1, "resolution": [H, W], "prices_glue": True})
    a = _onehot(0, 2, 4, light)  # one-hot, no skips, downs at layers 2 and 4
    arch = derive(a, light, 8 / 12, 8 / 12, 19, rules=RULES)
    assert arch.stem == "light" and Architecture.from_json(arch.to_json()).stem == "light"
    expected = float(ExpectedLatency(light, table, 8 / 12, 8 / 12, 19)(a).detach())
    assert table.predict(arch) == pytest.approx(expected, rel=1e-6)
    original = derive(a, SPACE, 8 / 12, 8 / 12, 19, rules=RULES)
    assert "stem" not in original.to_dict() and "stem" not in space_meta(SPACE, SHW, 19)
    assert space_meta(light, SHW, 19)["stem"] == "light"
    n_light = sum(p.numel() for p in DerivedNet(arch, aux=False).stem.parameters())
    n_original = sum(p.numel() for p in DerivedNet(original, aux=False).stem.parameters())
    assert n_light < 0.6 * n_original
    assert DerivedNet(arch, aux=False).eval()(torch.randn(1, 3, 64, 128)).shape == (1, 19, 64, 128)


def test_the_scaled_penalty_is_the_coarse_term_with_each_gradient_times_its_rate(table):
    """The ablation of notebook 04: coarse (everything live) but alpha down-weighted as much as decoupling does."""
    torch.manual_seed(0)
    a = ArchSet(SPACE, search_widths=True)
    with torch.no_grad():
        for p in a.parameters():
            p.normal_()
    ex = ExpectedLatency(SPACE, table, *SHW[1], 19)
    rates = (1 / 500, 497 / 500, 2 / 500)
    grads, values = {}, {}
    for mode in ("coarse", "scaled"):
        a.zero_grad()
        loss, details = LatencyPenalty(ex, 0.1, mode, rates)(a)
        loss.backward()
        values[mode] = details["latency_full_ms"]
        grads[mode] = {k: torch.cat([p.grad.flatten() for p in ps]) for k, ps in a.by_kind().items()}
    assert values["scaled"] == pytest.approx(values["coarse"])
    for kind, r in zip(("alpha", "beta", "gamma"), rates):
        assert torch.allclose(grads["scaled"][kind], r * grads["coarse"][kind], rtol=1e-5, atol=1e-12)
