"""Export a trained network for deployment: BN folded into the convolutions, ONNX checked against PyTorch
with ONNX Runtime, and a TensorRT engine where `tensorrt` and a CUDA device exist.

- `fold_bn(model)`: an inference copy whose batch norms are folded into the preceding convolutions
  (conv-BN pairs of the kit's operators, and Conv2d -> BatchNorm2d pairs inside `nn.Sequential`, which
  covers the peers); outputs equal the unfolded model's in eval mode up to float rounding.
- `export_onnx(model, path, height, width)`: the folded model as ONNX (opset from the config, static
  1x3xHxW input ``image``, output ``logits`` at input size).
- `check_onnx(model, path)`: max |logit difference| ONNX Runtime vs PyTorch on a seeded random image.
- `build_tensorrt(onnx_path, engine_path)`: an fp32 TensorRT engine (import-guarded: raises
  `ExportUnavailable` with the reason where TensorRT or CUDA are missing).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from .paths import display_path


class ExportUnavailable(RuntimeError):
    """An export target that cannot be built here; the message says what is missing."""


def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice | None = None) -> nn.Conv2d:
    """`conv` with `bn` (or its channel slice) folded in: w' = w * g / s, b' = (b - mean) * g / s + beta."""
    sl = channels or slice(0, bn.num_features)
    scale = bn.weight[sl] / torch.sqrt(bn.running_var[sl] + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    with torch.no_grad():
        out.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        out.bias.copy_((bias - bn.running_mean[sl]) * scale + bn.bias[sl])
    return out


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every foldable BN folded (see the module docstring); the
    number folded is stored as ``folded_bn`` on the copy."""
    from .ops import ConvBN, Skip

    m = copy.deepcopy(model).eval()
    n = 0
    for mod in list(m.modules()):
        if isinstance(mod, ConvBN) and not mod.slim and isinstance(mod.bn, nn.BatchNorm2d):
            mod.conv, mod.bn, n = _fused(mod.conv, mod.bn), nn.Identity(), n + 1
        elif isinstance(mod, Skip) and not mod.identity and not mod.slim and isinstance(mod.bn, nn.BatchNorm2d):
            if mod.stride == 1:
                mod.conv = _fused(mod.conv, mod.bn)
            else:
                c1 = mod.conv1.out_channels
                mod.conv1 = _fused(mod.conv1, mod.bn, slice(0, c1))
                mod.conv2 = _fused(mod.conv2, mod.bn, slice(c1, c1 + mod.conv2.out_channels))
            mod.bn, n = nn.Identity(), n + 1
        elif isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (na, a), (nb, b) in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.num_features == a.out_channels:
                    setattr(mod, na, _fused(a, b))
                    setattr(mod, nb, nn.Identity())
                    n += 1
    m.folded_bn = n
    return m


class _Inference(nn.Module):
    """The final logits only (no auxiliary heads), for export."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def inference_copy(model: nn.Module, interpolation: str = "bilinear") -> nn.Module:
    """BN-folded eval copy returning logits only; ``nearest`` switches a derived network's resizing."""
    m = fold_bn(model)
    if interpolation != "bilinear":
        if not hasattr(m, "interp"):
            raise ValueError(f"export.interpolation={interpolation!r} is only available for derived networks")
        m.interp = interpolation
        for mod in m.modules():
            if hasattr(mod, "interp"):
                mod.interp = interpolation
    return _Inference(m).eval()


def export_onnx(model: nn.Module, path: str | Path, height: int, width: int, opset: int = 17,
                interpolation: str = "bilinear") -> Path:
    """Write the BN-folded inference form of `model` as ONNX to `path` (input ``image`` 1x3xHxW)."""

    from .latency.backends import onnx_export

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = inference_copy(model.cpu(), interpolation)
    onnx_export(m, (torch.zeros(1, 3, height, width),), str(path), ["image"], ["logits"], opset)
    return path


def check_onnx(model: nn.Module, path: str | Path, seed: int = 0, threads: int = 1) -> dict:
    """Max and mean |logit difference| between ONNX Runtime (CPU) and the unfolded PyTorch model in eval
    mode on a seeded random image of the ONNX file's input size, the max relative to the largest |logit|
    (float32 rounding grows with the logits), and the share of pixels whose class agrees."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    shape = [int(d) for d in sess.get_inputs()[0].shape]
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        ref = _Inference(copy.deepcopy(model).cpu().eval())(x).numpy()
    got = sess.run(None, {"image": x.numpy()})[0]
    diff = np.abs(got - ref)
    scale = max(1.0, float(np.abs(ref).max()))
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "max_abs_logit": scale,
            "max_rel_diff": float(diff.max()) / scale,
            "class_agreement": float((got.argmax(1) == ref.argmax(1)).mean()), "input": shape}


def build_tensorrt(onnx_path: str | Path, engine_path: str | Path, fp16: bool = False) -> Path:
    """Build a TensorRT engine from an ONNX file (fp32, or fp16 when asked)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportUnavailable("TensorRT is not installed (pip install .[tensorrt] on a machine with a CUDA GPU)") \
            from None
    if not torch.cuda.is_available():
        raise ExportUnavailable("no CUDA device: a TensorRT engine is built on the GPU it will run on")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        raise RuntimeError("TensorRT could not parse " + str(onnx_path) + ": " + str(parser.get_error(0)))
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    Path(engine_path).write_bytes(bytes(engine))
    return Path(engine_path)


