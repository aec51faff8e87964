"""The FasterSeg supernet: shared slimmable weights, any number of architecture-parameter sets.

Each architecture set (teacher, student, ...) has its own alpha/beta/gamma (`ArchSet`), stem and head
(stem/head widths differ: teacher 1, student 8/12); the cells' weights are shared by all sets.
`Supernet.forward(x, arch_set=i, widths=mode)` runs set i and returns the head's five candidate
predictions at 1/8 resolution: ``8``, ``16``, ``32``, ``8+32``, ``16+32``.

Width modes: ``max``, ``min``, ``random`` (uniform per tensor), ``sampled`` (straight-through hard
Gumbel-softmax over gamma; sets that do not search widths use ``max``), ``argmax`` (the most likely
width, no noise: for evaluation). As in the original, a cell's
output is multiplied by the sampled one-hot values of its input and output widths (1 in value,
carrying gamma's gradient).

One deliberate difference from the original code: a node with two inputs takes the beta-weighted
sum of its *inputs* and applies its operators once (docs/method.md); the original applied the cell to
each input and mixed the outputs, which doubles the cost (docs/method.md).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fasterseg.nets.ops import PRIMITIVES, ConvBNReLU, Head, Stem, build_op, resize
from fasterseg.nets.space import SCALES, SearchSpace

PREDICTIONS = ("8", "16", "32", "8+32", "16+32")
WIDTH_MODES = ("max", "min", "random", "sampled", "argmax")


class ArchSet(nn.Module):
    """One architecture set: alpha (operators), beta (paths), gamma (widths), as logits.

    Initialised to 1e-3 everywhere (uniform after softmax), as the original.
    """

    def __init__(self, space: SearchSpace, search_widths: bool = True, name: str = "arch_set"):
        super().__init__()
        self.name = name
        self.search_widths = search_widths
        self.width_ratios = tuple(space.width_ratios) if search_widths else (max(space.width_ratios),)
        nw = len(self.width_ratios)
        for s in range(3):
            setattr(self, f"alpha_{s}", nn.Parameter(1e-3 * torch.ones(space.alpha_shape(s))))
            setattr(self, f"gamma_{s}", nn.Parameter(1e-3 * torch.ones(space.gamma_shape(s, nw))))
        for s in (1, 2):
            setattr(self, f"beta_{s}", nn.Parameter(1e-3 * torch.ones(space.beta_shape(s))))
        self.stem_kinds = tuple(space.stems)
        if self.stem_kinds:  # the stem searched: logits over its kinds
            self.stem = nn.Parameter(1e-3 * torch.ones(len(self.stem_kinds)))

    def alpha(self, s: int) -> nn.Parameter:
        return getattr(self, f"alpha_{s}")

    def beta(self, s: int) -> nn.Parameter:
        return getattr(self, f"beta_{s}")

    def gamma(self, s: int) -> nn.Parameter:
        return getattr(self, f"gamma_{s}")

    def by_kind(self) -> dict[str, list[nn.Parameter]]:
        """{"alpha": [...], "beta": [...], "gamma": [...]}: the decoupled penalty needs them apart. A searched
        stem's logits go with beta: like the paths, the stem is a macro-architectural choice, and most of a
        network's time (priced with alpha's rate, 1/500, its latency would barely count)."""
        beta = [self.beta(1), self.beta(2)] + ([self.stem] if self.stem_kinds else [])
        return {"alpha": [self.alpha(s) for s in range(3)], "beta": beta, "gamma": [self.gamma(s) for s in range(3)]}

    @torch.no_grad()
    def probabilities(self) -> dict[str, np.ndarray]:
        """Softmax of every parameter tensor, keyed ``alpha_0`` ... ``gamma_2`` (numpy float64)."""
        return {n: F.softmax(p.double(), -1).cpu().numpy() for n, p in self.named_parameters()}

    def state(self) -> dict[str, torch.Tensor]:
        """Logits as plain tensors (for JSON/CSV export and checkpoints)."""
        return {n: p.detach().clone() for n, p in self.named_parameters()}


def gumbel_softmax_hard(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through hard Gumbel-softmax over the last dim: one-hot forward, softmax gradient."""
    # drawn on the CPU generator (seeded, checkpointed) and moved: the same noise on every device
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
    g = -torch.log(-torch.log(u + 1e-20) + 1e-20)
    y = F.softmax(logits + g, -1)
    hard = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)
    return (hard - y).detach() + y


class MixedOp(nn.Module):
    """All of the space's operators at one node: the alpha-weighted sum of their outputs."""

    def __init__(self, c_in: int, c_out: int, stride: int, out_options: Sequence[int],
                 ops: Sequence[str] = PRIMITIVES, in_options: Sequence[int] | None = None):
        super().__init__()
        self.ops = nn.ModuleList(build_op(name, c_in, c_out, stride, out_options, in_options=in_options)
                                 for name in ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, c_out: int) -> torch.Tensor:
        out = 0
        for w, op in zip(weights, self.ops):
            out = out + w * op(x, c_out)
        return out


