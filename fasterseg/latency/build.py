"""Build a latency table for a search space on this machine: de-duplicated keys, a progress bar,
and resumable (rows are appended as they are measured; ``resume=True`` skips what the file holds).

Interleaved build (CPU backends, ``latency.interleave``, the default): every entry is timed with the reference
conv after each of its samples (`Backend.time_beside`) and stored at the reference speed the build started at
(`timing.at_reference_speed`: the block's fastest sample over the reference's fastest, times the starting
reference); at the end the whole table is rescaled to the median reference speed seen over the build. A machine
that slows down under load halfway through slows block and reference alike, and the entries stay consistent
with each other. The sidecar's ``reference`` records the reference conv's time the entries are expressed at
(``at_ms``, and in GMAC/s), the speeds seen over the build (5th-95th percentile over the median) and the load
average at start and end.

An int8 table also prices the quantisation boundary (``qdq`` keys: quantise then dequantise a tensor): a block
timed alone quantises its input and dequantises its output, which inside a network happens only at the ends
(`LatencyTable.__getitem__` takes the boundary off each block but the first).

Network factor (`fit_network_factor`, ``latency.factor_networks`` networks, default 10): blocks timed alone and
blocks inside a network differ by more than the boundary (ONNX Runtime changes the memory layout around each int8
or blocked-fp32 convolution, which a network does once; caches). After the blocks, that many random derived
networks (seed `FACTOR_SEED`, never the validation's) are timed end to end the same way, and the median of
measured over predicted becomes the table's ``network_factor``, applied to every block. It is one number, so it
moves no ranking; `latency validate` checks the result on other networks.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from fasterseg.latency.backends import Backend
from fasterseg.latency.calibrate import probe_meta
from fasterseg.latency.keys import LatencyKey, boundary_keys, space_keys
from fasterseg.latency.networks import measure_networks, random_architectures
from fasterseg.latency.table import COLUMNS, Entry, LatencyTable, LatencyTableError, sidecar
from fasterseg.nets.derive import DeriveRules
from fasterseg.nets.ops import PRIMITIVES
from fasterseg.nets.space import SearchSpace
from fasterseg.timing import REF_MACS, at_reference_speed, reference_conv, time_calls


def space_meta(space: SearchSpace, stem_head_widths, num_classes: int) -> dict:
    """The search space a table covers, as its sidecar records it (the stem, operators, searched stems and decision
    forms only when not the paper's, so tables built before those options existed still match)."""
    meta = {"layers": space.layers, "fch": space.fch, "width_ratios": list(space.width_ratios),
            "stem_head_widths": [list(x) for x in stem_head_widths], "num_classes": num_classes}
    if space.stem != "original":
        meta["stem"] = space.stem
    if space.ops != PRIMITIVES:
        meta["ops"] = list(space.ops)
    if space.stems:
        meta["stems"] = list(space.stems)
    if tuple(space.decisions) != ("bilinear8",):
        meta["decisions"] = list(space.decisions)
    return meta


def build_table(path: str | Path, backend: Backend, space: SearchSpace, stem_head_widths: Sequence,
                num_classes: int, height: int, width: int, resume: bool = True, progress: bool = True,
                keys: list[LatencyKey] | None = None, interleave: bool = True, factor_networks: int = 0,
                rules: DeriveRules = DeriveRules()) -> LatencyTable:
    """Measure every key of the space at `height` x `width` with `backend` and save to `path`
    (CSV + ``.json`` sidecar); `interleave` (CPU backends): each entry at one reference speed; `factor_networks`:
    fit the network factor on that many random networks derived under `rules` (module docstring). Returns the
    table."""
    interleave = interleave and backend.device.type == "cpu"
    path = Path(path)
    keys = sorted(set(keys if keys is not None else space_keys(space, stem_head_widths, num_classes, height, width)))
    if backend.precision.startswith("int8"):
        keys = sorted(set(keys) | set(boundary_keys(keys)))
    meta = {**backend.describe(), "resolution": [height, width], "batch": 1, "precision": backend.precision,
            "method": backend.method() + ("; interleaved with the reference conv: each entry is the block's fastest "
                                          "sample over the reference's fastest, at one reference speed"
                                          if interleave else ""),
            "space": space_meta(space, stem_head_widths, num_classes),
            "interpolation": "bilinear", "date": time.strftime("%Y-%m-%d"), "complete": False,
            "prices_glue": True, "note": "stride-1 skips cost 0: derived networks remove them"}
    done: dict[LatencyKey, Entry] = {}
    earlier_seconds = 0.0
    if path.exists() and resume:
        old = LatencyTable.load(path)
        for f in ("backend", "device", "threads", "resolution", "space"):
            if old.meta.get(f) != meta.get(f):
                raise LatencyTableError(f"cannot resume {path}: its {f} is {old.meta.get(f)!r}, this build's is "
                                        f"{meta.get(f)!r}. Use another path or resume=False")
        if bool(old.meta.get("reference", {}).get("interleaved")) != interleave:
            raise LatencyTableError(f"cannot resume {path}: it was built {'with' if not interleave else 'without'} "
                                    "the reference conv interleaved; use the same latency.interleave")
        done = old.entries
        earlier_seconds = float(old.meta.get("build_seconds", 0.0))
        meta["reference"] = old.meta.get("reference", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    todo = [k for k in keys if k not in done and not k.removed]
    ref = reference_conv() if interleave else None
    if interleave and not meta.get("reference"):
        torch.set_num_threads(backend.threads)  # the reference conv runs with the backend's thread count
        start = time_calls(ref, samples=15, warmup=3).min_ms
        meta["reference"] = {"interleaved": True, "start_ms": start, "load_start": os.getloadavg()[0]}
    sidecar(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    t0 = time.perf_counter()
    beside: list[float] = []
    with open(path, "a" if done else "w", newline="") as f:
        writer = csv.writer(f)
        if not done:
            writer.writerow(COLUMNS)
        for k in tqdm(todo, desc=f"latency table ({backend.name})", disable=not progress):
            if interleave:
                t, r = backend.time_beside(k.module(), k.input_shape(), ref)
                beside.append(r.min_ms)
                t = at_reference_speed(t, r, meta["reference"]["start_ms"])
            else:
                t = backend.time(k.module(), k.input_shape())
            done[k] = Entry(t.median_ms, t.spread_ms, t.count)
            writer.writerow([*k.as_tuple(), f"{t.median_ms:.6g}", f"{t.spread_ms:.6g}", t.count])
            f.flush()
    meta.update(complete=True, build_seconds=round(earlier_seconds + time.perf_counter() - t0, 1), entries=len(done))
    if interleave:
        meta["reference"] = rescaled(done, meta["reference"], beside)
    table = LatencyTable(done, meta)
    if factor_networks:
        table.meta["network_factor"] = fit_network_factor(table, backend, space, stem_head_widths, num_classes, rules,
                                                          factor_networks, progress)
    table.meta["probe"] = probe_meta(LatencyTable(done, {k: v for k, v in meta.items() if k != "probe"}))
    table.save(path)  # rewrite sorted, with the final metadata
    return table


def rescaled(entries: dict[LatencyKey, Entry], reference: dict, beside: list[float]) -> dict:
    """Scale `entries` (in place) from the build's starting reference speed to the median reference speed over the
    entries timed (`beside`: the reference's fastest sample beside each entry, ms); returns the sidecar's
    ``reference`` (module docstring)."""
    if not beside:
        return reference
    at = statistics.median(beside)
    factor = at / reference["start_ms"]
    for e in entries.values():
        e.median_ms, e.spread_ms = e.median_ms * factor, e.spread_ms * factor
    lo, hi = (float(x) for x in np.percentile(beside, [5, 95]))
    return {**reference, "at_ms": at, "gmacs_per_s": REF_MACS / at / 1e6,
            "speeds_seen": [round(lo / at, 3), round(hi / at, 3)], "load_end": os.getloadavg()[0]}


FACTOR_SEED = 1000  # the networks a network factor is fitted on (validation uses seeds from 0)


def fit_network_factor(table: LatencyTable, backend: Backend, space: SearchSpace, stem_head_widths: Sequence,
                       num_classes: int, rules: DeriveRules, networks: int, progress: bool = True) -> dict:
    """Time `networks` random derived networks of the space end to end (`networks.measure_networks`) and return the
    sidecar's ``network_factor``: the median of measured / predicted (before any factor), its spread (min, max)
    and the networks' seed."""
    table.meta.pop("network_factor", None)
    archs = random_architectures(space, networks, stem_head_widths, num_classes, seed=FACTOR_SEED, rules=rules)
    rows = measure_networks(table, backend, archs, progress, "fitting the network factor")
    ratios = [r["measured_ms"] / r["predicted_ms"] for r in rows]
    return {"factor": float(np.median(ratios)), "min": float(min(ratios)), "max": float(max(ratios)),
            "networks": networks, "seed": FACTOR_SEED}


def build_for(cfg, backend: Backend, path: str | Path, resume: bool = True, force: bool = False) -> LatencyTable:
    """Build (or complete) the table of a config's search space and deployment resolution at `path`. A complete
    table already there is never rewritten unless `force` (a committed table stays as it was measured); a partial
    one is completed (`resume`), or started over with ``resume=False`` and `force`."""
    path = Path(path)
    if path.exists() and not force:
        try:
            complete = LatencyTable.load(path).meta.get("complete", False)
        except LatencyTableError:
            complete = True  # unreadable: do not touch it either
        if complete or not resume:
            raise LatencyTableError(
                f"{path} already holds a {'complete ' if complete else ''}latency table; write the new one elsewhere "
                "with --out NEW.csv (then latency.table=NEW.csv), or replace it with --force")
    space = SearchSpace.from_config(cfg.space)
    lc = cfg.latency
    return build_table(path, backend, space, cfg.space.stem_head_widths, cfg.data.num_classes, lc.height, lc.width,
                       resume=resume, interleave=lc.interleave, rules=DeriveRules.from_config(cfg.space),
                       factor_networks=lc.factor_networks if lc.interleave and backend.device.type == "cpu" else 0)
