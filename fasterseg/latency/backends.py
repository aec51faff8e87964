"""Latency backends behind one interface: ``torch`` (CPU with a set thread count, or CUDA with
synchronisation), ``onnxruntime`` (CPU execution provider, one ONNX export per block) and
``tensorrt`` (GPU only; optional install, imported lazily).

Timing method (all backends): warm-up calls, then `samples` samples, each the mean of k back-to-back
calls with k chosen so a sample lasts at least `min_sample_ms`; the median is the latency and the
inter-quartile range the spread. Batch 1, fp32.
"""
from __future__ import annotations

import contextlib
import io
import os
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn


@dataclass
class Timing:
    """Latency of one block or network, in milliseconds: median, inter-quartile spread, samples."""

    median_ms: float
    spread_ms: float
    count: int


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_calls(call: Callable[[], object], samples: int = 15, warmup: int = 3, min_sample_ms: float = 2.0,
               sync: Callable[[], None] = lambda: None) -> Timing:
    """The shared timing loop (see the module docstring)."""
    for _ in range(warmup):
        call()
    sync()
    t = time.perf_counter()
    call()
    sync()
    one = max((time.perf_counter() - t) * 1e3, 1e-4)
    k = max(1, math.ceil(min_sample_ms / one))
    per_call = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(k):
            call()
        sync()
        per_call.append((time.perf_counter() - t) * 1e3 / k)
    q1, q3 = np.percentile(per_call, [25, 75])
    return Timing(statistics.median(per_call), float(q3 - q1), samples)


