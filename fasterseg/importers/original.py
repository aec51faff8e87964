"""Import the published FasterSeg architectures (``arch_0.pt`` teacher, ``arch_1.pt`` student).

The files are pickled dicts of alpha/beta/ratio tensors (saved on a GPU) plus the stored mIoU and
latency of the "8+32" and "16+32" candidates. They are read with ``torch.load(weights_only=True)``
and an allow-list holding only numpy's scalar reconstructor; nothing else can be unpickled.

`derive_original` reproduces what the original code derives from them, quirks included (so the
published networks come out exactly): betas are re-softmaxed on every branch derivation (branches
are derived in the order 1/8, 1/16, 1/32), the 1/16 branch's down-sampling index is off by one,
alpha edits made while deriving one branch carry over to the next, and the branch pair is chosen from
the stored scores (both files store the student's, so both pick 1/32 + 1/16). The kit's own
`fasterseg.arch.derive` is the corrected procedure.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fasterseg.config import WIDTH_RATIOS
from fasterseg.importers.pickle_guard import load_npy_object
from fasterseg.latency.keys import LatencyKey
from fasterseg.latency.table import Entry, LatencyTable
from fasterseg.nets.arch import Architecture, Branch
from fasterseg.nets.counting import totals
from fasterseg.nets.derive import DeriveRules, branch_path, choose_ends, path_ops, path_widths
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.ops import PRIMITIVES
from fasterseg.nets.space import SCALE_INDEX, SCALES, SearchSpace

PUBLISHED = {0: ("fasterseg_teacher", (1.0, 1.0)), 1: ("fasterseg_student", (8 / 12, 8 / 12))}


def load_arch_file(path: str | Path) -> dict:
    """The pickled dict of one ``arch_*.pt`` file, loaded with weights_only and a one-entry allow-list."""
    allowed = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Float64DType]
    with torch.serialization.safe_globals(allowed):
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return {k: (v.detach().float() if torch.is_tensor(v) else float(v)) for k, v in state.items()}


def derive_original(state: dict, arch_idx: int, layers: int = 16, fch: int = 12, num_classes: int = 19,
                    width_ratios=WIDTH_RATIOS) -> Architecture:
    """Derive as the original training script does (see the module docstring)."""
    name, (stem_w, head_w) = PUBLISHED.get(arch_idx, (f"arch_{arch_idx}", (1.0, 1.0)))
    ignore_skip = arch_idx == 0
    space = SearchSpace(layers, fch, tuple(width_ratios))
    g = lambda kind, s: state[f"{kind}_{arch_idx}_{s}"].clone()  # noqa: E731
    alphas = [g("alpha", s) for s in range(3)]  # shared across branches: edits carry over
    betas = [None, g("beta", 1), g("beta", 2)]
    gammas = [g("ratio", s) for s in range(3)]
    if gammas[0].shape[1] == 1:
        widths_list = [1.0] if ignore_skip else [4 / 12]
    else:
        widths_list = list(width_ratios)
    derived = {}
    for last in (0, 1, 2):
        betas[1], betas[2] = F.softmax(betas[1], -1), F.softmax(betas[2], -1)  # re-applied every call
        path, _ = branch_path(betas, last, layers, DeriveRules(), index_shift_16=0)
        widths, _ = path_widths(gammas, path, widths_list, space)
        ops, path_c, widths_c, _ = path_ops(alphas, path, widths, ignore_skip=ignore_skip)
        derived[last] = Branch(SCALES[last], [PRIMITIVES[o] for o in ops], [SCALES[s] for s in path_c],
                               widths_c + [head_w])
    scores = {"8+32": (state["mIoU02"], state["latency02"]), "16+32": (state["mIoU12"], state["latency12"])}
    ends = choose_ends(scores)
    source = {"kind": "published", "file": f"arch_{arch_idx}.pt",
              "note": "derived with the original code's procedure (fasterseg.importers.original)",
              "stored_scores": {k: [round(v[0], 6), round(v[1], 6)] for k, v in scores.items()}}
    arch = Architecture(name=name, fch=fch, num_classes=num_classes, stem_width=stem_w, head_width=head_w,
                        branches=[derived[SCALE_INDEX[e]] for e in ends], layers=layers,
                        width_ratios=tuple(width_ratios), source=source)
    arch.validate()
    return arch


def params_of(state: dict, arch_idx: int) -> dict[str, list]:
    """The architecture logits of set `arch_idx` under the kit's names (alpha_s, beta_s, gamma_s)."""
    out = {}
    for kind, new in (("alpha", "alpha"), ("beta", "beta"), ("ratio", "gamma")):
        for s in range(3):
            key = f"{kind}_{arch_idx}_{s}"
            if key in state:
                out[f"{new}_{s}"] = state[key].tolist()
    return out


