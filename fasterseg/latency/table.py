"""The latency lookup table (LUT): per block key the latency, its spread and the sample count,
stored as CSV with a JSON metadata sidecar (backend, device, threads, versions, resolution, batch,
date, timing method, search space).

The ``median_ms`` column holds the table's latency statistic, which the sidecar's ``method`` names: the median of
the samples for a bare table, the fastest sample at one reference speed for an interleaved one (`latency.build`).

A LUT is only valid for what it was built with: `load(..., expect=...)` refuses another resolution,
backend or search space, and `check_keys` lists the entries a search space needs but the table lacks.
"""
from __future__ import annotations

import csv
import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from fasterseg.latency.keys import LatencyKey, boundary_key, network_blocks
from fasterseg.nets.arch import Architecture
from fasterseg.nets.counting import count
from fasterseg.nets.ops import OPS
from fasterseg.paths import display_path
from fasterseg.timing import at_reference_speed

COLUMNS = ("op", "h", "w", "c_in", "c_out", "stride", "median_ms", "spread_ms", "count")


class LatencyTableError(ValueError):
    """A table that does not fit the request (metadata mismatch); the message says how to fix it."""


class MissingEntriesError(LatencyTableError):
    """Keys the table lacks; `.keys` lists them."""

    def __init__(self, keys: list[LatencyKey], hint: str = ""):
        self.keys = keys
        shown = "\n  ".join(str(k.as_tuple()) for k in keys[:10])
        more = f"\n  ... and {len(keys) - 10} more" if len(keys) > 10 else ""
        super().__init__(f"the latency table lacks {len(keys)} entr{'y' if len(keys) == 1 else 'ies'} "
                         f"(op, h, w, c_in, c_out, stride):\n  {shown}{more}\n{hint}".rstrip())


@dataclass
class Entry:
    median_ms: float
    spread_ms: float
    count: int


