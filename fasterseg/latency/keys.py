"""Latency-table keys: every block instance the supernet (and any network derived from it) can
produce at a deployment resolution, and the blocks of one derived network.

A key is (op, input H, input W, C_in, C_out, stride). Ops: the search operators of the registry (`ops.OPS`: the
paper's five and the CPU-shaped ones), ``conv1x1`` / ``conv3x3`` (conv-BN-ReLU of the stem and the refinement),
``fusion`` (the 1x1 fusion conv) and ``head`` (3x3 conv + 1x1 conv to the classes), and the "glue"
between blocks that a per-block sum would otherwise miss: ``upcat`` (bilinear up-sampling x2 of C_in
channels and concatenation with C_out - C_in finer channels) and ``upsample`` (the final bilinear
up-sampling of the logits by `stride`; ``upsample_bilinear2_nearest4`` and ``upsample_nearest8`` for the other
decision forms). Tables built by the kit price glue (``prices_glue`` in their
metadata); the published 1080Ti table does not, so predictions from it leave glue out, as the original did.
int8 tables add ``qdq`` keys (`boundary_key`): quantising then dequantising a block's input tensor.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from fasterseg.nets.arch import Architecture
from fasterseg.nets.network import shared_prefix, upsample_logits
from fasterseg.nets.ops import OPS, STEMS, ConvBNReLU, Head, build_op, resize
from fasterseg.nets.space import SCALES, SearchSpace

#: the final up-sampling of the logits per decision form (`network.upsample_logits`); "upsample" is the paper's
UPSAMPLE = {"bilinear8": "upsample", "bilinear2_nearest4": "upsample_bilinear2_nearest4",
            "nearest8": "upsample_nearest8"}
BLOCK_OPS = tuple(OPS) + ("conv1x1", "conv3x3", "fusion", "head", "upcat", "qdq") + tuple(UPSAMPLE.values())
GLUE = ("upcat",) + tuple(UPSAMPLE.values())


class UpCat(nn.Module):
    """Bilinear up-sampling x2 of the input, concatenated with a finer feature (held as a buffer)."""

    def __init__(self, c_skip: int, h: int, w: int, interp: str = "bilinear"):
        super().__init__()
        self.register_buffer("skip", torch.zeros(1, c_skip, 2 * h, 2 * w))
        self.interp = interp

    def forward(self, x):
        return torch.cat([resize(x, self.skip.shape[-2:], self.interp), self.skip], 1)


class Upsample(nn.Module):
    """The logits' final up-sampling by `factor` in one decision form (`network.upsample_logits`)."""

    def __init__(self, factor: int, interp: str = "bilinear", decision: str = "bilinear8"):
        super().__init__()
        self.factor, self.interp, self.decision = factor, interp, decision

    def forward(self, x):
        return upsample_logits(x, (x.shape[-2] * self.factor, x.shape[-1] * self.factor), self.decision, self.interp)


class QuantBoundary(nn.Identity):
    """The quantisation boundary of a (C, H, W) tensor: an int8 backend times it as quantise -> dequantise
    (`nets.onnx.qdq_model`); anything else sees an identity."""


@dataclass(frozen=True, order=True)
class LatencyKey:
    """One block instance: operator, input height and width (pixels), channels in/out, stride."""

    op: str
    h: int
    w: int
    c_in: int
    c_out: int
    stride: int = 1

    def __post_init__(self):
        if self.op not in BLOCK_OPS:
            raise ValueError(f"unknown block {self.op!r}; known: {', '.join(BLOCK_OPS)}")

    def as_tuple(self) -> tuple:
        return astuple(self)

    @property
    def removed(self) -> bool:
        """A stride-1 skip: removed from derived networks, so it costs nothing."""
        return self.op == "skip" and self.stride == 1

    def module(self, interp: str = "bilinear") -> nn.Module:
        """The block as the derived network builds it (for measuring)."""
        if self.op in OPS:
            return build_op(self.op, self.c_in, self.c_out, self.stride, interp=interp)
        if self.op in ("conv1x1", "fusion"):
            return ConvBNReLU(self.c_in, self.c_out, 1, self.stride)
        if self.op == "conv3x3":
            return ConvBNReLU(self.c_in, self.c_out, 3, self.stride)
        if self.op == "upcat":
            return UpCat(self.c_out - self.c_in, self.h, self.w, interp)
        if self.op in UPSAMPLE.values():
            return Upsample(self.stride, interp, next(d for d, o in UPSAMPLE.items() if o == self.op))
        if self.op == "qdq":
            return QuantBoundary()
        return Head(self.c_in, self.c_out)

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.c_in, self.h, self.w)


