"""Operators of the FasterSeg search space and the slimmable layers they are built from.

Five candidate operators (names; the original's in brackets), each with a stride-1 and a stride-2 form;
"conv" below means conv -> BN -> ReLU:

- ``skip`` [skip]: stride 1: 1x1 conv-BN-ReLU in the slimmable supernet (it must adapt widths), the
  identity in a derived network when channels match; stride 2: factorized reduce (two 1x1 stride-2
  convs, the second on the input shifted by one pixel, concatenated, BN, ReLU).
- ``conv`` [conv]: one 3x3 conv.
- ``zoomed_conv`` [conv_downup]: bilinear down x2 -> 3x3 conv-BN -> bilinear up x2 -> ReLU
  (at stride 2 the up-sampling is dropped): the receptive field of a 3x3 conv doubles for a quarter
  of its multiply-adds.
- ``conv_2x`` [conv_2x]: two 3x3 convs.
- ``zoomed_conv_2x`` [conv_2x_downup]: the zoomed form with two 3x3 convs.

`PRIMITIVES` keeps the original index order, so operator indices in the published architecture
files mean the same here. One list of names serves LUT keys, alpha columns, JSON and plot labels.

Slimmable layers hold the widest weights and run with the first k channels: `SlimConv2d` slices its
weight to the input's channel count and the requested output count; `SlimBatchNorm2d` keeps one
BatchNorm per channel count (switchable BN, as the original), since statistics differ per width.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fasterseg.config_checks import OP_NAMES, STEM_KINDS

PRIMITIVES: tuple[str, ...] = ("skip", "conv", "zoomed_conv", "conv_2x", "zoomed_conv_2x")
#: names used by the original implementation, same order
ORIGINAL_NAMES: tuple[str, ...] = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")
#: operators without weights once derived (identity) or with a zoom (cheap at low resolution)
ZOOMED = ("zoomed_conv", "zoomed_conv_2x")

ALIGN_CORNERS = True  # the original resizes with align_corners=True everywhere


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Bilinear (align_corners=True, as the original) or nearest resizing to (H, W)."""
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)


class SlimConv2d(nn.Conv2d):
    """A conv holding `c_out x c_in` weights that runs on the first channels: input channels from the
    tensor, output channels from `c_out` (default: all)."""

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        c_in = x.shape[1]
        c_out = self.out_channels if c_out is None else c_out
        if c_in > self.in_channels or c_out > self.out_channels:
            raise ValueError(f"slimmable conv holds {self.in_channels}->{self.out_channels} channels, "
                             f"asked for {c_in}->{c_out}")
        if c_in == self.in_channels and c_out == self.out_channels:
            w, b = self.weight, self.bias
        else:
            w = self.weight[:c_out, :c_in]
            b = None if self.bias is None else self.bias[:c_out]
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)


class SlimBatchNorm2d(nn.Module):
    """Switchable batch norm: one `nn.BatchNorm2d` per allowed channel count, chosen by the input."""

    def __init__(self, channel_options: Sequence[int]):
        super().__init__()
        self.options = sorted(set(int(c) for c in channel_options))
        self.bns = nn.ModuleDict({str(c): nn.BatchNorm2d(c) for c in self.options})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = str(x.shape[1])
        if key not in self.bns:
            raise ValueError(f"no batch norm for {x.shape[1]} channels; allowed widths: {self.options}")
        return self.bns[key](x)