def export_run(run: str | Path, cfg, out: str | Path | None = None, which: str = "best") -> dict:
    """Export a finished training run's `which` weights: ``<out>/model.onnx`` checked against PyTorch
    (``export.json`` holds the check), and ``model.engine`` where TensorRT can be built. Returns the summary."""
    from .evaluate import load_trained

    run = Path(run)
    out = Path(out) if out else run / "export"
    model, _ = load_trained(run, which)
    x = cfg.export
    onnx_path = export_onnx(model, out / "model.onnx", x.height, x.width, x.opset, x.interpolation)
    check = check_onnx(model, onnx_path) if x.interpolation == "bilinear" else {}
    summary = {"onnx": display_path(onnx_path), "weights": which, "height": x.height, "width": x.width,
               "opset": x.opset, "interpolation": x.interpolation, "folded_bn": fold_bn(model).folded_bn, **check}
    if check and check["max_rel_diff"] > x.tolerance:
        raise RuntimeError(f"ONNX Runtime and PyTorch disagree by {check['max_abs_diff']:.3g} on logits up to "
                           f"{check['max_abs_logit']:.3g} (relative {check['max_rel_diff']:.2g} > export.tolerance "
                           f"{x.tolerance}) on {onnx_path}")
    try:
        summary["tensorrt"] = str(build_tensorrt(onnx_path, out / "model.engine"))
    except ExportUnavailable as e:
        summary["tensorrt"] = f"skipped: {e}"
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summary_line(s: dict) -> str:
    """The terminal line of an `export_run` result."""
    return (f"{s['onnx']}: {s['folded_bn']} batch norms folded; max |ONNX Runtime - PyTorch| "
            f"{s.get('max_abs_diff', float('nan')):.2e} on logits up to {s.get('max_abs_logit', float('nan')):.3g}, "
            f"class agreement {100 * s.get('class_agreement', 0):.2f} %; "
            f"TensorRT: {s['tensorrt']}")


def quantize_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray,
                  per_channel: bool = True) -> Path:
    """Static post-training int8 quantisation of an ONNX file with ONNX Runtime (QDQ format, int8 weights per
    channel, uint8 activations), calibrated on `calibration` images (N, 3, H, W) float32, normalised as the
    network's input. Returns `out_path`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .latency.backends import quiet_logger

    class Images(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calibration):
                return None
            self.i += 1
            return {"image": calibration[self.i - 1:self.i].astype(np.float32)}

    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + "_pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    # the quantiser warns on the root logger for every 1-D weight it cannot quantise per channel (an unfolded
    # BN's scale, as in DDRNet's DAPPM)
    with quiet_logger():
        quantize_static(str(pre), str(out_path), Images(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    pre.unlink(missing_ok=True)
    return out_path


def onnx_predictions(path: str | Path, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Class maps (N, H, W) of an ONNX segmentation model on images (N, 3, H, W) of its input size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"image": images[i:i + 1]})[0].argmax(1) for i in range(len(images))])


def forms_report(run: str | Path, cfg, calibration_images: int = 16, latency_hw: tuple[int, int] = (512, 1024),
                 threads: int = 1, rounds: int = 20) -> dict:
    """The deployed forms of a trained run's network, each against fp32 with bilinear resizing (the
    reference): fp32 with nearest resizing (as the original's TensorRT figure) and int8 (static, calibrated on
    `calibration_images` training images). Per form: mIoU on the whole validation split with ONNX Runtime (at
    the validation resolution), the share of pixels whose class agrees with the reference, the mIoU change in
    points, and ONNX Runtime latency (ms) at `latency_hw` timed `rounds` times interleaved with the reference
    convolution (`bench.interleaved`), with its ratio to the reference form's."""
    import tempfile

    import onnxruntime as ort

    from .bench import ort_call, environment, interleaved
    from .data.cityscapes import build_dataset
    from .data.transforms import EvalTransform
    from .evaluate import load_trained
    from .metrics import SegMeter

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
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    torch.set_num_threads(threads)
    forms = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for name, interp, int8 in (("fp32_bilinear", "bilinear", False), ("fp32_nearest", "nearest", False),
                                   ("int8_bilinear", "bilinear", True)):
            at_val = export_onnx(model, t / f"{name}_val.onnx", h, w, interpolation=interp)
            at_lat = export_onnx(model, t / f"{name}_lat.onnx", lh, lw, interpolation=interp)
            if int8:
                at_val = quantize_int8(at_val, t / f"{name}_val_q.onnx", calib)
                at_lat = quantize_int8(at_lat, t / f"{name}_lat_q.onnx", calib_lat)
            pred = onnx_predictions(at_val, images, threads)
            meter = SegMeter(spec["num_classes"])
            meter.update(pred, labels)
            timing = interleaved(ort_call(at_lat, opts, torch.randn(1, 3, lh, lw)), rounds, warmup=2)
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
    from .paths import write_text

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