def sidecar(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


class LatencyTable:
    """Block latencies (ms) and the metadata saying what they are valid for."""

    def __init__(self, entries: dict[LatencyKey, Entry] | None = None, meta: dict | None = None):
        self.entries = dict(entries or {})
        self.meta = dict(meta or {})

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: LatencyKey) -> bool:
        return key.removed or key in self.entries

    def __getitem__(self, key: LatencyKey) -> float:
        """The block's latency inside a network, ms (0 for a stride-1 skip, which derived networks remove). In an
        int8 table, less the quantisation boundary on its input (`keys.boundary_key`), which a block timed alone pays
        and a network does not; times the table's `network_factor`."""
        if key.removed:
            return 0.0
        try:
            ms = self.entries[key].median_ms
        except KeyError:
            raise MissingEntriesError([key]) from None
        if key.op == "qdq":
            return ms
        boundary = self.entries.get(boundary_key(key))
        return max(0.0, ms - boundary.median_ms) * self.network_factor if boundary else ms * self.network_factor

    @property
    def network_factor(self) -> float:
        """A table's end-to-end correction (`latency.build.fit_network_factor`): measured over predicted latency of
        random networks timed at build; 1 for tables without one."""
        return float((self.meta.get("network_factor") or {}).get("factor", 1.0))

    def missing(self, keys: Iterable[LatencyKey]) -> list[LatencyKey]:
        return sorted({k for k in keys if k not in self})

    @property
    def prices_glue(self) -> bool:
        """Whether the table holds up-sampling/concatenation blocks (kit-built tables do)."""
        return bool(self.meta.get("prices_glue"))

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.meta.get("resolution", (0, 0)))

    @property
    def reference_ms(self) -> float | None:
        """The reference conv's time (ms) an interleaved table's entries are expressed at (None: bare times)."""
        ref = self.meta.get("reference") or {}
        return float(ref["at_ms"]) if ref.get("interleaved") and "at_ms" in ref else None

    def describe(self) -> str:
        m = self.meta
        return (f"{m.get('backend')} on {m.get('device')} ({m.get('threads')} thread(s)), "
                f"{self.resolution[0]}x{self.resolution[1]}, {len(self)} entries")

    # -- prediction -----------------------------------------------------------------------------
    def breakdown(self, arch: Architecture, height: int | None = None, width: int | None = None) -> pd.DataFrame:
        """Per block of `arch`'s derived network: key, part, latency (ms)."""
        h, w = (height, width) if height else self.resolution
        blocks = network_blocks(arch, h, w, glue=self.prices_glue)
        miss = self.missing(b.key for b in blocks)
        if miss:
            raise MissingEntriesError(miss, "build the missing entries: fasterseg latency build ... --resume")
        return pd.DataFrame([{**b.key.__dict__, "part": b.part, "branch": b.branch, "index": b.index,
                              "latency_ms": self[b.key]} for b in blocks])

    def predict(self, arch: Architecture, height: int | None = None, width: int | None = None) -> float:
        """Predicted latency (ms) of `arch`'s derived network: the sum of its blocks' entries (with the
        resizing/concatenation glue when the table prices it; kernel fusion and cache effects across
        blocks are not modelled)."""
        return float(self.breakdown(arch, height, width)["latency_ms"].sum())

    # -- files ----------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        rows = [{**k.__dict__, "median_ms": e.median_ms, "spread_ms": e.spread_ms, "count": e.count}
                for k, e in sorted(self.entries.items())]
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (CSV, sorted by key) and its ``.json`` sidecar."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.to_frame()
        df.to_csv(path, index=False, float_format="%.6g")
        sidecar(path).write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, expect: dict | None = None) -> "LatencyTable":
        """Read a table; with `expect` (e.g. ``{"resolution": [1024, 2048], "backend": "torch"}``) refuse
        one built for something else."""
        path = Path(path)
        if not path.exists():
            raise LatencyTableError(f"no latency table at {path}; build one with `fasterseg latency build`")
        meta_path = sidecar(path)
        if not meta_path.exists():
            raise LatencyTableError(f"{path} has no metadata sidecar {meta_path.name}; a table without it cannot "
                                    "be checked. Rebuild it with `fasterseg latency build`")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LatencyTableError(f"{meta_path} is damaged ({e}); restore it or rebuild the table with "
                                    "`fasterseg latency build --out NEW.csv`") from None
        if not isinstance(meta, dict):
            raise LatencyTableError(f"{meta_path} is not a table's sidecar (a JSON object); restore it or rebuild the "
                                    "table")
        entries, problems = {}, []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise LatencyTableError(f"{path}: columns {reader.fieldnames} differ from {list(COLUMNS)}")
            for line, row in enumerate(reader, start=2):
                try:
                    key = LatencyKey(row["op"], int(row["h"]), int(row["w"]), int(row["c_in"]), int(row["c_out"]),
                                     int(row["stride"]))
                    median = float(row["median_ms"])
                    spread = float(row["spread_ms"]) if row["spread_ms"] not in ("", "nan") else float("nan")
                    count = int(row["count"])
                except (TypeError, ValueError):
                    problems.append(f"line {line}: unreadable entry {dict(row)}")
                    continue
                if not math.isfinite(median) or median < 0:
                    problems.append(f"line {line}: {key.as_tuple()} has median_ms {median} (must be finite and >= 0)")
                elif key in entries:
                    problems.append(f"line {line}: {key.as_tuple()} appears twice")
                entries[key] = Entry(median, spread, count)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
            raise LatencyTableError(f"{path} has {len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'} "
                                    f"({shown}); rebuild it with `fasterseg latency build --no-resume`")
        table = cls(entries, meta)
        if expect:
            table.check_meta(expect, where=display_path(path))
        return table

    def check_meta(self, expect: dict, where: str = "the latency table") -> None:
        """Raise `LatencyTableError` listing every field of `expect` that the metadata contradicts."""
        bad = []
        for field, want in expect.items():
            have = self.meta.get(field)
            if isinstance(want, (tuple, list)):
                want, have = list(want), list(have) if isinstance(have, (tuple, list)) else have
            if have != want:
                bad.append(f"{field}: table has {have!r}, expected {want!r}")
        if bad:
            raise LatencyTableError(
                f"{where} was built for something else:\n  " + "\n  ".join(bad) +
                "\nA table is valid only for the device, backend, threads, resolution and search space it was "
                "built with; build a matching one with `fasterseg latency build --profile ...`")

    def check_keys(self, keys: Iterable[LatencyKey], backend=None) -> list[LatencyKey]:
        """Raise `MissingEntriesError` for keys the table lacks, unless `backend` can measure them on
        demand (it must match the table's backend and device); returns the keys measured."""
        miss = self.missing(keys)
        if not miss:
            return []
        if backend is None:
            raise MissingEntriesError(miss, "measure them with `fasterseg latency build --resume` (same backend "
                                      "and device), or pass a backend to measure on demand")
        desc = backend.describe()
        for f in ("backend", "device_type", "threads"):
            if self.meta.get(f) is not None and self.meta.get(f) != desc.get(f):
                raise LatencyTableError(f"cannot fill missing entries with {desc.get(f)!r}: the table's {f} is "
                                        f"{self.meta.get(f)!r}; measure on the table's own {f}")

        warnings.warn(f"measuring {len(miss)} entries the table lacks with {desc.get('backend')} on "
                      f"{desc.get('device')} (kept in memory, not written to the table)", stacklevel=3)
        ref = self.reference_ms if backend.device.type == "cpu" else None
        for k in tqdm(miss, desc="measuring missing latency entries", leave=False):
            if ref:  # an interleaved table: at its reference speed, as its own entries are
                t = at_reference_speed(*backend.time_beside(k.module(), k.input_shape()), ref)
            else:
                t = backend.time(k.module(), k.input_shape())
            self.entries[k] = Entry(t.median_ms, t.spread_ms, t.count)
        return miss


