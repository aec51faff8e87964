"""The latency model: lookup tables (build, save, load, predict), backends, the differentiable
expected latency of a supernet and the latency penalty, validation against end-to-end measurement."""
import json

from fasterseg.config import comparable, profile
from fasterseg.latency.backends import get_backend
from fasterseg.latency.build import space_meta
from fasterseg.latency.calibrate import check_fit as fit
from fasterseg.latency.calibrate import runnable_here
from fasterseg.latency.keys import LatencyKey, network_blocks, space_keys  # noqa: F401
from fasterseg.latency.table import LatencyTable, LatencyTableError, MissingEntriesError  # noqa: F401
from fasterseg.nets.space import SearchSpace
from fasterseg.paths import resolve, where_relative_paths_resolve


def load_for(cfg, check_space: bool = True, check_fit: bool = False) -> "LatencyTable":
    """The table a `RunConfig` names, checked against its backend, threads, device type, resolution and
    search space; with `check_fit`, also whether it still fits this machine (``latency.calibration``)."""
    lc = cfg.latency
    expect = {"resolution": [lc.height, lc.width], "backend": lc.backend}
    if lc.backend != "tensorrt":  # the imported original table records no thread count
        expect["threads"] = lc.threads
    if lc.backend == "torch":
        expect["device_type"] = "cuda" if lc.device.startswith("cuda") else "cpu"
    path = resolve(lc.table)
    if not path.exists():
        raise LatencyTableError(f"no latency table at {path} (latency.table={lc.table}; "
                                f"{where_relative_paths_resolve()}); build it with {build_command(cfg)}")
    table = LatencyTable.load(path, expect=expect)
    if check_space:
        space = SearchSpace.from_config(cfg.space)
        want = space_meta(space, cfg.space.stem_head_widths, cfg.data.num_classes)
        have = table.meta.get("space", {})
        # the class count only changes the head's last convolution and the logits' up-sampling: those few entries
        # are measured here when the table's backend can run on this machine
        diff = [k for k in sorted(set(want) | set(have))
                if k != "num_classes" and comparable(have.get(k), 6) != comparable(want.get(k), 6)]
        if diff:
            table_has, config_has = [have.get(k) for k in diff], [want.get(k) for k in diff]
            raise LatencyTableError(f"{lc.table} was built for another search space ({', '.join(diff)} "
                                    f"differ: table {table_has}, config {config_has}); "
                                    f"build one with {build_command(cfg)}")
        keys = space_keys(space, cfg.space.stem_head_widths, cfg.data.num_classes, lc.height, lc.width,
                          glue=table.prices_glue)
        if table.missing(keys):
            why = runnable_here(table)
            if why:
                raise LatencyTableError(f"{lc.table} has no entries for data.num_classes={cfg.data.num_classes} "
                                        f"and cannot measure them here ({why}); build one with {build_command(cfg)}")
            backend = get_backend(table.meta["backend"], threads=int(table.meta.get("threads") or 1),
                                  device=table.meta.get("device_type") or "cpu")
            table.check_keys(keys, backend)
    if check_fit:
        table = fit(table, lc.calibration, lc.table, cfg.profile)
    return table


def build_command(cfg) -> str:
    """The command that builds a table for `cfg`: its profile with every data/space/latency override that changes
    the table, into a file of its own (never over a committed table), and how to use it."""
    base = profile(cfg.profile)
    fields = [("data", "num_classes")] + [("space", f) for f in base.to_dict(("space",))["space"]] + [
        ("latency", f) for f in ("backend", "device", "threads", "height", "width")]
    overrides = []
    for section, name in fields:
        mine, theirs = getattr(getattr(cfg, section), name), getattr(getattr(base, section), name)
        if comparable(mine) != comparable(theirs):
            overrides.append(f"{section}.{name}={json.dumps(comparable(mine), separators=(',', ':'))}")
    lc = cfg.latency
    out = f"runs/latency/{cfg.profile}-{lc.backend}-{lc.height}x{lc.width}-{cfg.data.num_classes}classes.csv"
    return (f"`fasterseg latency build --profile {cfg.profile} {' '.join(overrides) + ' ' if overrides else ''}"
            f"--out {out}`, then run with latency.table={out}")

