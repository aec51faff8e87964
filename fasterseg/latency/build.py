"""Build a latency table for a search space on this machine: de-duplicated keys, a progress bar,
and resumable (rows are appended as they are measured; ``resume=True`` skips what the file holds)."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from fasterseg.latency.backends import Backend
from fasterseg.latency.calibrate import probe_meta
from fasterseg.latency.keys import LatencyKey, space_keys
from fasterseg.latency.table import COLUMNS, Entry, LatencyTable, LatencyTableError, sidecar
from fasterseg.nets.space import SearchSpace


def space_meta(space: SearchSpace, stem_head_widths, num_classes: int) -> dict:
    """The search space a table covers, as its sidecar records it (the stem only when not the original's, so
    tables built before the option existed still match)."""
    meta = {"layers": space.layers, "fch": space.fch, "width_ratios": list(space.width_ratios),
            "stem_head_widths": [list(x) for x in stem_head_widths], "num_classes": num_classes}
    return meta if space.stem == "original" else {**meta, "stem": space.stem}


def build_table(path: str | Path, backend: Backend, space: SearchSpace, stem_head_widths: Sequence,
                num_classes: int, height: int, width: int, resume: bool = True, progress: bool = True,
                keys: list[LatencyKey] | None = None) -> LatencyTable:
    """Measure every key of the space at `height` x `width` with `backend` and save to `path`
    (CSV + ``.json`` sidecar). Returns the table."""
    path = Path(path)
    keys = sorted(set(keys if keys is not None else space_keys(space, stem_head_widths, num_classes, height, width)))
    meta = {**backend.describe(), "resolution": [height, width], "batch": 1, "precision": "fp32",
            "method": backend.method(), "space": space_meta(space, stem_head_widths, num_classes),
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
        done = old.entries
        earlier_seconds = float(old.meta.get("build_seconds", 0.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    todo = [k for k in keys if k not in done and not k.removed]
    sidecar(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    t0 = time.perf_counter()
    with open(path, "a" if done else "w", newline="") as f:
        writer = csv.writer(f)
        if not done:
            writer.writerow(COLUMNS)
        for k in tqdm(todo, desc=f"latency table ({backend.name})", disable=not progress):
            t = backend.time(k.module(), k.input_shape())
            done[k] = Entry(t.median_ms, t.spread_ms, t.count)
            writer.writerow([*k.as_tuple(), f"{t.median_ms:.6g}", f"{t.spread_ms:.6g}", t.count])
            f.flush()
    meta.update(complete=True, build_seconds=round(earlier_seconds + time.perf_counter() - t0, 1), entries=len(done))
    table = LatencyTable(done, meta)

    table.meta["probe"] = probe_meta(LatencyTable(done, {k: v for k, v in meta.items() if k != "probe"}))
    table.save(path)  # rewrite sorted, with the final metadata
    return table


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
    return build_table(path, backend, space, cfg.space.stem_head_widths, cfg.data.num_classes, cfg.latency.height,
                       cfg.latency.width, resume=resume)
