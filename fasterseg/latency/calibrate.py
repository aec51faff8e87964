"""Does a latency table still fit this machine? A calibration probe, re-timed at load.

A table's probe is a fixed handful of its own entries (`probe_keys`: the heaviest blocks of each operator,
where per-call overheads matter least), timed at build and recorded in the sidecar (``probe``); tables
without one use the same keys and their recorded entries. `measure_fit` times them again with the table's
backend (about a second) and returns the factor measured / recorded (median over the probe). A factor
outside 1 ± 15 % means the machine is not the one the table was built on (another CPU model, vector
unit, clock, or load): every prediction is off by about that factor, and so is a search's FPS band.

`check_fit` applies ``latency.calibration``: ``check`` (refuse with the factor and the fixes), ``rescale``
(scale the entries by the factor in memory, with a warning), ``warn`` (say so and go on), ``off``.
`fasterseg latency calibrate` prints the factor and, with ``--write``, saves a rescaled copy.
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch

from fasterseg.latency.backends import get_backend
from fasterseg.latency.keys import LatencyKey
from fasterseg.latency.table import Entry, LatencyTable, LatencyTableError

TOLERANCE = 0.15
PROBE_SIZE = 8


def probe_keys(table: LatencyTable, n: int = PROBE_SIZE) -> list[LatencyKey]:
    """The probe: per operator (in turn), its slowest entries, `n` in all; deterministic for a table."""
    if "probe" in table.meta:
        return [LatencyKey(*k) for k in table.meta["probe"]["keys"]]
    by_op: dict[str, list[LatencyKey]] = {}
    for k, e in sorted(table.entries.items(), key=lambda kv: -kv[1].median_ms):
        if not k.removed and e.median_ms > 0 and k.op != "qdq":
            by_op.setdefault(k.op, []).append(k)
    keys, ops = [], sorted(by_op)
    while len(keys) < n and any(by_op.values()):
        for op in ops:
            if by_op[op] and len(keys) < n:
                keys.append(by_op[op].pop(0))
    return keys


def probe_meta(table: LatencyTable) -> dict:
    """The sidecar's ``probe`` entry for a freshly built table (its keys and their recorded medians)."""
    keys = probe_keys(table)
    return {"keys": [list(k.as_tuple()) for k in keys], "median_ms": [table.entries[k].median_ms for k in keys]}


def runnable_here(table: LatencyTable) -> str | None:
    """None when this machine can re-time the table's blocks, else the reason it cannot."""
    backend, dtype = table.meta.get("backend"), table.meta.get("device_type")
    if backend == "tensorrt":
        return "a TensorRT table (the probe needs TensorRT and the GPU it was built on)"
    if dtype == "cuda" and not torch.cuda.is_available():
        return "a CUDA table and no CUDA device here"
    if backend not in ("torch", "onnxruntime", "onnxruntime_int8"):
        return f"backend {backend!r}"
    return None


def time_block(backend, key: LatencyKey) -> float:
    """One probe block timed with `backend` (ms): the machine's answer (tests replace it with a fixed clock)."""
    return backend.time(key.module(), key.input_shape()).median_ms


def measure_fit(table: LatencyTable, samples: int = 5) -> dict:
    """Re-time the probe with the table's backend, threads and device (`time_block`): ``factor`` (median of
    measured / recorded), the per-block ratios, the seconds it took."""
    backend = get_backend(table.meta["backend"], threads=int(table.meta.get("threads") or 1),
                          device=table.meta.get("device_type") or "cpu", samples=samples, warmup=2, min_sample_ms=1.0)
    t0 = time.perf_counter()
    recorded = dict(zip((tuple(k) for k in table.meta.get("probe", {}).get("keys", [])),
                        table.meta.get("probe", {}).get("median_ms", [])))
    ratios = []
    for k in probe_keys(table):
        then = recorded.get(k.as_tuple(), table.entries[k].median_ms)
        ratios.append(time_block(backend, k) / then)
    return {"factor": statistics.median(ratios), "ratios": ratios, "seconds": time.perf_counter() - t0,
            "blocks": len(ratios)}


def rescaled(table: LatencyTable, factor: float, note: str = "") -> LatencyTable:
    """A copy of `table` with every entry multiplied by `factor` (and the probe's recorded times)."""
    entries = {k: Entry(e.median_ms * factor, e.spread_ms * factor, e.count) for k, e in table.entries.items()}
    meta = dict(table.meta)
    if "probe" in meta:
        meta["probe"] = {**meta["probe"], "median_ms": [m * factor for m in meta["probe"]["median_ms"]]}
    meta["rescaled"] = meta.get("rescaled", []) + [{"factor": factor, "date": time.strftime("%Y-%m-%d"),
                                                    "note": note}]
    return LatencyTable(entries, meta)


def check_fit(table: LatencyTable, mode: str, where: str, profile: str = "...") -> LatencyTable:
    """Apply ``latency.calibration`` (`mode`) to `table` (loaded from `where`); returns the table to use."""
    if mode == "off":
        return table
    why_not = runnable_here(table)
    if why_not:
        return table  # nothing to measure on this machine (the table's own sidecar says what it is for)
    fit = measure_fit(table)
    f = fit["factor"]
    if abs(f - 1) <= TOLERANCE:
        return table
    msg = (f"{where} does not fit this machine: its probe blocks run {f:.2f}x the recorded times here "
           f"({fit['blocks']} blocks, {fit['seconds']:.1f} s), so every prediction and the FPS band are off by about "
           f"that factor")
    if mode == "check":
        raise LatencyTableError(
            msg + f". Rebuild it (`fasterseg latency build --profile {profile} --no-resume`), write a rescaled copy "
            f"(`fasterseg latency calibrate --profile {profile} --write NEW.csv`), or say which: "
            "latency.calibration=rescale (scale in memory) or latency.calibration=warn (use it as it is)")
    warnings.warn(msg + ("; scaled in memory (latency.calibration=rescale)" if mode == "rescale" else
                         "; used as it is (latency.calibration=warn)"), stacklevel=2)
    return rescaled(table, f, f"in memory, from {where}") if mode == "rescale" else table


def fit_warning(table: LatencyTable, where: str) -> str | None:
    """A one-line warning when `table` no longer fits this machine (its probe off by more than the tolerance),
    naming the factor and the fixes; None when it fits or cannot be re-timed here."""
    if runnable_here(table):
        return None
    f = measure_fit(table)["factor"]
    if abs(f - 1) <= TOLERANCE:
        return None
    return (f"warning: {where} does not fit this machine: its probe blocks run {f:.2f}x the recorded times here, so "
            "every prediction below is off by about that factor; rebuild it (fasterseg latency build --out NEW.csv) "
            "or rescale it (fasterseg latency calibrate --write NEW.csv)")


def calibrate_table(path, write=None) -> list[str]:
    """`fasterseg latency calibrate`: the factor of the table at `path` on this machine, per block; with
    `write`, a copy rescaled by it. Returns the lines to print."""
    table = LatencyTable.load(path)
    why_not = runnable_here(table)
    if why_not:
        raise LatencyTableError(f"{path} cannot be re-timed here: {why_not}")
    fit = measure_fit(table)
    lines = [f"{path}: the probe's {fit['blocks']} blocks run {fit['factor']:.3f}x the recorded times on this "
             f"machine (per block: {', '.join(f'{r:.2f}' for r in fit['ratios'])}; {fit['seconds']:.1f} s)"]
    if write:
        out = rescaled(table, fit["factor"], f"rescaled from {path}").save(write)
        lines.append(f"rescaled copy written to {out} (point latency.table at it)")
    return lines