class MixedStem(nn.Module):
    """The searched stem of one set: every kind of `kinds` (`ops.STEMS`), their outputs weighted by the softmax of
    the set's stem logits."""

    def __init__(self, kinds: Sequence[str], c1: int, c2: int, c3: int):
        super().__init__()
        self.kinds = tuple(kinds)
        self.stems = nn.ModuleList(Stem(c1, c2, c3, kind=k) for k in kinds)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = 0
        for w, stem in zip(weights, self.stems):
            out = out + w * stem(x)
        return out


class SupernetCell(nn.Module):
    """Node (layer, scale): a same-scale mixed op and, where allowed, a stride-2 one (channels x2);
    both use the node's alpha."""

    def __init__(self, space: SearchSpace, s: int, down: bool):
        super().__init__()
        c = space.channels(SCALES[s])
        ins = space.width_options(SCALES[s])
        self.same = MixedOp(c, c, 1, ins, space.ops, ins)
        self.down = MixedOp(c, 2 * c, 2, space.width_options(SCALES[s + 1]), space.ops, ins) if down else None


class SupernetHead(nn.Module):
    """Refines the last layer's 1/8, 1/16, 1/32 outputs into five predictions at 1/8."""

    def __init__(self, space: SearchSpace, head_width: float, num_classes: int):
        super().__init__()
        c8, c16, c32 = (space.channels(s, head_width) for s in SCALES)
        self.arm16 = ConvBNReLU(c16, c8, 1)
        self.refine16 = ConvBNReLU(2 * c8, c8, 3)
        self.arm32a = ConvBNReLU(c32, c16, 1)
        self.refine32a = ConvBNReLU(2 * c16, c16, 3)
        self.arm32b = ConvBNReLU(c16, c8, 1)
        self.refine32b = ConvBNReLU(2 * c8, c8, 3)
        self.heads = nn.ModuleDict({"8": Head(c8, num_classes), "16": Head(c8, num_classes),
                                    "32": Head(c8, num_classes), "8+32": Head(2 * c8, num_classes),
                                    "16+32": Head(2 * c8, num_classes)})

    def forward(self, f8, f16, f32) -> dict[str, torch.Tensor]:
        size8, size16 = f8.shape[-2:], f16.shape[-2:]
        r16 = self.refine16(torch.cat([resize(self.arm16(f16), size8), f8], 1))
        r32 = self.refine32a(torch.cat([resize(self.arm32a(f32), size16), f16], 1))
        r32 = self.refine32b(torch.cat([resize(self.arm32b(r32), size8), f8], 1))
        h = self.heads
        return {"8": h["8"](f8), "16": h["16"](r16), "32": h["32"](r32),
                "8+32": h["8+32"](torch.cat([f8, r32], 1)), "16+32": h["16+32"](torch.cat([r16, r32], 1))}


