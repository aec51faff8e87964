"""Networks outside PyTorch: ONNX export, ONNX Runtime sessions and TensorRT engines, one of each.

Every ONNX file the kit writes has one input ``image`` (N, 3, H, W) and one output ``logits`` (or the block's
output for latency-table entries). `export_onnx` uses the TorchScript exporter (about 0.1 s per block) and falls
back to the dynamo exporter where TorchScript cannot express an operator (adaptive pooling to sizes that do not
divide the input, as Fast-SCNN's pyramid pooling). `ort_session` is the one way the kit opens ONNX Runtime: a
fixed thread count and no spinning, so a PyTorch call in the same process is not slowed down.
`quantize_int8` makes the int8 form (static QDQ, ONNX Runtime's quantiser). `tensorrt_engine` builds a serialised
engine on the GPU it will run on.

onnxruntime and tensorrt are imported inside the functions that use them: `import fasterseg` loads neither
(tensorrt is an optional extra, found on GPU machines only).
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

INPUT, OUTPUT = "image", "logits"


class ExportUnavailable(RuntimeError):
    """An export target that cannot be built here; the message says what is missing."""


@contextlib.contextmanager
def quiet_logger(name: str = ""):
    """Only errors from the logger `name` (the root logger by default) for the duration; its level restored."""
    logger = logging.getLogger(name or None)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _quiet_stdout_fd():
    """Silence file descriptor 1 (what C++ code prints there too) for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        try:  # what C++ wrote into the C library's buffer goes to /dev/null too, not to the restored stdout
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: str | Path | None = None,
                opset: int = 17) -> bytes | Path:
    """`module` (eval mode, on the CPU) as ONNX for a fixed input of `input_shape`: written to `path` (returned),
    or returned as bytes when `path` is None. Input ``image``, output ``logits``."""
    module = module.eval()
    args = (torch.zeros(*input_shape),)
    f: io.BytesIO | str = io.BytesIO() if path is None else str(path)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # its failure prints the whole graph (from C++) before raising: keep that off the terminal
            with _quiet_stdout_fd():
                torch.onnx.export(module, args, f, dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                                  opset_version=opset)
        except torch.onnx.errors.SymbolicValueError:
            if isinstance(f, io.BytesIO):
                f.seek(0)
                f.truncate()
            with quiet_logger("torch.onnx._internal.exporter._registration"), \
                    contextlib.redirect_stdout(io.StringIO()):  # "torchvision is not installed", progress lines
                torch.onnx.export(module, args, f, dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                  opset_version=max(opset, 18), external_data=False)
    return f.getvalue() if isinstance(f, io.BytesIO) else Path(path)


def ort_session(model: str | Path | bytes, threads: int = 1):
    """An ONNX Runtime session (CPU execution provider) on a file or bytes: `threads` intra-op threads, one
    inter-op thread, spinning off, all graph optimisations (which fold batch norm into convolutions)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=["CPUExecutionProvider"])


def ort_call(model: str | Path | bytes, x, threads: int = 1):
    """One inference call of an ONNX model on the fixed input `x` (a tensor or array), ready to time."""
    sess = ort_session(model, threads)
    xn = x.numpy() if torch.is_tensor(x) else x
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: xn})


def ort_predict(model: str | Path | bytes, images, threads: int = 1):
    """Class maps (N, H, W) of an ONNX segmentation model on float32 images (N, 3, H, W) of its input size."""
    sess = ort_session(model, threads)
    return np.concatenate([sess.run(None, {INPUT: images[i:i + 1]})[0].argmax(1) for i in range(len(images))])


def quantize_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray,
                  per_channel: bool = True) -> Path:
    """Static post-training int8 quantisation of an ONNX file with ONNX Runtime (QDQ format, int8 weights per
    channel, uint8 activations), calibrated on `calibration` inputs (N, C, H, W) float32 (images normalised as the
    network's input, or a block's input). Returns `out_path`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Inputs(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calibration):
                return None
            self.i += 1
            return {INPUT: calibration[self.i - 1:self.i].astype(np.float32)}

    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + "_pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    # the quantiser warns on the root logger for every 1-D weight it cannot quantise per channel (an unfolded
    # BN's scale, as in DDRNet's DAPPM)
    with quiet_logger():
        quantize_static(str(pre), str(out_path), Inputs(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    pre.unlink(missing_ok=True)
    return out_path


def quantized(model: bytes, calibration: np.ndarray) -> bytes:
    """`quantize_int8` of an ONNX model held in memory (a latency-table block): the int8 QDQ model's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fp32.onnx"
        src.write_bytes(model)
        return quantize_int8(src, Path(tmp) / "int8.onnx", calibration).read_bytes()


def qdq_model(shape: tuple[int, ...], opset: int = 17) -> bytes:
    """An ONNX model that quantises its float input of `shape` to uint8 and dequantises it again (the boundary an
    int8 block pays alone and a network pays only at its ends)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("QuantizeLinear", [INPUT, "scale", "zero"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], [OUTPUT])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
                               helper.make_tensor("zero", TensorProto.UINT8, [], [128])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tensorrt_available() -> str | None:
    """None when TensorRT engines can be built here, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install .[tensorrt] on a machine with a CUDA GPU)"
    if not torch.cuda.is_available():
        return "no CUDA device: a TensorRT engine is built on the GPU it will run on"
    return None


def tensorrt_engine(model: bytes | str | Path, fp16: bool = False, workspace_bytes: int = 1 << 30) -> bytes:
    """A serialised TensorRT engine (fp32, or fp16 where the builder finds it faster) of an ONNX model (bytes or
    file). Raises `ExportUnavailable` without TensorRT or a GPU."""
    why = tensorrt_available()
    if why:
        raise ExportUnavailable(why)
    import tensorrt as trt

    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        raise RuntimeError("TensorRT could not parse the ONNX model: " +
                           "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build an engine from the ONNX model")
    return bytes(plan)


def tensorrt_call(engine_bytes: bytes, input_shape: tuple[int, ...]):
    """One asynchronous inference call of a serialised engine on a fixed random CUDA input (synchronise the
    device before reading a clock); the engine and its buffers live as long as the call."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    x = torch.randn(*input_shape, device="cuda")
    out_name = engine.get_tensor_name(1)
    y = torch.empty(tuple(engine.get_tensor_shape(out_name)), device="cuda")
    context.set_tensor_address(engine.get_tensor_name(0), x.data_ptr())
    context.set_tensor_address(out_name, y.data_ptr())
    stream = torch.cuda.current_stream()

    def call():
        context.execute_async_v3(stream.cuda_stream)
    call.keep = (engine, context, x, y)  # type: ignore[attr-defined]
    return call
