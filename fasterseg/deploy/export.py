"""Export a trained network for deployment: batch norm folded into the convolutions (`nets.build.fold_bn`),
ONNX checked against PyTorch with ONNX Runtime, int8 quantisation, and a TensorRT engine where `tensorrt` and a
CUDA device exist.

- `export_network(model, path, height, width)`: the deployed form as ONNX (opset from the config, static
  1x3xHxW input ``image``, output ``logits`` at input size).
- `check_onnx(model, path)`: max |logit difference| ONNX Runtime vs PyTorch on a seeded random image.
- int8 quantisation (static QDQ, ONNX Runtime): `fasterseg.nets.onnx.quantize_int8`.
- `export_run(run, cfg)`: all of it for a training run (``<run>/export/``).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fasterseg.nets.build import LogitsOnly, fold_bn, inference_copy, load_trained
from fasterseg.nets.onnx import ExportUnavailable, export_onnx, ort_session, tensorrt_engine
from fasterseg.paths import display_path
from fasterseg.runs import atomic_write


def export_network(model: nn.Module, path: str | Path, height: int, width: int, opset: int = 17,
                   interpolation: str = "bilinear") -> Path:
    """Write the deployed form of `model` (`inference_copy`: BN folded, logits only) as ONNX to `path`
    (input ``image`` 1x3xHxW)."""
    return export_onnx(inference_copy(model.cpu(), interpolation), (1, 3, height, width), path, opset)


def check_onnx(model: nn.Module, path: str | Path, seed: int = 0, threads: int = 1) -> dict:
    """Max and mean |logit difference| between ONNX Runtime (CPU) and the unfolded PyTorch model in eval
    mode on a seeded random image of the ONNX file's input size, the max relative to the largest |logit|
    (float32 rounding grows with the logits), and the share of pixels whose class agrees."""
    sess = ort_session(path, threads)
    shape = [int(d) for d in sess.get_inputs()[0].shape]
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        ref = LogitsOnly(copy.deepcopy(model).cpu().eval())(x).numpy()
    got = sess.run(None, {"image": x.numpy()})[0]
    diff = np.abs(got - ref)
    scale = max(1.0, float(np.abs(ref).max()))
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "max_abs_logit": scale,
            "max_rel_diff": float(diff.max()) / scale,
            "class_agreement": float((got.argmax(1) == ref.argmax(1)).mean()), "input": shape}


def export_run(run: str | Path, cfg, out: str | Path | None = None, which: str = "best") -> dict:
    """Export a finished training run's `which` weights: ``<out>/model.onnx`` checked against PyTorch
    (``export.json`` holds the check), and ``model.engine`` where TensorRT can be built. Returns the summary."""
    run = Path(run)
    out = Path(out) if out else run / "export"
    model, _ = load_trained(run, which)
    x = cfg.export
    onnx_path = export_network(model, out / "model.onnx", x.height, x.width, x.opset, x.interpolation)
    check = check_onnx(model, onnx_path) if x.interpolation == "bilinear" else {}
    summary = {"onnx": display_path(onnx_path), "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
               "weights": which, "height": x.height, "width": x.width,
               "opset": x.opset, "interpolation": x.interpolation, "folded_bn": fold_bn(model).folded_bn, **check}
    if check and check["max_rel_diff"] > x.tolerance:
        raise RuntimeError(f"ONNX Runtime and PyTorch disagree by {check['max_abs_diff']:.3g} on logits up to "
                           f"{check['max_abs_logit']:.3g} (relative {check['max_rel_diff']:.2g} > export.tolerance "
                           f"{x.tolerance}) on {onnx_path}")
    try:
        engine = out / "model.engine"
        atomic_write(engine, tensorrt_engine(onnx_path))
        summary["tensorrt"] = display_path(engine)
    except ExportUnavailable as e:
        summary["tensorrt"] = f"skipped: {e}"
    atomic_write(out / "export.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def summary_line(s: dict) -> str:
    """The terminal line of an `export_run` result."""
    return (f"{s['onnx']}: {s['folded_bn']} batch norms folded; max |ONNX Runtime - PyTorch| "
            f"{s.get('max_abs_diff', float('nan')):.2e} on logits up to {s.get('max_abs_logit', float('nan')):.3g}, "
            f"class agreement {100 * s.get('class_agreement', 0):.2f} %; "
            f"TensorRT: {s['tensorrt']}")