def import_published(reference_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Convert ``arch_0.pt`` and ``arch_1.pt`` from `reference_dir` into JSON files in `out_dir`,
    recording each network's parameters and MACs at 1x3x1024x2048 (auxiliary heads included, as the
    original counts them) in ``source.counts``."""
    out = []
    for idx, (name, _) in PUBLISHED.items():
        arch = derive_original(load_arch_file(Path(reference_dir) / f"arch_{idx}.pt"), idx)
        params_m, gmacs = totals(DerivedNet(arch, aux=True), (1, 3, 1024, 2048))
        params_noaux, _ = totals(DerivedNet(arch, aux=False), (1, 3, 64, 128))
        arch.source["counts"] = {"input": [1, 3, 1024, 2048], "params_M": round(params_m, 6),
                                 "params_M_without_aux_heads": round(params_noaux, 6), "GMACs": round(gmacs, 6)}
        out.append(arch.save(Path(out_dir) / f"{name}.json"))
        params = {"name": name, "source": f"arch_{idx}.pt", "layers": 16, "fch": 12,
                  "logits": params_of(load_arch_file(Path(reference_dir) / f"arch_{idx}.pt"), idx),
                  "stored_scores": arch.source["stored_scores"]}
        p = Path(out_dir) / "params" / f"{name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(params) + "\n")
        out.append(p)
    return out


# -- the published latency table ----------------------------------------------------------------------
_LUT_OPS = {"FactorizedReduce": "skip", "BasicResidual1x": "conv", "BasicResidual_downup_1x": "zoomed_conv",
            "BasicResidual2x": "conv_2x", "BasicResidual_downup_2x": "zoomed_conv_2x"}
GTX1080TI_META = {
    "backend": "tensorrt", "device": "NVIDIA GeForce GTX 1080 Ti", "device_type": "cuda", "threads": None,
    "resolution": [1024, 2048], "batch": 1, "precision": "fp32", "interpolation": "as in the original latency code",
    "versions": {"source": "FasterSeg release, latency_lookup_table.npy"},
    "method": "original release: TensorRT engine per block, mean over a ~3 s run after 10 warm-up runs; "
              "no spread or count recorded (spread_ms = nan, count = 0)",
    "space": {"layers": 16, "fch": 12, "width_ratios": list(WIDTH_RATIOS),
              "stem_head_widths": [[1.0, 1.0], [8 / 12, 8 / 12]], "num_classes": 19},
    "complete": True,
    "note": "converted once from the original release; 'fusion' entries include the original's channel "
            "attention block, which the kit leaves out",
}


def convert_latency_table(npy_path: str | Path):
    """The original ``latency_lookup_table.npy`` (pickled dict: key string -> ms) as a `LatencyTable`.

    Read with a restricted unpickler (numpy reconstructors only). Keys are renamed into the kit's
    typed keys; unknown key patterns raise ValueError.
    """
    raw = load_npy_object(npy_path)
    entries = {}
    for name, ms in raw.items():
        m = re.fullmatch(r"(\w+?)_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)_stride(\d+)(?:_dilation1)?", name)
        if m and m.group(1) in _LUT_OPS:
            op, h, w, ci, co, st = _LUT_OPS[m.group(1)], *map(int, m.groups()[1:])
        elif m := re.fullmatch(r"ConvNorm_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)_kernel(\d)_stride(\d)", name):
            h, w, ci, co, k, st = map(int, m.groups())
            op = f"conv{k}x{k}"
        elif m := re.fullmatch(r"ff_H(\d+)_W(\d+)_C(\d+)", name):
            h, w, ci = map(int, m.groups())
            op, co, st = "fusion", ci, 1
        elif m := re.fullmatch(r"head_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)", name):
            h, w, ci, co = map(int, m.groups())
            op, st = "head", 1
        else:
            raise ValueError(f"unrecognised key in the original latency table: {name!r}")
        entries[LatencyKey(op, h, w, ci, co, st)] = Entry(float(ms), float("nan"), 0)
    return LatencyTable(entries, dict(GTX1080TI_META))
