"""The latency model: lookup tables (build, save, load, predict), backends, the differentiable
expected latency of a supernet and the latency penalty, validation against end-to-end measurement."""
from fasterseg.latency.build import space_meta
from fasterseg.latency.calibrate import check_fit as fit
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
                                f"{where_relative_paths_resolve()}); build it with `fasterseg latency build "
                                f"--profile {cfg.profile}` or set latency.table=")
    table = LatencyTable.load(path, expect=expect)
    if check_space:
        space = SearchSpace.from_config(cfg.space)
        want = space_meta(space, cfg.space.stem_head_widths, cfg.data.num_classes)
        have = table.meta.get("space", {})
        diff = [k for k in want if _norm(have.get(k)) != _norm(want[k])]
        if diff:
            raise LatencyTableError(f"{cfg.latency.table} was built for another search space ({', '.join(diff)} "
                                    f"differ: table {[have.get(k) for k in diff]}, config {[want[k] for k in diff]}); "
                                    f"build one with `fasterseg latency build --profile {cfg.profile}`")
        table.check_keys(space_keys(space, cfg.space.stem_head_widths, cfg.data.num_classes, lc.height, lc.width,
                                    glue=table.prices_glue))
    if check_fit:
        table = fit(table, lc.calibration, lc.table, cfg.profile)
    return table


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float):
        return round(v, 6)
    return v
