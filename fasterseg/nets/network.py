"""The derived network: a plain `nn.Module` built from an `Architecture` (only the chosen operators,
real channel counts), for training, export and latency measurement.

Structure (docs/method.md, "Head"): stem -> two branches of cells (sharing their first cells where they
agree) -> each branch refined back to 1/8 (1x1 conv, up x2, concat with the branch's own finer
features, 3x3 conv) -> concat -> fusion 1x1 conv-BN-ReLU -> head (3x3 conv + 1x1 conv) at 1/8 ->
bilinear x8 (in eval mode, the architecture's `decision` form: `upsample_logits`). With ``aux=True`` it also
returns the auxiliary predictions from the 1/16 and 1/32 features used as training losses.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fasterseg.config_checks import DECISIONS as DECISION_NAMES
from fasterseg.nets.arch import Architecture, Branch
from fasterseg.nets.ops import ConvBNReLU, Head, Stem, build_op, resize
from fasterseg.nets.space import SCALES


DECISIONS = ("bilinear8", "bilinear2_nearest4", "nearest8")
assert DECISIONS == DECISION_NAMES


def upsample_logits(logits: torch.Tensor, size: tuple[int, int], decision: str = "bilinear8",
                    interp: str = "bilinear") -> torch.Tensor:
    """The 1/8 logits at full resolution `size`: ``bilinear8`` (bilinear x8, the paper's), ``bilinear2_nearest4``
    (bilinear x2, then nearest x4) or ``nearest8`` (nearest x8, which gives the class map of the 1/8 logits up-sampled
    by nearest neighbour). `interp` = ``nearest`` makes every step nearest (the original's latency copy)."""
    if decision == "bilinear8":
        return resize(logits, size, interp)
    if decision == "bilinear2_nearest4":
        h, w = logits.shape[-2:]
        return resize(resize(logits, (2 * h, 2 * w), interp), size, "nearest")
    if decision == "nearest8":
        return resize(logits, size, "nearest")
    raise ValueError(f"unknown decision form {decision!r}; choose one of {', '.join(DECISIONS)}")


def shared_prefix(a: Branch, b: Branch) -> int:
    """Number of leading cells two branches share (same operator, scales and width; never a last cell)."""
    n = 0
    while (n < len(a.ops) - 1 and n < len(b.ops) - 1 and a.ops[n] == b.ops[n] and a.path[n + 1] == b.path[n + 1]
           and abs(a.widths[n] - b.widths[n]) < 1e-9):
        n += 1
    return n


class DerivedNet(nn.Module):
    """Inference/training network of an `Architecture`.

    `forward(x)` -> logits (N, classes, H, W); `forward(x, aux=True)` -> (logits, aux16, aux32) with the
    auxiliary logits up-sampled to the input too (None where a branch is missing). `interp` is the
    resizing mode of operators and heads (``bilinear``, as trained; ``nearest`` for latency copies).
    """

    def __init__(self, arch: Architecture, interp: str = "bilinear", aux: bool = True):
        super().__init__()
        arch.validate()
        self.arch = arch
        self.interp = interp
        if len(arch.branches) > 2:
            raise ValueError("derived networks have one or two branches")
        ch = arch.channels
        self.stem = Stem(2 * ch(2, arch.stem_width), 2 * ch(4, arch.stem_width), ch(8, arch.stem_width), kind=arch.stem)
        br = arch.branches
        self.n_shared = shared_prefix(br[0], br[1]) if len(br) == 2 else 0
        self.branch_cells = nn.ModuleList()
        self.finer = []  # per branch: channels of its last 1/8 and 1/16 features
        for k, b in enumerate(br):
            cells = nn.ModuleList()
            c_in = ch(8, arch.stem_width)
            finer = {8: c_in}
            for i, (op, s, w, o) in enumerate(zip(b.ops, b.path, b.widths, b.out_scales())):
                c_out = ch(o, w)
                if k > 0 and i < self.n_shared:
                    cells.append(self.branch_cells[0][i])  # the same module: computed once
                else:
                    cells.append(build_op(op, c_in, c_out, 2 if o > s else 1, interp=interp))
                finer[o] = c_out
                c_in = c_out
            self.branch_cells.append(cells)
            self.finer.append(finer)
        hw = arch.head_width
        c8, c16, c32 = (ch(s, hw) for s in SCALES)
        self.refine = nn.ModuleList()
        for b, finer in zip(br, self.finer):
            if b.ends_at == 32:
                self.refine.append(nn.ModuleDict({
                    "arm32": ConvBNReLU(c32, c16, 1), "ref32": ConvBNReLU(c16 + finer[16], c16, 3),
                    "arm16": ConvBNReLU(c16, c8, 1), "ref16": ConvBNReLU(c8 + finer[8], c8, 3)}))
            elif b.ends_at == 16:
                self.refine.append(nn.ModuleDict({"arm16": ConvBNReLU(c16, c8, 1),
                                                  "ref16": ConvBNReLU(c8 + finer[8], c8, 3)}))
            else:
                self.refine.append(nn.ModuleDict())
        nb = len(br)
        self.ffm = ConvBNReLU(nb * c8, nb * c8, 1)
        self.head = Head(nb * c8, arch.num_classes)
        self.aux = aux
        if aux:
            ends = [b.ends_at for b in br]
            c_aux16 = sum(f[16] for b, f in zip(br, self.finer) if b.ends_at == 32) + (c16 if 16 in ends else 0)
            self.head32 = Head(c32, arch.num_classes) if 32 in ends else None
            self.head16 = Head(c_aux16, arch.num_classes) if c_aux16 else None

    def _run_branches(self, x: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        """Last feature map at each scale, per branch (shared cells computed once)."""
        stem = self.stem(x)
        feats, shared_out = [], {}
        for k, cells in enumerate(self.branch_cells):
            f = {8: stem}
            y = stem
            for i, cell in enumerate(cells):
                if k > 0 and i < self.n_shared:
                    y = shared_out[i]
                else:
                    y = cell(y)
                    if k == 0 and i < self.n_shared:
                        shared_out[i] = y
                f[self.arch.branches[k].out_scales()[i]] = y
            feats.append(f)
        return feats

    def forward(self, x: torch.Tensor, aux: bool = False):
        H, W = x.shape[-2:]
        feats, logits = self._features_and_logits(x)
        logits = upsample_logits(logits, (H, W), "bilinear8" if self.training else self.arch.decision, self.interp)
        if not aux:
            return logits
        return (logits,) + self._aux_logits(feats, (H, W))

    def low_res_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits at 1/8 (N, classes, H/8, W/8), before the class decision's up-sampling."""
        return self._features_and_logits(x)[1]

    def _features_and_logits(self, x: torch.Tensor):
        H, W = x.shape[-2:]
        if H % 32 or W % 32:
            raise ValueError(f"input {H}x{W}: H and W must be multiples of 32 (pad or resize)")
        feats = self._run_branches(x)
        outs = []
        for b, f, r in zip(self.arch.branches, feats, self.refine):
            if b.ends_at == 32:
                y = r["arm32"](f[32])
                y = r["ref32"](torch.cat([resize(y, f[16].shape[-2:], self.interp), f[16]], 1))
                y = r["arm16"](y)
                y = r["ref16"](torch.cat([resize(y, f[8].shape[-2:], self.interp), f[8]], 1))
            elif b.ends_at == 16:
                y = r["arm16"](f[16])
                y = r["ref16"](torch.cat([resize(y, f[8].shape[-2:], self.interp), f[8]], 1))
            else:
                y = f[8]
            outs.append(y)
        return feats, self.head(self.ffm(torch.cat(outs, 1)))

    def _aux_logits(self, feats, size: tuple[int, int]):
        H, W = size
        if not self.aux:
            raise ValueError("this network was built without auxiliary heads (aux=False)")
        a16 = a32 = None
        f16 = [f[16] for b, f in zip(self.arch.branches, feats) if b.ends_at == 32]
        f16 += [f[16] for b, f in zip(self.arch.branches, feats) if b.ends_at == 16]
        if self.head16 is not None:
            a16 = resize(self.head16(torch.cat(f16, 1)), (H, W), self.interp)
        if self.head32 is not None:
            f32 = [f[32] for b, f in zip(self.arch.branches, feats) if b.ends_at == 32][0]
            a32 = resize(self.head32(f32), (H, W), self.interp)
        return a16, a32