class ConvBN(nn.Module):
    """Conv (k x k, stride) -> BN, slimmable when `out_options` (allowed output channel counts) is given."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1,
                 out_options: Sequence[int] | None = None):
        super().__init__()
        pad = k // 2
        if out_options is None:
            self.conv = nn.Conv2d(c_in, c_out, k, stride, pad, bias=False)
            self.bn = nn.BatchNorm2d(c_out)
        else:
            self.conv = SlimConv2d(c_in, c_out, k, stride, pad, bias=False)
            self.bn = SlimBatchNorm2d(out_options)
        self.slim = out_options is not None

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:
        y = self.conv(x, c_out) if self.slim else self.conv(x)
        return self.bn(y)


class Op(nn.Module):
    """Base of the five operators: `forward(x, c_out=None)`; `c_out` picks the width when slimmable."""

    name = ""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, out_options: Sequence[int] | None = None,
                 interp: str = "bilinear"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, not {stride}")
        self.c_in, self.c_out, self.stride, self.interp = c_in, c_out, stride, interp


class Conv(Op):
    """``conv``: 3x3 conv-BN-ReLU (stride 1 or 2)."""

    name = "conv"

    def __init__(self, c_in, c_out, stride=1, out_options=None, interp="bilinear"):
        super().__init__(c_in, c_out, stride, out_options, interp)
        self.cb = ConvBN(c_in, c_out, 3, stride, out_options)

    def forward(self, x, c_out=None):
        return F.relu(self.cb(x, c_out))


class Conv2x(Op):
    """``conv_2x``: two 3x3 conv-BN-ReLU (the first carries the stride)."""

    name = "conv_2x"

    def __init__(self, c_in, c_out, stride=1, out_options=None, interp="bilinear"):
        super().__init__(c_in, c_out, stride, out_options, interp)
        self.cb1 = ConvBN(c_in, c_out, 3, stride, out_options)
        self.cb2 = ConvBN(c_out, c_out, 3, 1, out_options)

    def forward(self, x, c_out=None):
        return F.relu(self.cb2(F.relu(self.cb1(x, c_out)), c_out))


class ZoomedConv(Op):
    """``zoomed_conv``: down x2 -> 3x3 conv-BN -> up x2 (stride 1 only) -> ReLU."""

    name = "zoomed_conv"
    n_convs = 1

    def __init__(self, c_in, c_out, stride=1, out_options=None, interp="bilinear"):
        super().__init__(c_in, c_out, stride, out_options, interp)
        self.cbs = nn.ModuleList([ConvBN(c_in if i == 0 else c_out, c_out, 3, 1, out_options)
                                  for i in range(self.n_convs)])

    def forward(self, x, c_out=None):
        h, w = x.shape[-2:]
        y = resize(x, (h // 2, w // 2), self.interp)
        for i, cb in enumerate(self.cbs):
            y = cb(y, c_out)
            if i < len(self.cbs) - 1:
                y = F.relu(y)
        if self.stride == 1:
            y = resize(y, (h, w), self.interp)
        return F.relu(y)


class ZoomedConv2x(ZoomedConv):
    """``zoomed_conv_2x``: down x2 -> two 3x3 convs -> up x2 (stride 1 only) -> ReLU."""

    name = "zoomed_conv_2x"
    n_convs = 2


class Skip(Op):
    """``skip``: stride 1 -> identity (derived, equal widths) or 1x1 conv-BN-ReLU (slimmable / width
    change); stride 2 -> factorized reduce."""

    name = "skip"

    def __init__(self, c_in, c_out, stride=1, out_options=None, interp="bilinear"):
        super().__init__(c_in, c_out, stride, out_options, interp)
        slim = out_options is not None
        Conv = SlimConv2d if slim else nn.Conv2d
        self.identity = stride == 1 and not slim and c_in == c_out
        if self.identity:
            return
        if stride == 1:
            self.conv = Conv(c_in, c_out, 1, 1, 0, bias=False)
        else:
            self.conv1 = Conv(c_in, c_out - c_out // 2, 1, 2, 0, bias=False)
            self.conv2 = Conv(c_in, c_out // 2, 1, 2, 0, bias=False)
        self.bn = SlimBatchNorm2d(out_options) if slim else nn.BatchNorm2d(c_out)
        self.slim = slim

    def forward(self, x, c_out=None):
        if self.identity:
            return x
        if self.stride == 1:
            y = self.conv(x, c_out) if self.slim else self.conv(x)
        else:
            c = self.c_out if c_out is None else c_out
            shifted = x[:, :, 1:, 1:]
            if self.slim:
                y = torch.cat([self.conv1(x, c - c // 2), self.conv2(shifted, c // 2)], 1)
            else:
                y = torch.cat([self.conv1(x), self.conv2(shifted)], 1)
        return F.relu(self.bn(y))


class SlimDepthwise(nn.Conv2d):
    """A depthwise k x k conv holding the widest channel count, run on the input's first channels."""

    def __init__(self, channels: int, k: int = 3, stride: int = 1):
        super().__init__(channels, channels, k, stride, k // 2, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        if c > self.in_channels:
            raise ValueError(f"slimmable depthwise conv holds {self.in_channels} channels, asked for {c}")
        w = self.weight if c == self.in_channels else self.weight[:c]
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, c)