def boundary_key(key: LatencyKey) -> LatencyKey | None:
    """The quantisation boundary on `key`'s input (a ``qdq`` key), or None where a network has one too: the image
    (3 channels, the stem's first conv) and the logits' up-sampling (which runs in float)."""
    if key.c_in == 3 or key.op in UPSAMPLE.values() or key.op == "qdq" or key.removed:
        return None
    return LatencyKey("qdq", key.h, key.w, key.c_in, key.c_in, 1)


def boundary_keys(keys: Iterable[LatencyKey]) -> list[LatencyKey]:
    """The distinct `boundary_key`s of `keys` (what an int8 table measures besides the blocks)."""
    return sorted({b for b in map(boundary_key, keys) if b is not None})


def _res(height: int, width: int, scale: int) -> tuple[int, int]:
    return height // scale, width // scale


def stem_keys(fch_channels: tuple[int, int, int], height: int, width: int, kind: str = "original") -> list[LatencyKey]:
    """The stem's three stride-2 blocks (`ops.STEMS[kind]`) at `height` x `width`, channels 3 -> c1 -> c2 -> c3."""
    c1, c2, c3 = fch_channels
    o1, o2, o3 = STEMS[kind]
    return [LatencyKey(o1, height, width, 3, c1, 2),
            LatencyKey(o2, height // 2, width // 2, c1, c2, 2),
            LatencyKey(o3, height // 4, width // 4, c2, c3, 2)]


def head_keys(channels: Callable[[int, float], int], head_width: float, ends: Sequence[int], ch16: int,
              ch8: dict[int, int], num_classes: int, height: int, width: int, glue: bool = True,
              decisions: Sequence[str] = ("bilinear8",)) -> list[LatencyKey]:
    """Refinement, fusion and head of a network whose branches end at `ends` (with glue blocks).

    `channels(scale, width)`: the channel rule (`SearchSpace.channels` or `Architecture.channels`);
    `ch16`: channels of the 1/32 branch's last 1/16 features; `ch8`: per branch end, channels of its
    last 1/8 features (what the refinement concatenates)."""
    c8, c16, c32 = (channels(s, head_width) for s in SCALES)
    (h8, w8), (h16, w16), (h32, w32) = (_res(height, width, s) for s in SCALES)
    keys = []
    for e in ends:
        if e == 32:
            keys += [LatencyKey("conv1x1", h32, w32, c32, c16), LatencyKey("conv3x3", h16, w16, c16 + ch16, c16),
                     LatencyKey("conv1x1", h16, w16, c16, c8), LatencyKey("conv3x3", h8, w8, c8 + ch8[e], c8)]
            if glue:
                keys += [
                    LatencyKey("upcat", h32, w32, c16, c16 + ch16, 2),
                    LatencyKey("upcat", h16, w16, c8, c8 + ch8[e], 2),
                ]
        elif e == 16:
            keys += [LatencyKey("conv1x1", h16, w16, c16, c8), LatencyKey("conv3x3", h8, w8, c8 + ch8[e], c8)]
            if glue:
                keys += [LatencyKey("upcat", h16, w16, c8, c8 + ch8[e], 2)]
    nb = len(ends)
    keys += [LatencyKey("fusion", h8, w8, nb * c8, nb * c8), LatencyKey("head", h8, w8, nb * c8, num_classes)]
    if glue:
        keys += [LatencyKey(UPSAMPLE[d], h8, w8, num_classes, num_classes, 8) for d in decisions]
    return keys


def space_keys(
    space: SearchSpace,
    stem_head_widths: Sequence[tuple[float, float]],
    num_classes: int,
    height: int,
    width: int,
    glue: bool = True,
) -> list[LatencyKey]:
    """Every key the supernet's sets and their derived networks can need at `height` x `width`
    (with the up-sampling/concatenation glue blocks unless `glue` is False)."""
    keys: set[LatencyKey] = set()
    stems = {space.stem_channels(sw) for sw, _ in stem_head_widths}
    heads = {hw for _, hw in stem_head_widths}
    for stem in stems:
        for kind in space.stems or (space.stem,):
            keys.update(stem_keys(stem, height, width, kind))
    for s, scale in enumerate(SCALES):
        h, w = _res(height, width, scale)
        c_in = set(space.width_options(scale)) | {space.channels(scale, hw) for hw in heads}
        if s == 0:
            c_in |= {stem[2] for stem in stems}  # a branch whose first cells were removed starts at the stem
        c_out = set(space.width_options(scale)) | {space.channels(scale, hw) for hw in heads}
        c_down = set(space.width_options(2 * scale)) if s < 2 else set()
        for op in space.ops:
            keys.update(LatencyKey(op, h, w, ci, co, 1) for ci in c_in for co in c_out)
            keys.update(LatencyKey(op, h, w, ci, co, 2) for ci in c_in for co in c_down)
    for hw in heads:
        ch8_options = set(space.width_options(8)) | {stem[2] for stem in stems}
        for ch16 in space.width_options(16):
            for ch8 in ch8_options:
                for ends in ((32, 16), (32, 8)):
                    keys.update(head_keys(space.channels, hw, ends, ch16, {32: ch8, 16: ch8, 8: ch8}, num_classes,
                                          height, width, glue, space.decisions))
    return sorted(keys)


@dataclass
class Block:
    """One block of a derived network: its key and where it sits (for per-part breakdowns)."""

    key: LatencyKey
    part: str  # stem | cell | refine | fusion | head
    branch: int | None = None
    index: int | None = None


def network_blocks(arch: Architecture, height: int, width: int, glue: bool = True) -> list[Block]:
    """The blocks a `DerivedNet` of `arch` runs at `height` x `width` (shared cells listed once)."""
    ch = arch.channels
    stem = (2 * ch(2, arch.stem_width), 2 * ch(4, arch.stem_width), ch(8, arch.stem_width))
    blocks = [Block(k, "stem") for k in stem_keys(stem, height, width, arch.stem)]
    br = arch.branches
    n_shared = shared_prefix(br[0], br[1]) if len(br) == 2 else 0
    ch16, ch8 = 0, {}
    for k, b in enumerate(br):
        c_in = stem[2]
        finer = {8: c_in}
        for i, (op, s, w, o) in enumerate(zip(b.ops, b.path, b.widths, b.out_scales())):
            c_out = ch(o, w)
            h, wd = _res(height, width, s)
            if not (k > 0 and i < n_shared):
                blocks.append(Block(LatencyKey(op, h, wd, c_in, c_out, 2 if o > s else 1), "cell", k, i))
            finer[o] = c_out
            c_in = c_out
        ch8[b.ends_at] = finer[8]
        if b.ends_at == 32:
            ch16 = finer[16]
    hk = head_keys(arch.channels, arch.head_width, [b.ends_at for b in br], ch16, ch8, arch.num_classes, height,
                   width, glue, (arch.decision,))
    part = {"fusion": "fusion", "head": "head", **{g: "glue" for g in GLUE}}
    blocks += [Block(k, part.get(k.op, "refine")) for k in hk]
    return blocks


def unique(keys: Iterable[LatencyKey]) -> list[LatencyKey]:
    return sorted(set(keys))
