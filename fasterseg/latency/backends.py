"""Latency backends behind one interface: ``torch`` (CPU with a set thread count, or CUDA with
synchronisation), ``onnxruntime`` (CPU execution provider, one ONNX export per block), ``onnxruntime_int8`` (the
same, each block quantised to int8 QDQ as the deployed int8 network is) and ``tensorrt`` (GPU only; optional
install, imported lazily).

Timing method (all backends, `fasterseg.timing.time_calls`): warm-up calls, then `samples` samples, each the mean
of k back-to-back calls with k chosen so a sample lasts at least `min_sample_ms`; the median is the latency and
the inter-quartile range the spread; on a GPU each sample is measured with CUDA events. Batch 1. On a CPU,
`time_beside` adds a call of the reference conv after every sample (`timing.time_beside_reference`), so a table
built on a loaded machine can express each entry at one reference speed (`timing.at_reference_speed`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from fasterseg.config_checks import LATENCY_BACKENDS
from fasterseg.latency.keys import QuantBoundary
from fasterseg.nets.onnx import (export_onnx, ort_call, qdq_model, quantized, tensorrt_available, tensorrt_call,
                                 tensorrt_engine)
from fasterseg.timing import Timing, cpu_name, device_sync, time_beside_reference, time_calls


class Backend:
    """Interface: `time(module, input_shape) -> Timing`, `describe() -> dict`, `prepare(module, shape) -> call`."""

    name = "backend"
    device = torch.device("cpu")
    precision = "fp32"

    def __init__(self, threads: int = 1, samples: int = 15, warmup: int = 3, min_sample_ms: float = 2.0):
        self.threads, self.samples, self.warmup, self.min_sample_ms = threads, samples, warmup, min_sample_ms

    def describe(self) -> dict:
        raise NotImplementedError

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], object]:
        """One inference call of `module` on a fixed random input of `input_shape`, ready to time (on a GPU it
        only queues the work: call `sync` before reading the clock)."""
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for the device's queued work (`timing.device_sync`)."""
        device_sync(self.device)()

    def time(self, module: nn.Module, input_shape: tuple[int, ...]) -> Timing:
        """`timing.time_calls` of one prepared call (CUDA events on a GPU)."""
        return time_calls(self.prepare(module, input_shape), self.samples, self.warmup, self.min_sample_ms, self.sync,
                          device=self.device)

    def time_beside(self, module: nn.Module, input_shape: tuple[int, ...],
                    reference: Callable[[], object] | None = None) -> tuple[Timing, Timing]:
        """(`time`'s result, the reference conv's timed after each of its samples); CPU backends only."""
        if self.device.type != "cpu":
            raise ValueError(f"{self.name} on {self.device}: the reference conv runs on the CPU; time a GPU "
                             "without it")
        torch.set_num_threads(self.threads)  # the reference conv runs with the backend's thread count
        return time_beside_reference(self.prepare(module, input_shape), self.samples, self.warmup,
                                     self.min_sample_ms, reference)

    def method(self) -> str:
        return (f"median of {self.samples} samples (each >= {self.min_sample_ms} ms of back-to-back calls) after "
                f"{self.warmup} warm-up calls; spread = inter-quartile range; batch 1, {self.precision}")


class TorchBackend(Backend):
    """PyTorch eager, CPU (`threads` fixed) or CUDA (timed with CUDA events)."""

    name = "torch"

    def __init__(self, device: str = "cpu", **kw):
        super().__init__(**kw)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("the torch backend was asked for CUDA but no CUDA device is available; use "
                               "latency.device=cpu")
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


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, CPU execution provider, `threads` intra-op threads, spinning off (`nets.onnx.ort_session`),
    one ONNX export per block."""

    name = "onnxruntime"

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"backend": "onnxruntime", "device": cpu_name(), "device_type": "cpu", "threads": self.threads,
                "versions": {"onnxruntime": ort.__version__, "torch": torch.__version__}}

    def prepare(self, module, input_shape):
        x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        return ort_call(export_onnx(module, input_shape), x, self.threads)


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """ONNX Runtime as `OnnxRuntimeBackend`, each block quantised as the deployed int8 network is
    (`nets.onnx.quantize_int8`: static QDQ, int8 weights per channel, uint8 activations), calibrated on two seeded
    random inputs (speed does not depend on the calibration's values)."""

    name = "onnxruntime_int8"
    precision = "int8 (QDQ)"

    def describe(self) -> dict:
        return {**super().describe(), "backend": self.name, "precision": self.precision}

    def prepare(self, module, input_shape):
        rng = np.random.default_rng(0)
        if isinstance(module, QuantBoundary):
            model = qdq_model(input_shape)
        else:
            calibration = rng.standard_normal((2, *input_shape[1:])).astype(np.float32)
            model = quantized(export_onnx(module, input_shape), calibration)
        return ort_call(model, rng.standard_normal(input_shape).astype(np.float32), self.threads)


class TensorRTBackend(Backend):
    """TensorRT on a CUDA GPU, fp32 (or fp16) (optional: ``pip install .[tensorrt]``): an engine per block from its
    ONNX export (`nets.onnx.tensorrt_engine`), ``execute_async_v3`` timed with CUDA events."""

    name = "tensorrt"

    def __init__(self, fp16: bool = False, **kw):
        super().__init__(**kw)
        why = tensorrt_available()
        if why:
            raise RuntimeError(f"the tensorrt backend cannot run here: {why}")
        self.device, self.fp16 = torch.device("cuda"), fp16

    def describe(self) -> dict:
        import tensorrt as trt

        return {"backend": "tensorrt", "device": torch.cuda.get_device_name(0), "device_type": "cuda",
                "threads": self.threads, "precision": "fp16" if self.fp16 else "fp32",
                "versions": {"tensorrt": trt.__version__, "torch": torch.__version__}}

    def prepare(self, module, input_shape):
        return tensorrt_call(tensorrt_engine(export_onnx(module, input_shape), fp16=self.fp16), input_shape)


BACKENDS = {"torch": TorchBackend, "onnxruntime": OnnxRuntimeBackend, "onnxruntime_int8": OnnxRuntimeInt8Backend,
            "tensorrt": TensorRTBackend}
assert tuple(BACKENDS) == LATENCY_BACKENDS, "the config's backend names and the backends differ"


def get_backend(name: str, threads: int = 1, device: str = "cpu", **kw) -> Backend:
    """A backend by name (`BACKENDS`: ``torch``, ``onnxruntime``, ``onnxruntime_int8``, ``tensorrt``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown latency backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return TorchBackend(device=device, threads=threads, **kw)
    return BACKENDS[name](threads=threads, **kw)