class DWBN(nn.Module):
    """Depthwise k x k conv -> BN (slimmable: one BN per allowed input channel count, `options`)."""

    def __init__(self, channels: int, k: int, stride: int, options: Sequence[int] | None):
        super().__init__()
        self.slim = options is not None
        self.conv = SlimDepthwise(channels, k, stride) if self.slim else nn.Conv2d(
            channels, channels, k, stride, k // 2, groups=channels, bias=False)
        self.bn = SlimBatchNorm2d(options) if self.slim else nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class DWSep(Op):
    """``dwsep``: depthwise 3x3 conv-BN-ReLU (carrying the stride) then pointwise 1x1 conv-BN-ReLU: about
    (9 + C_out) / (9 C_out) of a 3x3 conv's multiply-adds, the MobileNet block a CPU runs well."""

    name = "dwsep"

    def __init__(self, c_in, c_out, stride=1, out_options=None, interp="bilinear", in_options=None):
        super().__init__(c_in, c_out, stride, out_options, interp)
        slim = out_options is not None
        self.dw = DWBN(c_in, 3, stride, (in_options or [c_in]) if slim else None)
        self.pw = ConvBN(c_in, c_out, 1, 1, out_options)

    def forward(self, x, c_out=None):
        return F.relu(self.pw(F.relu(self.dw(x)), c_out))


class InvertedResidual(Op):
    """``ir_e3`` / ``ir_e6``: MobileNetV2's inverted residual with expansion t: 1x1 conv-BN-ReLU to t C_in
    channels, depthwise 3x3 conv-BN-ReLU (carrying the stride), 1x1 conv-BN to C_out (linear), plus the input where
    stride 1 and C_in = C_out."""

    expansion = 6

    def __init__(self, c_in, c_out, stride=1, out_options=None, interp="bilinear", in_options=None):
        super().__init__(c_in, c_out, stride, out_options, interp)
        t = self.expansion
        slim = out_options is not None
        hidden_options = [t * c for c in (in_options or [c_in])] if slim else None
        self.expand = ConvBN(c_in, t * c_in, 1, 1, hidden_options)
        self.dw = DWBN(t * c_in, 3, stride, hidden_options)
        self.project = ConvBN(t * c_in, c_out, 1, 1, out_options)

    def forward(self, x, c_out=None):
        hidden = self.expansion * x.shape[1]
        y = F.relu(self.expand(x, hidden) if self.expand.slim else self.expand(x))
        y = self.project(F.relu(self.dw(y)), c_out)
        if self.stride == 1 and y.shape[1] == x.shape[1]:
            y = y + x
        return y


class IRE3(InvertedResidual):
    name = "ir_e3"
    expansion = 3


class IRE6(InvertedResidual):
    name = "ir_e6"
    expansion = 6


#: the operator registry: name -> constructor(c_in, c_out, stride, out_options=None, interp="bilinear"); the paper's
#: five first (`PRIMITIVES`), then the CPU-shaped blocks
OPS: dict[str, type[Op]] = {"skip": Skip, "conv": Conv, "zoomed_conv": ZoomedConv, "conv_2x": Conv2x,
                            "zoomed_conv_2x": ZoomedConv2x, "dwsep": DWSep, "ir_e3": IRE3, "ir_e6": IRE6}
assert tuple(OPS)[:5] == PRIMITIVES and tuple(OPS) == OP_NAMES


def build_op(name: str, c_in: int, c_out: int, stride: int = 1, out_options: Sequence[int] | None = None,
             interp: str = "bilinear", in_options: Sequence[int] | None = None) -> Op:
    """Construct operator `name` (one of `OPS`). Slimmable when `out_options` (allowed output channel counts) is
    given; blocks with a normalisation over their input's channels also need `in_options`."""
    if name not in OPS:
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(OPS)}")
    cls = OPS[name]
    if issubclass(cls, (DWSep, InvertedResidual)):
        return cls(c_in, c_out, stride, out_options, interp, in_options)
    return cls(c_in, c_out, stride, out_options, interp)


class ConvBNReLU(nn.Module):
    """Fixed-width conv-BN-ReLU used by the stem and the heads."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.cb = ConvBN(c_in, c_out, k, stride)

    def forward(self, x):
        return F.relu(self.cb(x))


# The stem's three stride-2 stages per kind, as latency-table operators: "original" is the paper's (a 3x3
# conv-BN-ReLU, then two `conv_2x` blocks), "light" keeps one 3x3 conv-BN-ReLU per stage, "dwsep" follows the first
# conv with two depthwise-separable stages.
STEMS = {"original": ("conv3x3", "conv_2x", "conv_2x"), "light": ("conv3x3", "conv", "conv"),
         "dwsep": ("conv3x3", "dwsep", "dwsep")}
assert tuple(STEMS) == STEM_KINDS


class Stem(nn.Module):
    """Three stride-2 stages to 1/8, channels 3 -> c1 -> c2 -> c3 (teacher at F=12: 48, 96, 96). `kind`
    (`STEMS`): the original's 3x3 conv-BN-ReLU then two `conv_2x` blocks, three single 3x3 conv-BN-ReLU stages
    ("light"), or a 3x3 conv-BN-ReLU then two depthwise-separable blocks ("dwsep")."""

    def __init__(self, c1: int, c2: int, c3: int, kind: str = "original"):
        super().__init__()
        if kind not in STEMS:
            raise ValueError(f"stem {kind!r}: choose one of {', '.join(STEMS)}")
        block = {"original": Conv2x, "light": Conv, "dwsep": DWSep}[kind]
        self.conv = ConvBNReLU(3, c1, 3, 2)
        self.block1 = block(c1, c2, 2)
        self.block2 = block(c2, c3, 2)
        self.kind = kind
        self.out_channels = c3

    def forward(self, x):
        return self.block2(self.block1(self.conv(x)))


class Head(nn.Module):
    """Prediction head: 3x3 conv-BN-ReLU (to C_in channels, C_in/2 above 256) then 1x1 conv to classes."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        mid = c_in if c_in <= 256 else c_in // 2
        self.conv = ConvBNReLU(c_in, mid, 3, 1)
        self.cls = nn.Conv2d(mid, num_classes, 1)

    def forward(self, x):
        return self.cls(self.conv(x))


def kaiming_init(model: nn.Module, mode: str = "fan_in") -> None:
    """Kaiming-normal (ReLU) convolutions with zero biases, batch norms at weight 1 and bias 0: `mode` ``fan_in`` as
    the original FasterSeg initialises its networks, ``fan_out`` as torchvision's MobileNets (the peers)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
