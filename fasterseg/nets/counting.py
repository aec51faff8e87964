"""Parameters and multiply-accumulates (MACs) of a network at a given input size, per module.

MACs count convolutions and linear layers (k*k*C_in/groups per output element; biases, BN, ReLU,
resizing and concatenation are not counted), the convention of ``thop`` and of the FLOPs the paper
reports. Parameters count every learnable tensor.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import pandas as pd
import torch
import torch.nn as nn

from fasterseg.nets.network import DerivedNet
from fasterseg.nets.ops import PRIMITIVES, build_op


def count(model: nn.Module, input_size=(1, 3, 1024, 2048), depth: int = 1) -> pd.DataFrame:
    """Per-module parameters and MACs (grouped by module name up to `depth` dots), plus a ``total`` row.

    Columns: ``params`` (count), ``macs`` (multiply-accumulates for one forward pass of `input_size`),
    ``params_M``, ``GMACs``. Runs one forward pass without gradients, in eval mode.
    """
    macs = defaultdict(int)
    hooks = []

    def group(name: str) -> str:
        return ".".join(name.split(".")[:depth]) or "(root)"

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            def hook(mod, inp, out, name=name):
                k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
                macs[group(name)] += out.numel() // out.shape[0] * k * inp[0].shape[0] // inp[0].shape[0]
            hooks.append(m.register_forward_hook(hook))
        elif isinstance(m, nn.Linear):
            def hook(mod, inp, out, name=name):
                macs[group(name)] += out.numel() // out.shape[0] * mod.in_features
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = defaultdict(int)
    for name, p in model.named_parameters():
        params[group(name)] += p.numel()
    names = list(dict.fromkeys(list(params) + list(macs)))
    df = pd.DataFrame({"params": [params[n] for n in names], "macs": [macs[n] for n in names]}, index=names)
    df.loc["total"] = df.sum()
    df["params_M"] = df["params"] / 1e6
    df["GMACs"] = df["macs"] / 1e9
    return df


def totals(model: nn.Module, input_size=(1, 3, 1024, 2048)) -> tuple[float, float]:
    """(parameters in millions, GMACs) at `input_size`."""
    row = count(model, input_size).loc["total"]
    return float(row["params_M"]), float(row["GMACs"])


def receptive_field(module: nn.Module, c_in: int, size: int = 64) -> int:
    """Width in pixels of the input region that influences the central output pixel (autograd).

    Weights are made positive and the input too, so no ReLU hides a path; the module is modified.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.abs_()
    x = torch.rand(1, c_in, size, size, requires_grad=True)
    was = module.training
    module.eval()
    y = module(x)
    module.train(was)
    cy, cx = y.shape[-2] // 2, y.shape[-1] // 2
    y[0, :, cy, cx].sum().backward()
    cols = (x.grad[0].abs().sum((0, 1)) > 0).nonzero().flatten()
    return int(cols.max() - cols.min() + 1) if len(cols) else 0


def operator_costs(c: int = 96, h: int = 128, w: int = 256, ops: Sequence[str] = PRIMITIVES) -> pd.DataFrame:
    """Each of `ops` (default: the paper's five) at stride 1 and 2 on a (c, h, w) input (default: the teacher's 1/8
    scale at 1024x2048): parameters, GMACs, and the receptive field of one application (pixels)."""
    rows = []
    for stride in (1, 2):
        for name in ops:
            c_out = c * stride
            op = build_op(name, c, c_out, stride)
            params, gmacs = totals(op, (1, c, h, w)) if not getattr(op, "identity", False) else (0.0, 0.0)
            torch.manual_seed(0)
            rf = receptive_field(build_op(name, 4, 4 * stride, stride), 4)
            rows.append({"operator": name, "stride": stride, "channels": f"{c}->{c_out}",
                         "params_k": params * 1e3, "GMACs": gmacs, "receptive_field_px": rf})
    return pd.DataFrame(rows).set_index(["operator", "stride"])


def arch_report(arch, height: int = 1024, width: int = 2048, aux: bool = True) -> list[str]:
    """Lines describing an `Architecture`: header, its cell table, and parameters and MACs per part at
    1x3xHxW (with or without the auxiliary training heads)."""
    head = (f"{arch.name}: F={arch.fch}, {arch.num_classes} classes, stem width {arch.stem_width:.3f}, head width "
            f"{arch.head_width:.3f}, branches ending at " + " + ".join(f"1/{b.ends_at}" for b in arch.branches))
    df = count(DerivedNet(arch, aux=aux), (1, 3, height, width))
    return [head, arch.table().to_string(index=False),
            f"\nparameters and multiply-accumulates at 1x3x{height}x{width} ({'with' if aux else 'without'} auxiliary "
            "heads; MACs of convolutions):", df[["params_M", "GMACs"]].round(3).to_string()]
