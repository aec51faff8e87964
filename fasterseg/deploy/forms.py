"""The deployed forms of a trained network side by side: fp32 with bilinear resizing (the reference), fp32 with
nearest resizing (as the original's TensorRT speed figure) and int8 (static, calibrated). For each: mIoU with ONNX
Runtime on the validation split, pixel agreement with the reference, and latency interleaved with the reference
convolution (`fasterseg.timing`). `fasterseg export --forms`.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from fasterseg.data.cityscapes import build_dataset
from fasterseg.data.transforms import EvalTransform
from fasterseg.deploy.export import export_network
from fasterseg.metrics import SegMeter
from fasterseg.nets.build import load_trained
from fasterseg.nets.onnx import ort_call, ort_predict, quantize_int8
from fasterseg.paths import display_path, write_text
from fasterseg.timing import environment, interleaved


def forms_report(run: str | Path, cfg, calibration_images: int = 16, latency_hw: tuple[int, int] = (512, 1024),
                 threads: int = 1, rounds: int = 20) -> dict:
    """The deployed forms of a trained run's network, each against fp32 with bilinear resizing (the
    reference): fp32 with nearest resizing (as the original's TensorRT figure) and int8 (static, calibrated on
    `calibration_images` training images). Per form: mIoU on the whole validation split with ONNX Runtime (at
    the validation resolution), the share of pixels whose class agrees with the reference, the mIoU change in
    points, and ONNX Runtime latency (ms) at `latency_hw` timed `rounds` times interleaved with the reference
    convolution (`timing.interleaved`), with its ratio to the reference form's."""
    model, spec = load_trained(run)
    val = build_dataset(cfg.data, "val", EvalTransform())
    train = build_dataset(cfg.data, "train", EvalTransform())
    h, w = val[0][0].shape[-2:]
    calib = np.stack([train[i][0].numpy() for i in range(min(calibration_images, len(train)))])
    images = np.stack([val[i][0].numpy() for i in range(len(val))])
    labels = np.stack([val[i][1].numpy() for i in range(len(val))])
    lh, lw = latency_hw
    calib_lat = torch.nn.functional.interpolate(torch.from_numpy(calib), size=(lh, lw), mode="bilinear",
                                                align_corners=False).numpy()
    torch.set_num_threads(threads)
    forms = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for name, interp, int8 in (("fp32_bilinear", "bilinear", False), ("fp32_nearest", "nearest", False),
                                   ("int8_bilinear", "bilinear", True)):
            at_val = export_network(model, t / f"{name}_val.onnx", h, w, interpolation=interp)
            at_lat = export_network(model, t / f"{name}_lat.onnx", lh, lw, interpolation=interp)
            if int8:
                at_val = quantize_int8(at_val, t / f"{name}_val_q.onnx", calib)
                at_lat = quantize_int8(at_lat, t / f"{name}_lat_q.onnx", calib_lat)
            pred = ort_predict(at_val, images, threads)
            meter = SegMeter(spec["num_classes"])
            meter.update(pred, labels)
            timing = interleaved(ort_call(at_lat, torch.randn(1, 3, lh, lw), threads), rounds, warmup=2)
            forms[name] = {"interpolation": interp, "precision": "int8" if int8 else "fp32",
                           "miou": meter.scores().miou, "pred": pred, "latency": timing}
    ref = forms["fp32_bilinear"]
    for f in forms.values():
        f["class_agreement"] = float((f.pop("pred") == ref["pred"]).mean()) if f is not ref else 1.0
        f["miou_change_points"] = 100 * (f["miou"] - ref["miou"])
        f["latency_ratio"] = f["latency"]["median_ms"] / ref["latency"]["median_ms"]
    ref.pop("pred", None)
    return {"run": display_path(run), "validation_resolution": [int(h), int(w)], "images": len(val),
            "calibration_images": len(calib), "latency_resolution": [lh, lw], "backend": "onnxruntime",
            "environment": environment(threads), "forms": forms}


def write_forms(run: str | Path, cfg, out: str | Path) -> list[str]:
    """`forms_report` of a run written to ``<out>/forms.json``; returns its summary lines and where it went."""
    report = forms_report(run, cfg, threads=cfg.runtime.threads or 1)
    path = write_text(Path(out) / "forms.json", json.dumps(report, indent=2))
    return forms_lines(report) + [f"wrote {display_path(path)}"]


def forms_lines(r: dict) -> list[str]:
    """The terminal lines of a `forms_report`."""
    env = r["environment"]
    lh, lw = r["latency_resolution"]
    lines = [f"{r['run']}: mIoU on {r['images']} validation images at {r['validation_resolution'][0]}x"
             f"{r['validation_resolution'][1]}; ONNX Runtime latency at {lh}x{lw}, {env['threads']} thread(s), "
             f"load {env['load_average_1min']:.2f}"]
    for name, f in r["forms"].items():
        lat = f["latency"]
        lines.append(f"  {name:14s} mIoU {100 * f['miou']:.2f} % ({f['miou_change_points']:+.2f} pts, "
                     f"{100 * f['class_agreement']:.1f} % pixels agree)  {lat['median_ms']:.1f} ms "
                     f"[{lat['min_ms']:.1f}-{lat['max_ms']:.1f}] = {f['latency_ratio']:.2f}x fp32 bilinear "
                     f"({lat['ratio_to_reference']:.0f}x the reference conv, {lat['reference_gmacs_per_s']:.0f} "
                     "GMAC/s)")
    return lines