def latency_vs_macs(table: LatencyTable, ops: Sequence[str] | None = None, stride: int = 1) -> pd.DataFrame:
    """Per entry of the searched operators (`ops`, default all of the table's) at `stride`: op, the key's fields,
    its multiply-adds (counted on the block, `nets.counting.count`), its latency inside a network (ms, as
    `__getitem__`) and the achieved GMAC/s. What a FLOPs-based latency proxy would get wrong."""
    rows = []
    for k in sorted(operator_keys(table, ops, stride)):
        macs = macs_per_pixel(k.op, k.c_in, k.c_out, k.stride) * k.h * k.w
        ms = table[k]
        rows.append({**k.__dict__, "macs": macs, "latency_ms": ms, "gmacs_per_s": macs / ms / 1e6 if ms else math.nan})
    return pd.DataFrame(rows)


def op_cost_ratios(table: LatencyTable, ops: Sequence[str], base: str = "conv") -> pd.DataFrame:
    """Each operator of `ops` against `base` on the same input (H, W, C_in, C_out, stride 1): its latency inside a
    network over the base's, and its multiply-adds over the base's. One row per operator and scale (the input's
    height, as a fraction of the largest in the table) with the median over channel counts: scale, op,
    latency_ratio, macs_ratio, pairs."""
    rows = []
    for k in operator_keys(table, ops, 1):
        b = LatencyKey(base, k.h, k.w, k.c_in, k.c_out, 1)
        if b in table.entries and table[b] > 0:
            rows.append({"h": k.h, "op": k.op, "latency_ratio": table[k] / table[b],
                         "macs_ratio": macs_per_pixel(k.op, k.c_in, k.c_out, 1) / macs_per_pixel(base, k.c_in,
                                                                                                 k.c_out, 1)})
    df = pd.DataFrame(rows)
    top = int(df["h"].max())
    df["scale"] = [f"1/{8 * top // h}" for h in df["h"]]
    out = df.groupby(["scale", "op"], sort=False).agg(latency_ratio=("latency_ratio", "median"),
                                                      macs_ratio=("macs_ratio", "median"),
                                                      pairs=("latency_ratio", "size")).reset_index()
    order = {op: i for i, op in enumerate(ops)}
    return out.assign(_o=out["op"].map(order), _s=out["scale"].str[2:].astype(int)).sort_values(
        ["_o", "_s"]).drop(columns=["_o", "_s"]).reset_index(drop=True)


@functools.lru_cache(maxsize=None)
def macs_per_pixel(op: str, c_in: int, c_out: int, stride: int) -> float:
    """Multiply-adds of one operator block per input pixel: counted on an 8x16 input (every operator's maps scale
    with the input's area, so this times H x W is exact for sizes divisible by 4)."""
    key = LatencyKey(op, 8, 16, c_in, c_out, stride)
    return int(count(key.module(), key.input_shape()).loc["total", "macs"]) / 128


def operator_keys(table: LatencyTable, ops: Sequence[str] | None, stride: int) -> list[LatencyKey]:
    """The table's entries of searched operators (`nets.ops.OPS`, or `ops`) at `stride` that a network pays for."""
    wanted = set(ops) if ops is not None else set(OPS)
    return [k for k in table.entries if k.op in wanted and k.stride == stride and not k.removed]


def summary_lines(table: LatencyTable, archs: list[Architecture] = ()) -> list[str]:
    """A table's description, metadata, per-operator statistics, and the predicted latency of `archs` by part."""
    shown = ("method", "date", "versions", "complete", "build_seconds", "reference", "network_factor")
    lines = [table.describe()] + [f"  {k}: {table.meta[k]}" for k in shown if k in table.meta]
    stats = table.to_frame().groupby(["op", "stride"])["median_ms"].describe()
    lines.append(stats[["count", "min", "50%", "max"]].round(4).to_string())
    h, w = table.resolution
    for arch in archs:
        bd = table.breakdown(arch)
        ms = bd["latency_ms"].sum()
        lines += [f"\n{arch.name}: predicted {ms:.3f} ms ({1000 / ms:.1f} FPS) at {h}x{w}, "
                  f"{table.meta.get('backend')} on {table.meta.get('device')} (sum of block entries)",
                  bd.groupby("part")["latency_ms"].sum().round(4).to_string()]
    return lines
