"""Hand-designed real-time segmentation networks ("peers") to train and count next to the derived nets.

Each is rebuilt in plain PyTorch from its paper's description (no pretrained weights):

* **Fast-SCNN** (Poudel et al., BMVC 2019): a shared "learning to downsample" stem (conv + two
  depthwise-separable convs, 1/8, 64 ch) feeds both a thin 1/8 skip and a MobileNetV2-style global
  feature extractor (bottlenecks to 1/32, 128 ch, pyramid pooling); a feature fusion module adds the
  two and a light classifier predicts at 1/8.
* **LR-ASPP / MobileNetV3-Large** (Howard et al., ICCV 2019, Sec. 6.4): the MobileNetV3-Large
  backbone at output stride 16 (last block dilated by 2, and "RF2": its filters halved), followed by
  the Lite R-ASPP head (128-ch 1x1 conv gated by a global-pooling branch, plus 1/8 skip logits).
* **BiSeNetV2** (Yu et al., IJCV 2021): a wide, shallow detail branch (1/8, 128 ch) and a narrow,
  deep semantic branch (stem, gather-and-expansion layers, context embedding; 1/32, 128 ch), merged
  by bilateral guided aggregation, plus four "booster" heads used only in training.
* **DDRNet-23-slim** (Hong et al., 2021): a ResNet-like trunk that splits at 1/8 into a high-
  resolution branch (1/8, 64 ch) and a low-resolution branch (down to 1/64) exchanging features
  through bilateral fusions, with the DAPPM context module on the coarsest features.

Reference figures from the papers next to ours (``fasterseg.counting.totals`` at 1x3x1024x2048:
conv + linear MACs; parameters of the inference network, built with ``aux=False``, the papers'
convention; "+aux" is what the training heads add):

===============================  ============  ===================  =============  ======  =====  =====
network                          paper params  paper FLOPs/MAdds    source         ours M  +aux   GMACs
===============================  ============  ===================  =============  ======  =====  =====
Fast-SCNN                        1.11 M        not reported         Table 3        1.14    0.057  6.71
LR-ASPP, MobileNetV3-Large, RF2  1.51 M        9.74 B               Table 7 row 8  1.51    0      9.32
BiSeNetV2                        not reported  21.15 G (512x1024)   Table 8        3.36    0.287  98.4
DDRNet-23-slim                   5.7 M         36.3 G               Table IV       5.70    0.038  36.3
===============================  ============  ===================  =============  ======  =====  =====

BiSeNetV2: ``PAPER`` holds 3.4 M, the figure later comparison tables attribute to it, and 4 x 21.15 =
84.6 GMACs; our MACs are 16 % higher, mostly the 1024-channel head (the paper's Table 1 does not give
the main head's width; 1024 is what public re-implementations use). Table numbers are as recalled
from the papers (the PDFs were not at hand). All outputs are bilinearly up-sampled with
``align_corners=False``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fasterseg.nets.ops import kaiming_init

Act = Callable[[], nn.Module]


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize to `size` (H, W), align_corners=False."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBNAct(nn.Sequential):
    """k x k conv (no bias, 'same' padding for stride 1) -> BN -> activation (none when `act` is None)."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: Act | None = nn.ReLU):
        layers = [nn.Conv2d(c_in, c_out, k, stride, dilation * (k - 1) // 2, dilation, groups, bias=False),
                  nn.BatchNorm2d(c_out)]
        super().__init__(*layers, *([act()] if act is not None else []))


def pre_act_conv(c_in: int, c_out: int, k: int = 1) -> nn.Sequential:
    """BN -> ReLU -> k x k conv (DDRNet's pre-activation style)."""
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False))


