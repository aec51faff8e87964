"""Differentiable expected latency of a supernet's architecture-parameter set, and the latency penalty.

**Expected latency.** A branch ending at scale e is a random path through the node grid: going
backwards from (L-1, e), node (l, s) came from (l-1, s-1) with probability beta0 and from (l-1, s) with
beta1 (a node with a single input has no choice). Each cell on the path applies one operator
(probabilities alpha) between input/output widths (probabilities gamma; independent per tensor).
With F(n) the sum over path prefixes ending at n of their beta products, q_e(n) the probability that
branch e's path reaches n backwards from its end, and S(n) the same prefix sum with squared products,

    P(branch e uses the cell on edge n -> m)      = F(n) * beta_m(n) * q_e(m)
    P(both branches share that cell)               = S(n) * beta_m(n)^2 * q_a(m) * q_b(m)

(two branches share a cell only when their whole prefix agrees, as derived networks do). The expected
latency is the stem, plus every cell's expected LUT latency (over alpha and the widths) times the
probability that the union of the branches uses it, plus each branch's last cell and its refinement
(the concatenated finer features' widths weighted by where the branch goes down), plus fusion and
head. With one-hot parameters it equals the LUT sum of the derived network's blocks (skips aside:
a stride-1 skip costs 0 because derivation removes it).

**Penalty** (docs/method.md): decoupled fine-grained
``Lat = r_a*Lat(alpha | beta uniform, width max) + r_b*Lat(beta | alpha uniform, width max)
+ r_g*Lat(gamma | alpha uniform, beta uniform)`` with (r_a, r_b, r_g) = (1/500, 497/500, 2/500), each
term differentiable in one kind of parameter only; or coarse (all three live in one term); or scaled (the coarse
term with each kind's gradient multiplied by its rate: an ablation, `LatencyPenalty`). The loss is ``lambda * Lat``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fasterseg.config_checks import PENALTIES
from fasterseg.latency.keys import UPSAMPLE, LatencyKey, stem_keys
from fasterseg.latency.table import LatencyTable, MissingEntriesError
from fasterseg.nets.space import SCALE_INDEX, SCALES, SearchSpace
from fasterseg.nets.supernet import ArchSet

PAPER_RATES = (1 / 500, 497 / 500, 2 / 500)


def width_distributions(a: ArchSet, space: SearchSpace, n_w: int, live: bool, device) -> dict:
    """Width distribution of every tensor T(l, s) of set `a`: softmax(gamma) when live and searched, else
    all mass on the maximum width."""
    max_w = F.one_hot(torch.tensor(n_w - 1), n_w).double().to(device)
    out = {}
    for s in range(3):
        g = a.gamma(s)
        for k in range(g.shape[0]):
            out[(k + space.gamma_offset(s), s)] = F.softmax(g[k].double(), -1) if (live and a.search_widths) else max_w
    return out


class ExpectedLatency:
    """Expected latency (ms) of one architecture set at the LUT's resolution; tensors precomputed once.

    Args:
        space: the supernet geometry. lut: a table covering the space (`space_keys`).
        stem_width, head_width: of this set. num_classes: classes of the head.
        ends: the branch pair the derived network will have, e.g. (32, 16) or (32, 8).
    """

    def __init__(self, space: SearchSpace, lut: LatencyTable, stem_width: float, head_width: float,
                 num_classes: int, ends: tuple[int, ...] = (32, 16)):
        assert 1 <= len(ends) <= 2, "expected latency supports one or two branches"
        self.space, self.ends = space, tuple(ends)
        H, W = lut.resolution
        if H % 32 or W % 32 or H == 0:
            raise ValueError(f"the latency table's resolution {H}x{W} must be a (non-zero) multiple of 32")
        L, R = space.layers, list(space.width_ratios)
        self.n_w = len(R)
        stem = space.stem_channels(stem_width)
        missing = []

        def lat(key: LatencyKey) -> float:
            if key not in lut:
                missing.append(key)
                return 0.0
            return lut[key]

        def opcost(res, c_ins, c_outs, stride) -> torch.Tensor:
            h, w = res
            return torch.tensor([[[lat(LatencyKey(op, h, w, ci, co, stride)) for co in c_outs] for ci in c_ins]
                                 for op in space.ops], dtype=torch.float64)

        # the stem: one cost per kind searched among (or the fixed kind's)
        self.stem_ms = torch.tensor([sum(lat(k) for k in stem_keys(stem, H, W, kind))
                                     for kind in (space.stems or (space.stem,))], dtype=torch.float64)
        self.same, self.down = {}, {}
        for l, s in space.nodes():
            S = SCALES[s]
            res = (H // S, W // S)
            c_in = [stem[2]] if l == 0 else [space.channels(S, r) for r in R]
            c_out = [space.channels(S, head_width)] if l == L - 1 else [space.channels(S, r) for r in R]
            self.same[(l, s)] = opcost(res, c_in, c_out, 1)
            if space.has_down(l, s):
                self.down[(l, s)] = opcost(res, c_in, [space.channels(2 * S, r) for r in R], 2)
        c8, c16, c32 = (space.channels(s, head_width) for s in SCALES)
        h8, w8, h16, w16, h32, w32 = H // 8, W // 8, H // 16, W // 16, H // 32, W // 32
        ch8_opts = [space.channels(8, r) for r in R]
        # refinement costs, as a function of the width of the concatenated finer feature (plus the
        # up-sampling/concatenation glue when the table prices it)
        glue = lut.prices_glue

        def ref8(c):
            return lat(LatencyKey("conv3x3", h8, w8, c8 + c, c8)) + (
                lat(LatencyKey("upcat", h16, w16, c8, c8 + c, 2)) if glue else 0.0
            )

        def ref16(c):
            return lat(LatencyKey("conv3x3", h16, w16, c16 + c, c16)) + (
                lat(LatencyKey("upcat", h32, w32, c16, c16 + c, 2)) if glue else 0.0
            )

        self.ref8 = torch.tensor([ref8(c) for c in ch8_opts], dtype=torch.float64)
        self.ref8_stem = ref8(stem[2])
        self.ref16 = torch.tensor([ref16(space.channels(16, r)) for r in R], dtype=torch.float64)
        self.arm32 = lat(LatencyKey("conv1x1", h32, w32, c32, c16))
        self.arm16 = lat(LatencyKey("conv1x1", h16, w16, c16, c8))
        nb = len(ends)
        self.tail = lat(LatencyKey("fusion", h8, w8, nb * c8, nb * c8)) + lat(
            LatencyKey("head", h8, w8, nb * c8, num_classes)
        )
        if glue:  # the paper's final up-sampling (the decision form is chosen at derivation, not by gradient)
            form = "bilinear8" if "bilinear8" in space.decisions else space.decisions[0]
            self.tail += lat(LatencyKey(UPSAMPLE[form], h8, w8, num_classes, num_classes, 8))
        if missing:
            raise MissingEntriesError(
                sorted(set(missing)),
                "build a table for this space and resolution: fasterseg latency build --profile ...",
            )

    def to(self, device: torch.device | str) -> "ExpectedLatency":
        """Move the cost tensors to `device` (where the architecture parameters live); returns self."""
        self.same, self.down = ({k: v.to(device) for k, v in d.items()} for d in (self.same, self.down))
        self.ref8, self.ref16, self.stem_ms = self.ref8.to(device), self.ref16.to(device), self.stem_ms.to(device)
        return self

    def __call__(self, a: ArchSet, alpha: bool = True, beta: bool = True, gamma: bool = True) -> torch.Tensor:
        """Expected latency (ms, scalar tensor). A kind that is not live is held neutral: alpha and beta
        uniform, widths at max. A searched stem's kind goes with beta (`ArchSet.by_kind`)."""
        sp, L = self.space, self.space.layers
        dev = self.ref8.device
        n_ops = len(sp.ops)
        uni5 = torch.full((n_ops,), 1 / n_ops, dtype=torch.float64, device=dev)
        half = torch.tensor([0.5, 0.5], dtype=torch.float64, device=dev)
        nodes = sp.nodes()
        alphas = {(l, s): (F.softmax(a.alpha(s)[sp.alpha_row(l, s)].double(), -1) if alpha else uni5) for l, s in nodes}
        widths = width_distributions(a, sp, self.n_w, gamma, self.ref8.device)

        def preds(l, s):
            """Inputs of node (l, s) with their beta weights."""
            if s == 0:
                return [((l - 1, 0), 1.0)]
            if l == s:
                return [((l - 1, s - 1), 1.0)]
            b = F.softmax(a.beta(s)[sp.beta_row(l, s)].double(), -1) if beta else half
            return [((l - 1, s - 1), b[0]), ((l - 1, s), b[1])]

        inputs = {n: preds(*n) for n in nodes[1:]}  # beta softmaxes, once per call
        Fw, Sq = {(0, 0): 1.0}, {(0, 0): 1.0}
        for n in nodes[1:]:
            Fw[n] = sum(Fw[p] * w for p, w in inputs[n])
            Sq[n] = sum(Sq[p] * w * w for p, w in inputs[n])
        q = {}
        for e in self.ends:
            qe = {n: 0.0 for n in nodes}
            qe[(L - 1, SCALE_INDEX[e])] = 1.0
            for n in reversed(nodes[1:]):
                for p, w in inputs[n]:
                    qe[p] = qe[p] + qe[n] * w
            q[e] = qe

        def w_in(l, s):
            return None if l == 0 else widths[(l - 1, s)]

        def cell_cost(T, l, s, out):
            p_in = w_in(l, s)
            t = torch.einsum("k,kij->ij", alphas[(l, s)], T)
            t = t[0] if p_in is None else p_in @ t
            return t[0] if out is None else t @ out

        if sp.stems:
            k = len(sp.stems)
            p_stem = F.softmax(a.stem.double(), -1) if beta else torch.full((k,), 1 / k, dtype=torch.float64,
                                                                               device=dev)
            total = p_stem @ self.stem_ms + self.tail
        else:
            total = self.stem_ms[0] + self.tail
        for l, s in nodes[1:]:  # edges into (l, s)
            for (pl, ps), w in inputs[(l, s)]:
                T = self.same[(pl, ps)] if ps == s else self.down[(pl, ps)]
                used = [Fw[(pl, ps)] * w * q[e][(l, s)] for e in self.ends]
                u = sum(used)
                if len(self.ends) == 2:
                    u = u - Sq[(pl, ps)] * w * w * q[self.ends[0]][(l, s)] * q[self.ends[1]][(l, s)]
                total = total + u * cell_cost(T, pl, ps, widths[(pl, s)])
                # refinement: the finer feature a branch concatenates is this down-going cell's input
                if ps != s:
                    for e, ue in zip(self.ends, used):
                        if e == 32 and s == 2:
                            total = total + ue * (widths[(pl - 1, ps)] @ self.ref16)
                        if e in (16, 32) and s == 1:
                            r8 = self.ref8_stem if pl == 0 else widths[(pl - 1, ps)] @ self.ref8
                            total = total + ue * r8
        for e in self.ends:
            si = SCALE_INDEX[e]
            total = total + cell_cost(self.same[(L - 1, si)], L - 1, si, None)
            if e == 32:
                total = total + self.arm32 + self.arm16
            elif e == 16:
                total = total + self.arm16
        return total