class Backend:
    """Interface: `time(module, input_shape) -> Timing`, `describe() -> dict`."""

    name = "backend"

    def __init__(self, threads: int = 1, samples: int = 15, warmup: int = 3, min_sample_ms: float = 2.0):
        self.threads, self.samples, self.warmup, self.min_sample_ms = threads, samples, warmup, min_sample_ms

    def describe(self) -> dict:
        raise NotImplementedError

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        """One inference call of `module` on a fixed random input of `input_shape`, ready to time (on a GPU it
        only queues the work: call `sync` before reading the clock)."""
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for queued device work (nothing to wait for on a CPU)."""

    def time(self, module: nn.Module, input_shape: tuple[int, ...]) -> Timing:
        return time_calls(self.prepare(module, input_shape), self.samples, self.warmup, self.min_sample_ms, self.sync)

    def method(self) -> str:
        return (f"median of {self.samples} samples (each >= {self.min_sample_ms} ms of back-to-back calls) after "
                f"{self.warmup} warm-up calls; spread = inter-quartile range; batch 1, fp32")


class TorchBackend(Backend):
    """PyTorch eager, CPU (`threads` fixed) or CUDA (synchronised)."""

    name = "torch"

    def __init__(self, device: str = "cpu", **kw):
        super().__init__(**kw)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("the torch backend was asked for CUDA but no CUDA device is available")
        self.device = torch.device(device)

    def describe(self) -> dict:
        dev = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name()
        return {"backend": "torch", "device": dev, "device_type": self.device.type, "threads": self.threads,
                "versions": {"torch": torch.__version__}}

    def prepare(self, module, input_shape):
        torch.set_num_threads(self.threads)
        module = module.eval().to(self.device)
        x = torch.randn(*input_shape, device=self.device)

        def call():
            with torch.inference_mode():
                return module(x)
        return call

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def export_onnx(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """ONNX bytes of `module` (TorchScript exporter: ~0.1 s per block, against seconds with dynamo)."""

    f = io.BytesIO()
    onnx_export(module.eval(), (torch.randn(*input_shape),), f, ["x"], ["y"], 17)
    return f.getvalue()


@contextlib.contextmanager
def quiet_logger(name: str = ""):
    """Only errors from the logger `name` (the root logger by default) for the duration; its level restored."""
    import logging

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
            import ctypes

            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def onnx_export(module: nn.Module, args: tuple, f, input_names: list[str], output_names: list[str],
                opset: int = 17) -> None:
    """`torch.onnx.export` with the TorchScript exporter (fast), falling back to the dynamo exporter where
    TorchScript cannot express an operator (e.g. adaptive pooling to sizes that do not divide the input,
    as Fast-SCNN's pyramid pooling at most resolutions). Warnings and the dynamo exporter's progress
    lines are silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # its failure prints the whole graph (from C++) before raising: keep that off the terminal
            with _quiet_stdout_fd():
                torch.onnx.export(module, args, f, dynamo=False, input_names=input_names,
                                  output_names=output_names, opset_version=opset)
        except torch.onnx.errors.SymbolicValueError:
            if isinstance(f, io.BytesIO):
                f.seek(0)
                f.truncate()
            with quiet_logger("torch.onnx._internal.exporter._registration"), \
                    contextlib.redirect_stdout(io.StringIO()):  # "torchvision is not installed", progress lines
                torch.onnx.export(module, args, f, dynamo=True, input_names=input_names, output_names=output_names,
                                  opset_version=max(opset, 18), external_data=False)


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, CPU execution provider, `threads` intra-op threads, spinning off (so it does not
    slow PyTorch calls in the same process)."""

    name = "onnxruntime"

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"backend": "onnxruntime", "device": cpu_name(), "device_type": "cpu", "threads": self.threads,
                "versions": {"onnxruntime": ort.__version__, "torch": torch.__version__}}

    def session(self, model_bytes: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])

    def prepare(self, module, input_shape):
        sess = self.session(export_onnx(module, input_shape))
        x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        return lambda: sess.run(None, {"x": x})


class TensorRTBackend(Backend):
    """TensorRT fp32 on a CUDA GPU (optional: ``pip install .[tensorrt]``). Builds an engine per block
    from its ONNX export and times ``execute_async_v3`` with stream synchronisation."""

    name = "tensorrt"

    def __init__(self, **kw):
        super().__init__(**kw)
        if not self.available():
            raise RuntimeError("the tensorrt backend needs the tensorrt package and a CUDA device "
                               "(pip install .[tensorrt] on a GPU machine)")

    @staticmethod
    def available() -> bool:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False
        return torch.cuda.is_available()

    def describe(self) -> dict:
        import tensorrt as trt

        return {"backend": "tensorrt", "device": torch.cuda.get_device_name(0), "device_type": "cuda",
                "threads": self.threads, "versions": {"tensorrt": trt.__version__, "torch": torch.__version__}}

    def engine(self, model_bytes: bytes):
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model_bytes):
            raise RuntimeError("TensorRT could not parse the ONNX export: " +
                               "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        plan = builder.build_serialized_network(network, config)
        return trt.Runtime(logger).deserialize_cuda_engine(plan)

    def prepare(self, module, input_shape):
        engine = self.engine(export_onnx(module, input_shape))
        context = engine.create_execution_context()
        x = torch.randn(*input_shape, device="cuda")
        out_name = engine.get_tensor_name(1)
        y = torch.empty(tuple(engine.get_tensor_shape(out_name)), device="cuda")
        context.set_tensor_address("x", x.data_ptr())
        context.set_tensor_address(out_name, y.data_ptr())
        stream = torch.cuda.current_stream()
        call = lambda: context.execute_async_v3(stream.cuda_stream)  # noqa: E731
        call.keep = (engine, context, x, y)  # the buffers live as long as the call
        return call

    def sync(self):
        torch.cuda.synchronize()


BACKENDS = {"torch": TorchBackend, "onnxruntime": OnnxRuntimeBackend, "tensorrt": TensorRTBackend}


def get_backend(name: str, threads: int = 1, device: str = "cpu", **kw) -> Backend:
    """A backend by name (``torch``, ``onnxruntime``, ``tensorrt``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown latency backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return TorchBackend(device=device, threads=threads, **kw)
    return BACKENDS[name](threads=threads, **kw)