def ds_conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Depthwise-separable conv: 3x3 depthwise (stride) -> BN-ReLU -> 1x1 pointwise -> BN-ReLU."""
    return nn.Sequential(ConvBNAct(c_in, c_in, 3, stride, groups=c_in), ConvBNAct(c_in, c_out, 1))


def make_divisible(v: float, d: int = 8) -> int:
    """Round `v` to a multiple of `d` without losing more than 10 % (MobileNet convention)."""
    r = max(d, int(v + d / 2) // d * d)
    return r + d if r < 0.9 * v else r


class SqueezeExcite(nn.Module):
    """Channel gate: global pool -> 1x1 conv to `c_sq` -> ReLU -> 1x1 conv -> hard sigmoid -> scale x."""

    def __init__(self, c: int, c_sq: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c_sq, 1), nn.ReLU(),
                                  nn.Conv2d(c_sq, c, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand to `c_exp` (skipped if c_exp == c_in) -> k x k depthwise
    (stride, dilation) -> optional SE (squeeze to c_exp/4) -> linear 1x1 project to `c_out`;
    identity shortcut when stride 1 and c_in == c_out."""

    def __init__(self, c_in: int, c_exp: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1,
                 se: bool = False, act: Act = nn.ReLU):
        super().__init__()
        layers = [ConvBNAct(c_in, c_exp, 1, act=act)] if c_exp != c_in else []
        layers.append(ConvBNAct(c_exp, c_exp, k, stride, groups=c_exp, dilation=dilation, act=act))
        if se:
            layers.append(SqueezeExcite(c_exp, make_divisible(c_exp / 4)))
        layers.append(ConvBNAct(c_exp, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class SegHead(nn.Sequential):
    """Prediction head: [BN-ReLU if `pre_act`] -> 3x3 conv-BN-ReLU to `c_mid` -> 1x1 conv to classes."""

    def __init__(self, c_in: int, c_mid: int, num_classes: int, pre_act: bool = False):
        pre = [nn.BatchNorm2d(c_in), nn.ReLU()] if pre_act else []
        super().__init__(*pre, ConvBNAct(c_in, c_mid, 3), nn.Conv2d(c_mid, num_classes, 1))


class PeerNet(nn.Module):
    """Common interface: `forward(x, aux=False)` -> logits (N, classes, H, W); with ``aux=True`` ->
    (logits, aux_a, aux_b), auxiliary logits also at (H, W) or None. Subclasses implement
    `_forward(x, aux)` returning the three at their own resolution. Auxiliary heads are modules whose
    attribute name starts with ``aux``; build with ``aux=False`` to leave them out (inference count)."""

    def __init__(self, aux: bool):
        super().__init__()
        self.aux = aux

    def _init_weights(self) -> None:
        kaiming_init(self, "fan_out")

    def forward(self, x: torch.Tensor, aux: bool = False):
        if aux and not self.aux:
            raise ValueError(f"this {type(self).__name__} was built without auxiliary heads (aux=False)")
        outs = self._forward(x, aux)
        outs = tuple(None if o is None else resize(o, x.shape[-2:]) for o in outs)
        return outs if aux else outs[0]


# ----------------------------------------------------------------------------------------- Fast-SCNN
class PyramidPooling(nn.Module):
    """PSPNet pooling: average-pool to bins 1, 2, 3, 6, 1x1 conv to c/4 each, up-sample, concat with
    the input (2c) and fuse by 1x1 conv to `c_out`."""

    def __init__(self, c: int, c_out: int, bins=(1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNAct(c, c // 4, 1)) for b in bins)
        self.fuse = ConvBNAct(2 * c, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([x] + [resize(s(x), x.shape[-2:]) for s in self.stages], 1))


def ir_stage(c_in: int, c_out: int, n: int, stride: int, t: int = 6) -> list[nn.Module]:
    """`n` MobileNetV2 bottlenecks (expansion `t`, ReLU), the first with `stride`."""
    return [InvertedResidual(c, c * t, c_out, stride=stride if i == 0 else 1)
            for i, c in enumerate([c_in] + [c_out] * (n - 1))]


class FastSCNN(PeerNet):
    """Fast-SCNN (Table 1 of the paper). Learning to downsample: 3->32 (1/2) -> 48 (1/4) -> 64 (1/8).
    Global features: bottlenecks 64 (1/16, x3), 96 (1/32, x3), 128 (1/32, x3), pyramid pooling 128.
    Fusion (Table 2): 1/8 skip 1x1 conv 64->128; 1/32 branch up x4, 3x3 depthwise (dilation 4),
    1x1 conv 128; add, ReLU. Classifier: two DSConv 128, 1x1 conv to classes at 1/8.
    Aux heads (training losses on the two module outputs, as in the paper): 3x3 conv 32 + 1x1 on
    the 1/8 learning-to-downsample output (aux_a) and on the 1/32 global features (aux_b)."""

    def __init__(self, num_classes: int = 19, aux: bool = True):
        super().__init__(aux)
        self.downsample = nn.Sequential(ConvBNAct(3, 32, 3, 2), ds_conv(32, 48, 2), ds_conv(48, 64, 2))
        self.features = nn.Sequential(*ir_stage(64, 64, 3, 2), *ir_stage(64, 96, 3, 2), *ir_stage(96, 128, 3, 1),
                                      PyramidPooling(128, 128))
        self.fuse_high = ConvBNAct(64, 128, 1, act=None)
        self.fuse_low = nn.Sequential(ConvBNAct(128, 128, 3, groups=128, dilation=4), ConvBNAct(128, 128, 1, act=None))
        self.classifier = nn.Sequential(ds_conv(128, 128), ds_conv(128, 128), nn.Conv2d(128, num_classes, 1))
        if aux:
            self.aux_a = SegHead(64, 32, num_classes)
            self.aux_b = SegHead(128, 32, num_classes)
        self._init_weights()

    def _forward(self, x: torch.Tensor, aux: bool):
        high = self.downsample(x)                                     # (N, 64, H/8, W/8)
        low = self.features(high)                                     # (N, 128, H/32, W/32)
        fused = F.relu(self.fuse_high(high) + self.fuse_low(resize(low, high.shape[-2:])))
        out = self.classifier(fused)
        return (out, self.aux_a(high), self.aux_b(low)) if aux else (out, None, None)


# ------------------------------------------------------------------------ LR-ASPP, MobileNetV3-Large
# (kernel, expansion, out, SE, h-swish, stride) per bottleneck (paper Table 1). The last three form
# "the last block": for segmentation their stride becomes 1 with dilation 2 (output stride 16) and
# RF2 halves all their filters (out 160 -> 80, expansions 672 -> 336 and 960 -> 480, final 1x1 conv
# 960 -> 480). Halving the first expansion too reproduces the paper's 1.51 M, and, with a 256-ch
# R-ASPP head instead, its rows 6 (1.76 M) and 5 (no RF2: 3.60 M); keeping 672 gives 1.75 M here.
MOBILENETV3_LARGE = [
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 336, 80, True, True, 1), (5, 480, 80, True, True, 1), (5, 480, 80, True, True, 1),
]


class LRASPPMobileNetV3Large(PeerNet):
    """MobileNetV3-Large (stem 3x3 conv 16 h-swish, 15 bottlenecks above, 1x1 conv 80->480 h-swish;
    1/16 features of 480 ch) with the LR-ASPP head: 1x1 conv-BN-ReLU 480->128, multiplied by a
    gate (global average pool -> 1x1 conv 128 -> sigmoid; the paper's 49x49 pooling with stride
    (16, 20) is replaced by global pooling), up-sampled to 1/8 and projected to classes, plus the
    classes projected from the 1/8 features (output of the last 40-ch bottleneck). No aux heads."""

    def __init__(self, num_classes: int = 19, aux: bool = True, width: int = 128):
        super().__init__(aux)
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2, act=nn.Hardswish)]
        c = 16
        for i, (k, exp, out, se, hs, s) in enumerate(MOBILENETV3_LARGE):
            layers.append(InvertedResidual(c, exp, out, k, s, 2 if i >= 12 else 1, se, nn.Hardswish if hs else nn.ReLU))
            c = out
        self.low = nn.Sequential(*layers[:7])                         # (N, 40, H/8, W/8)
        self.high = nn.Sequential(*layers[7:], ConvBNAct(c, 6 * c, 1, act=nn.Hardswish))  # (N, 480, H/16, W/16)
        self.aspp = ConvBNAct(6 * c, width, 1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(6 * c, width, 1), nn.Sigmoid())
        self.cls_high = nn.Conv2d(width, num_classes, 1)
        self.cls_low = nn.Conv2d(40, num_classes, 1)
        self._init_weights()

    def _forward(self, x: torch.Tensor, aux: bool):
        low = self.low(x)
        high = self.high(low)
        y = resize(self.aspp(high) * self.gate(high), low.shape[-2:])
        return self.cls_high(y) + self.cls_low(low), None, None


# ----------------------------------------------------------------------------------------- BiSeNetV2
class StemBlock(nn.Module):
    """Semantic-branch stem (Fig. 4a): 3x3 s2 conv 3->16; [1x1 conv 8, 3x3 s2 conv 16] || 3x3 s2
    max-pool; concat 32 -> 3x3 conv 16. Output (N, 16, H/4, W/4)."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.conv = ConvBNAct(3, c, 3, 2)
        self.left = nn.Sequential(ConvBNAct(c, c // 2, 1), ConvBNAct(c // 2, c, 3, 2))
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNAct(2 * c, c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.pool(x)], 1))


class GatherExpand(nn.Module):
    """Gather-and-expansion layer (Fig. 5b/c), expansion e = 6. Stride 1: 3x3 conv, 3x3 depthwise
    expanding C -> 6C, 1x1 projection, identity shortcut, ReLU. Stride 2: 3x3 conv, 3x3 s2 depthwise
    to 6C, 3x3 depthwise, 1x1 projection to c_out; shortcut 3x3 s2 depthwise + 1x1 conv; ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, e: int = 6):
        super().__init__()
        mid = c_in * e
        layers = [ConvBNAct(c_in, c_in, 3), ConvBNAct(c_in, mid, 3, stride, groups=c_in, act=None)]
        if stride > 1:
            layers.append(ConvBNAct(mid, mid, 3, groups=mid))
        self.body = nn.Sequential(*layers, ConvBNAct(mid, c_out, 1, act=None))
        self.shortcut = (nn.Sequential(ConvBNAct(c_in, c_in, 3, stride, groups=c_in, act=None),
                                       ConvBNAct(c_in, c_out, 1, act=None))
                         if stride > 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """Context embedding (Fig. 4b): global average pool -> BN -> 1x1 conv-BN-ReLU, broadcast-added to
    the input, then 3x3 conv-BN-ReLU. (N, C, h, w) -> (N, C, h, w)."""

    def __init__(self, c: int = 128):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(c), ConvBNAct(c, c, 1))
        self.conv = ConvBNAct(c, c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x + self.gap(x))


class GuidedAggregation(nn.Module):
    """Bilateral guided aggregation (Fig. 6), detail d (1/8) and semantic s (1/32), C channels each:
    d' = dw3x3+1x1(d) * sigmoid(up x4(3x3 conv(s))), s' = (3x3 s2 conv + 3x3 s2 avg-pool)(d) *
    sigmoid(dw3x3+1x1(s)); out = 3x3 conv-BN-ReLU(d' + up x4(s')) at 1/8."""

    def __init__(self, c: int = 128):
        super().__init__()
        self.d_keep = nn.Sequential(ConvBNAct(c, c, 3, groups=c, act=None), nn.Conv2d(c, c, 1, bias=False))
        self.d_down = nn.Sequential(ConvBNAct(c, c, 3, 2, act=None), nn.AvgPool2d(3, 2, 1))
        self.s_keep = nn.Sequential(ConvBNAct(c, c, 3, groups=c, act=None), nn.Conv2d(c, c, 1, bias=False))
        self.s_up = ConvBNAct(c, c, 3, act=None)
        self.out = ConvBNAct(c, c, 3)

    def forward(self, d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        high = self.d_keep(d) * torch.sigmoid(resize(self.s_up(s), d.shape[-2:]))
        low = self.d_down(d) * torch.sigmoid(self.s_keep(s))
        return self.out(high + resize(low, d.shape[-2:]))


class BiSeNetV2(PeerNet):
    """BiSeNetV2 (Table 1 of the paper). Detail branch: 3x3 convs 64 (1/2, x2), 64 (1/4, x3),
    128 (1/8, x3). Semantic branch: stem 16 (1/4), GE 32 (1/8, x2), GE 64 (1/16, x2), GE 128
    (1/32, x4), context embedding. Aggregation -> head (3x3 conv 1024, 1x1 to classes) at 1/8.
    Boosters (3x3 conv 128 + 1x1) on the stem, S3, S4 and S5_4 (before the context embedding)
    outputs; `forward(x, aux=True)` returns the S4 (1/16, aux_a) and S5_4 (1/32, aux_b) boosters,
    the two deepest, mirroring the kit's 1/16 and 1/32 auxiliary losses; `boosters(x)` returns all
    four for the paper's full booster loss."""

    has_unused_heads = True  # four booster heads, of which the kit's two-head loss uses s4 and s5

    def __init__(self, num_classes: int = 19, aux: bool = True, head_width: int = 1024, booster_width: int = 128):
        super().__init__(aux)
        self.detail = nn.Sequential(
            ConvBNAct(3, 64, 3, 2), ConvBNAct(64, 64, 3),
            ConvBNAct(64, 64, 3, 2), ConvBNAct(64, 64, 3), ConvBNAct(64, 64, 3),
            ConvBNAct(64, 128, 3, 2), ConvBNAct(128, 128, 3), ConvBNAct(128, 128, 3))
        self.stem = StemBlock(16)
        self.s3 = nn.Sequential(GatherExpand(16, 32, 2), GatherExpand(32, 32))
        self.s4 = nn.Sequential(GatherExpand(32, 64, 2), GatherExpand(64, 64))
        self.s5 = nn.Sequential(GatherExpand(64, 128, 2), *[GatherExpand(128, 128) for _ in range(3)])
        self.ce = ContextEmbedding(128)
        self.bga = GuidedAggregation(128)
        self.head = SegHead(128, head_width, num_classes)
        if aux:
            self.aux_heads = nn.ModuleDict({k: SegHead(c, booster_width, num_classes)
                                            for k, c in (("stem", 16), ("s3", 32), ("s4", 64), ("s5", 128))})
        self._init_weights()

    def _features(self, x: torch.Tensor):
        stem = self.stem(x)
        s3 = self.s3(stem)
        s4 = self.s4(s3)
        s5 = self.s5(s4)
        out = self.head(self.bga(self.detail(x), self.ce(s5)))
        return out, {"stem": stem, "s3": s3, "s4": s4, "s5": s5}

    def _forward(self, x: torch.Tensor, aux: bool):
        out, f = self._features(x)
        return (out, self.aux_heads["s4"](f["s4"]), self.aux_heads["s5"](f["s5"])) if aux else (out, None, None)

    def boosters(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, {"stem", "s3", "s4", "s5": booster logits}), all at the input size."""
        if not self.aux:
            raise ValueError("this BiSeNetV2 was built without booster heads (aux=False)")
        out, f = self._features(x)
        return resize(out, x.shape[-2:]), {k: resize(self.aux_heads[k](v), x.shape[-2:]) for k, v in f.items()}


# ------------------------------------------------------------------------------------ DDRNet-23-slim
class Residual(nn.Module):
    """`body(x) + short(x)`, then ReLU unless `relu_out` is False (DDRNet applies it where used)."""

    def __init__(self, body: nn.Module, short: nn.Module, relu_out: bool = True):
        super().__init__()
        self.body, self.short, self.relu_out = body, short, relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + self.short(x)
        return F.relu(y) if self.relu_out else y


def basic_block(c_in: int, c_out: int, stride: int = 1, relu_out: bool = True) -> Residual:
    """ResNet basic block: 3x3 conv (stride)-BN-ReLU, 3x3 conv-BN, + shortcut (1x1 conv-BN on shape change)."""
    short = ConvBNAct(c_in, c_out, 1, stride, act=None) if stride > 1 or c_in != c_out else nn.Identity()
    return Residual(nn.Sequential(ConvBNAct(c_in, c_out, 3, stride), ConvBNAct(c_out, c_out, 3, act=None)),
                    short, relu_out)


def bottleneck(c_in: int, planes: int, stride: int = 1) -> Residual:
    """ResNet bottleneck, expansion 2: 1x1 conv `planes`, 3x3 conv (stride), 1x1 conv to 2 x planes, with
    a projection shortcut and no output ReLU (the last block of its stage in DDRNet)."""
    body = nn.Sequential(ConvBNAct(c_in, planes, 1), ConvBNAct(planes, planes, 3, stride),
                         ConvBNAct(planes, 2 * planes, 1, act=None))
    return Residual(body, ConvBNAct(c_in, 2 * planes, 1, stride, act=None), relu_out=False)


def res_stage(c_in: int, c_out: int, n: int = 2, stride: int = 1) -> nn.Sequential:
    """`n` basic blocks, the first with `stride`, the last without its output ReLU."""
    return nn.Sequential(*[basic_block(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, i < n - 1)
                           for i in range(n)])


class DAPPM(nn.Module):
    """Deep aggregation pyramid pooling: scales = identity, avg-pool (5, s2), (9, s4), (17, s8),
    global; each BN-ReLU-1x1 conv to `mid`; every pooled scale is up-sampled, added to the previous
    scale's output and refined by BN-ReLU-3x3 conv (hierarchical residual fusion); concat (5 x mid)
    -> BN-ReLU-1x1 conv to `c_out`, plus a BN-ReLU-1x1 conv shortcut of the input."""

    def __init__(self, c_in: int, mid: int, c_out: int):
        super().__init__()
        pools = [nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8), nn.AdaptiveAvgPool2d(1)]
        self.scale0 = pre_act_conv(c_in, mid)
        self.scales = nn.ModuleList(nn.Sequential(p, pre_act_conv(c_in, mid)) for p in pools)
        self.process = nn.ModuleList(pre_act_conv(mid, mid, 3) for _ in pools)
        self.compress = pre_act_conv(5 * mid, c_out)
        self.shortcut = pre_act_conv(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.scale0(x)]
        for scale, proc in zip(self.scales, self.process):
            ys.append(proc(resize(scale(x), x.shape[-2:]) + ys[-1]))
        return self.compress(torch.cat(ys, 1)) + self.shortcut(x)


class DDRNet23Slim(PeerNet):
    """DDRNet-23-slim (Table I of the paper, width 32). conv1: two 3x3 s2 convs 32 (1/4); conv2: 2
    basic blocks 32; conv3: 2 blocks 64 (1/8). Then two branches: conv4 low 128 (1/16) / high 64
    (1/8), bilateral fusion (high->low 3x3 s2 conv-BN; low->high 1x1 conv-BN + up-sample; added);
    conv5_1 low 256 (1/32) / high 64, fusion (high->low two 3x3 s2 convs); conv5_2: bottleneck
    low 512 (1/64) / high 128; DAPPM 512 -> 128 (mid 128) on the low branch, up-sampled and added to
    the high branch; head BN-ReLU-3x3 conv 64-BN-ReLU-1x1 to classes at 1/8. Aux head (aux_a, same
    form, 64 -> 64) on the high branch after the conv4 fusion; aux_b is None."""

    def __init__(self, num_classes: int = 19, aux: bool = True, w: int = 32, head_width: int = 64):
        super().__init__(aux)
        self.stem = nn.Sequential(ConvBNAct(3, w, 3, 2), ConvBNAct(w, w, 3, 2), res_stage(w, w))
        self.layer2 = res_stage(w, 2 * w, stride=2)
        self.low3, self.high3 = res_stage(2 * w, 4 * w, stride=2), res_stage(2 * w, 2 * w)
        self.down3 = ConvBNAct(2 * w, 4 * w, 3, 2, act=None)
        self.comp3 = ConvBNAct(4 * w, 2 * w, 1, act=None)
        self.low4, self.high4 = res_stage(4 * w, 8 * w, stride=2), res_stage(2 * w, 2 * w)
        self.down4 = nn.Sequential(ConvBNAct(2 * w, 4 * w, 3, 2), ConvBNAct(4 * w, 8 * w, 3, 2, act=None))
        self.comp4 = ConvBNAct(8 * w, 2 * w, 1, act=None)
        self.low5, self.high5 = bottleneck(8 * w, 8 * w, 2), bottleneck(2 * w, 2 * w)
        self.dappm = DAPPM(16 * w, 4 * w, 4 * w)
        self.head = SegHead(4 * w, head_width, num_classes, pre_act=True)
        if aux:
            self.aux_a = SegHead(2 * w, head_width, num_classes, pre_act=True)
        self._init_weights()

    @staticmethod
    def _fuse(low, high, down: nn.Module, comp: nn.Module):
        """Bilateral fusion of (low-res, high-res) features; ReLU on each input as in the paper's blocks."""
        return (low + down(F.relu(high)),
                high + resize(comp(F.relu(low)), high.shape[-2:]))

    def _forward(self, x: torch.Tensor, aux: bool):
        x = F.relu(self.layer2(F.relu(self.stem(x))))                 # (N, 64, H/8, W/8)
        low, high = self._fuse(self.low3(x), self.high3(x), self.down3, self.comp3)
        mid = high
        low, high = self._fuse(self.low4(F.relu(low)), self.high4(F.relu(high)), self.down4, self.comp4)
        high = self.high5(F.relu(high))                               # (N, 128, H/8, W/8)
        low = self.dappm(self.low5(F.relu(low)))                      # (N, 128, H/64, W/64)
        out = self.head(high + resize(low, high.shape[-2:]))
        return (out, self.aux_a(mid), None) if aux else (out, None, None)


# ----------------------------------------------------------------------------------------- registry
PEERS: dict[str, Callable[[int], nn.Module]] = {
    "fast_scnn": FastSCNN,
    "lraspp_mobilenetv3_large": LRASPPMobileNetV3Large,
    "bisenetv2": BiSeNetV2,
    "ddrnet23_slim": DDRNet23Slim,
}

PAPER: dict[str, dict] = {
    "fast_scnn": {"params_M": 1.11, "gmacs_1024x2048": None,
                  "source": "Poudel et al., Fast-SCNN (BMVC 2019), Table 3: 1.11 M parameters (no FLOPs given)"},
    "lraspp_mobilenetv3_large": {
        "params_M": 1.51, "gmacs_1024x2048": 9.74,
        "source": "Howard et al., Searching for MobileNetV3 (ICCV 2019), Table 7 row 8: V3, RF2, LR-ASPP, "
                  "F=128 -> 72.36 mIOU (val), 1.51 M params, 9.74 B MAdds at 1024x2048"},
    "bisenetv2": {
        "params_M": 3.4, "gmacs_1024x2048": 4 * 21.15,
        "source": "Yu et al., BiSeNet V2 (IJCV 2021), Table 8: 21.15 GFLOPs at 512x1024 (x4 for 1024x2048); "
                  "the paper gives no parameter count, 3.4 M is the figure later comparison tables cite"},
    "ddrnet23_slim": {"params_M": 5.7, "gmacs_1024x2048": 36.3,
                      "source": "Hong et al., DDRNet (arXiv 2101.06085), Table IV: DDRNet-23-slim 5.7 M, 36.3 GFLOPs"},
}


def build_peer(name: str, num_classes: int = 19) -> nn.Module:
    """A fresh peer network by registry name (with its auxiliary heads)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer network {name!r}; known: {', '.join(sorted(PEERS))}")
    return PEERS[name](num_classes)