def _scaled(p: torch.Tensor, r: float) -> torch.Tensor:
    """`p` with its value unchanged and its gradient multiplied by `r`."""
    return p * r + (p * (1 - r)).detach()


class GradientScaled:
    """An `ArchSet` seen with each kind's gradient scaled by its rate (values unchanged): what the ``scaled``
    penalty differentiates."""

    def __init__(self, a: ArchSet, rates: tuple[float, float, float]):
        self.a, (self.r_a, self.r_b, self.r_g) = a, rates
        self.search_widths, self.stem_kinds = a.search_widths, a.stem_kinds

    def alpha(self, s: int) -> torch.Tensor:
        return _scaled(self.a.alpha(s), self.r_a)

    def beta(self, s: int) -> torch.Tensor:
        return _scaled(self.a.beta(s), self.r_b)

    def gamma(self, s: int) -> torch.Tensor:
        return _scaled(self.a.gamma(s), self.r_g)

    @property
    def stem(self) -> torch.Tensor:
        return _scaled(self.a.stem, self.r_b)  # with beta, as `ArchSet.by_kind`


@dataclass
class LatencyPenalty:
    """``lambda * Lat`` with ``Lat`` decoupled (default), coarse or scaled; see the module docstring.

    ``scaled`` is an ablation: the coarse term (everything live) with each kind's gradient multiplied by its rate,
    i.e. alpha down-weighted exactly as much as decoupling does, but without decoupling's uniform/max-width
    context. Comparing it with ``decoupled`` asks whether decoupling is more than down-weighting alpha.

    Calling it on an `ArchSet` returns ``(loss, details)``: details holds each term's latency (ms,
    floats), the full expected latency with all parameters live, the weighted latency and lambda.
    """

    expected: ExpectedLatency
    lam: float = 1e-2
    mode: str = "decoupled"  # or "coarse", or "scaled" (the ablation)
    rates: tuple[float, float, float] = PAPER_RATES

    def __post_init__(self):
        if self.mode not in PENALTIES:
            raise ValueError(f"penalty mode {self.mode!r}; choose one of {', '.join(PENALTIES)}")

    def latency(self, a: ArchSet) -> tuple[torch.Tensor, dict[str, float]]:
        if self.mode in ("coarse", "scaled"):
            lat = self.expected(a if self.mode == "coarse" else GradientScaled(a, self.rates))
            return lat, {"latency_full_ms": float(lat.detach())}
        r_a, r_b, r_g = self.rates
        la = self.expected(a, alpha=True, beta=False, gamma=False)
        lb = self.expected(a, alpha=False, beta=True, gamma=False)
        lg = self.expected(a, alpha=False, beta=False, gamma=True)
        lat = r_a * la + r_b * lb + r_g * lg
        with torch.no_grad():
            full = self.expected(a)
        return lat, {
            "latency_alpha_ms": float(la.detach()),
            "latency_beta_ms": float(lb.detach()),
            "latency_gamma_ms": float(lg.detach()),
            "latency_full_ms": float(full),
        }

    def __call__(self, a: ArchSet) -> tuple[torch.Tensor, dict[str, float]]:
        lat, details = self.latency(a)
        loss = self.lam * lat
        details.update(latency_weighted_ms=float(lat.detach()), lam=self.lam, loss=float(loss.detach()))
        return loss.float(), details