class Supernet(nn.Module):
    """The multi-resolution supernet with `len(stem_head_widths)` architecture-parameter sets.

    Args:
        space: the geometry (layers, F, width ratios).
        num_classes: output classes.
        stem_head_widths: (stem width, head width) per set; default teacher (1, 1), student (8/12, 8/12).
        search_widths: per set, whether gamma is searched (default: all but the first set).
        names: per set (default ``teacher``, ``student``, ``arch2``, ...).
    """

    def __init__(self, space: SearchSpace, num_classes: int = 19,
                 stem_head_widths: Sequence[tuple[float, float]] = ((1.0, 1.0), (8 / 12, 8 / 12)),
                 search_widths: Sequence[bool] | None = None, names: Sequence[str] | None = None):
        super().__init__()
        n = len(stem_head_widths)
        search_widths = list(search_widths) if search_widths is not None else [i > 0 for i in range(n)]
        default_names = ["teacher", "student"] + [f"set{i}" for i in range(2, n)]
        names = list(names) if names is not None else default_names[:n]
        for sw, hw in stem_head_widths:
            for w in (sw, hw):
                if not any(abs(w - r) < 1e-6 for r in space.width_ratios):
                    raise ValueError(f"stem/head width {w} is not one of the width ratios {space.width_ratios}")
        self.space = space
        self.num_classes = num_classes
        self.stem_head_widths = [tuple(map(float, x)) for x in stem_head_widths]
        self.arch_sets = nn.ModuleList(ArchSet(space, sw, nm) for sw, nm in zip(search_widths, names))
        self.stems = nn.ModuleList(
            MixedStem(space.stems, *space.stem_channels(sw)) if space.stems else
            Stem(*space.stem_channels(sw), kind=space.stem) for sw, _ in self.stem_head_widths)
        self.cells = nn.ModuleList(
            nn.ModuleList(SupernetCell(space, s, space.has_down(l, s)) for s in space.scales_at(l))
            for l in range(space.layers))
        self.heads = nn.ModuleList(SupernetHead(space, hw, num_classes) for _, hw in self.stem_head_widths)
        self.generator: torch.Generator | None = None  # for Gumbel noise and random widths; None = global RNG

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.arch_sets]

    # -- parameter groups (two optimisers use them) --------------------------------------------
    def arch_parameters(self, i: int | None = None) -> list[nn.Parameter]:
        """Architecture parameters of set i (all sets when None)."""
        sets = self.arch_sets if i is None else [self.arch_sets[i]]
        return [p for a in sets for p in a.parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch_ids]

    # -- widths ---------------------------------------------------------------------------------
    def sample_widths(self, i: int, mode: str = "sampled") -> dict[tuple[int, int], tuple[int, torch.Tensor | float]]:
        """Channels and straight-through score of every searched tensor T(layer, s) of set i."""
        if mode not in WIDTH_MODES:
            raise ValueError(f"width mode {mode!r}; choose one of {WIDTH_MODES}")
        sp, a = self.space, self.arch_sets[i]
        ratios = sp.width_ratios
        out = {}
        for s in range(3):
            rows = sp.gamma_shape(s, 1)[0]
            if mode == "sampled" and a.search_widths:
                onehot = gumbel_softmax_hard(F.log_softmax(a.gamma(s), -1), self.generator)
                idx = onehot.argmax(-1).tolist()
            elif mode == "random":
                idx = torch.randint(len(ratios), (rows,), generator=self.generator).tolist()
                onehot = None
            elif mode == "argmax" and a.search_widths:
                idx = a.gamma(s).argmax(-1).tolist()
                onehot = None
            else:
                idx = [0 if mode == "min" else len(ratios) - 1] * rows
                onehot = None
            for k in range(rows):
                layer = k + sp.gamma_offset(s)
                if onehot is not None:
                    out[(layer, s)] = (sp.channels(SCALES[s], a.width_ratios[idx[k]]), onehot[k, idx[k]])
                else:
                    out[(layer, s)] = (sp.channels(SCALES[s], ratios[idx[k]]), 1.0)
        return out

    # -- forward ---------------------------------------------------------------------------------
    def features(self, x: torch.Tensor, i: int = 0, widths: str = "sampled") -> list[torch.Tensor]:
        """The last layer's outputs at 1/8, 1/16, 1/32 for set i."""
        sp, a = self.space, self.arch_sets[i]
        L = sp.layers
        head_w = self.stem_head_widths[i][1]
        w = self.sample_widths(i, widths)
        stem = self.stems[i](x, F.softmax(a.stem, -1)) if sp.stems else self.stems[i](x)
        prev_same: dict[int, torch.Tensor] = {0: stem}
        prev_down: dict[int, torch.Tensor] = {}
        for l in range(L):
            same, down = {}, {}
            for s in sp.scales_at(l):
                cell = self.cells[l][s]
                if l == 0:
                    inp, in_score = stem, 1.0
                else:
                    in_score = w[(l - 1, s)][1]
                    if s == 0:
                        inp = prev_same[0]
                    elif l == s:
                        inp = prev_down[s]
                    else:
                        b = F.softmax(a.beta(s)[sp.beta_row(l, s)], -1)
                        inp = b[0] * prev_down[s] + b[1] * prev_same[s]
                alpha = F.softmax(a.alpha(s)[sp.alpha_row(l, s)], -1)
                if l == L - 1:
                    c_out, out_score = sp.channels(SCALES[s], head_w), 1.0
                else:
                    c_out, out_score = w[(l, s)]
                same[s] = cell.same(inp, alpha, c_out) * (in_score * out_score)
                if cell.down is not None:
                    c_down, down_score = w[(l, s + 1)]
                    down[s + 1] = cell.down(inp, alpha, c_down) * (in_score * down_score)
            prev_same, prev_down = same, down
        return [prev_same[0], prev_same[1], prev_same[2]]

    def forward(self, x: torch.Tensor, arch_set: int = 0, widths: str = "sampled") -> dict[str, torch.Tensor]:
        """Five candidate predictions (N, classes, H/8, W/8) of architecture set `arch_set`.
        H, W: multiples of 32."""
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"input {tuple(x.shape[-2:])}: H and W must be multiples of 32 (pad or resize)")
        if min(x.shape[-2:]) < 64:
            raise ValueError(f"input {tuple(x.shape[-2:])}: H and W must be at least 64 (zoomed operators halve "
                             "the 1/32 features once more); use larger crops")
        return self.heads[arch_set](*self.features(x, arch_set, widths))
