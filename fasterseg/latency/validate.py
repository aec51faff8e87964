"""Validate a latency table: predicted (sum of block entries) against end-to-end measurement of random
derived networks with the same backend. Reports Spearman rank correlation and mean absolute
percentage error, each with a 95 % bootstrap interval over the networks, and the load average before and after.
An interleaved table (its entries at one reference-conv speed) is checked the same way: each network is timed with
the reference conv beside it and brought to the table's reference speed (`timing.at_reference_speed`); the
agreement with the raw medians is reported beside."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
from scipy.stats import ConstantInputWarning, DegenerateDataWarning, bootstrap, spearmanr

from fasterseg.latency import load_for
from fasterseg.latency.backends import Backend
from fasterseg.latency.networks import measure_networks, random_architectures
from fasterseg.latency.table import LatencyTable
from fasterseg.nets.derive import DeriveRules
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.space import SearchSpace
from fasterseg.paths import write_text
from fasterseg.timing import REF_MACS


MIN_NETWORKS_FOR_CI = 8  # fewer networks give no bootstrap interval worth quoting (most resamples repeat one)


def agreement(predicted_ms, measured_ms, resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman rank correlation, mean absolute percentage error (a fraction) and the median
    predicted/measured ratio of paired latencies (ms), with 95 % percentile bootstrap intervals
    (networks resampled with replacement, `resamples` times, seeded): keys ``spearman``,
    ``spearman_ci``, ``mape``, ``mape_ci`` (None under `MIN_NETWORKS_FOR_CI` networks),
    ``median_predicted_over_measured``."""
    pred, meas = np.asarray(predicted_ms, float), np.asarray(measured_ms, float)

    def rho(p, m, axis=-1):  # one row per resample when vectorised
        if p.ndim == 1:
            return spearmanr(p, m).statistic
        return np.array([spearmanr(a, b).statistic for a, b in zip(p, m)])

    def mape(p, m, axis=-1):
        return (np.abs(p - m) / m).mean(axis=axis)

    out = {"spearman": float(rho(pred, meas)), "mape": float(mape(pred, meas)),
           "median_predicted_over_measured": float(np.median(pred / meas))}
    if len(pred) < MIN_NETWORKS_FOR_CI:
        return {**out, "spearman_ci": None, "mape_ci": None}
    for name, stat in (("spearman", rho), ("mape", mape)):
        with warnings.catch_warnings():  # the odd resample that repeats one network has no rank correlation
            warnings.simplefilter("ignore", ConstantInputWarning)
            warnings.simplefilter("ignore", DegenerateDataWarning)
            ci = bootstrap((pred, meas), stat, paired=True, vectorized=True, n_resamples=resamples,
                           method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
        out[f"{name}_ci"] = [float(ci.low), float(ci.high)]
    return out


def validate(table: LatencyTable, backend: Backend, archs: list, progress: bool = True,
             compare: list[Backend] = ()) -> tuple[pd.DataFrame, dict]:
    """Measure every architecture end to end and compare with the table's prediction.

    `compare`: further backends that measure the same networks (columns ``measured_ms_<name>``).
    Returns (per-network frame: predicted_ms, measured_ms, spread_ms, ...; summary dict)."""
    h, w = table.resolution
    ref_ms = table.reference_ms if backend.device.type == "cpu" else None
    load = [os.getloadavg()[0]]
    rows = measure_networks(table, backend, archs, progress, "validating latency table")
    for arch, row in zip(archs, rows):
        for other in compare:
            row[f"measured_ms_{other.name}"] = other.time(DerivedNet(arch, aux=False), (1, 3, h, w)).median_ms
    df = pd.DataFrame(rows)
    load.append(os.getloadavg()[0])
    summary = {"networks": len(df), **agreement(df["predicted_ms"], df["measured_ms"]), "table": table.describe(),
               "backend": backend.describe(), "resolution": [h, w], "load_average": load,
               "normalised_to_reference": bool(ref_ms)}
    if ref_ms:
        summary["reference_gmacs_per_s"] = {"table": REF_MACS / ref_ms / 1e6,
                                            "validation": REF_MACS / float(df["reference_ms"].median()) / 1e6}
        summary["raw"] = agreement(df["predicted_ms"], df["measured_ms_raw"])
    for other in compare:
        col = f"measured_ms_{other.name}"
        summary[f"median_speedup_{other.name}_vs_{backend.name}"] = float((df["measured_ms"] / df[col]).median())
    return df, summary


def validate_config(cfg, backend: Backend, out, networks: int, seed: int = 0,
                    compare: list[Backend] = ()) -> tuple[pd.DataFrame, dict]:
    """Validate the table a config names against `backend` on `networks` random derived networks; writes
    ``validation.csv``, ``summary.json`` and ``config.json`` to `out`; returns the table and the summary."""
    table = load_for(cfg)
    space = SearchSpace.from_config(cfg.space)
    nets = random_architectures(space, networks, cfg.space.stem_head_widths, cfg.data.num_classes, seed=seed,
                                rules=DeriveRules.from_config(cfg.space))
    df, summary = validate(table, backend, nets, compare=list(compare))
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "validation.csv", index=False)
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    cfg.save(out / "config.json")
    return df, summary


def summary_lines(summary: dict, threads: int) -> list[str]:
    """The terminal lines of a validation summary."""
    ratio = summary["median_predicted_over_measured"]
    rho_ci, mape_ci = summary.get("spearman_ci"), summary.get("mape_ci")
    rho_ci = f" [{rho_ci[0]:.3f}, {rho_ci[1]:.3f}]" if rho_ci else ""
    mape_ci = f" [{100 * mape_ci[0]:.1f}, {100 * mape_ci[1]:.1f}]" if mape_ci else ""
    lines = [f"{summary['networks']} networks, {summary['table']}: Spearman {summary['spearman']:.3f}{rho_ci}, "
             f"MAPE {100 * summary['mape']:.1f} %{mape_ci}, median predicted/measured {ratio:.3f} "
             "(95 % bootstrap intervals over the networks)"]
    if summary.get("normalised_to_reference"):
        raw, rate = summary["raw"], summary["reference_gmacs_per_s"]
        lines.append(f"each network at the table's reference speed, timed beside the reference conv "
                     f"({rate['validation']:.0f} GMAC/s now, {rate['table']:.0f} in the table); raw medians: Spearman "
                     f"{raw['spearman']:.3f}, MAPE {100 * raw['mape']:.1f} %")
    if "load_average" in summary:
        lines.append("load average {:.2f} before, {:.2f} after".format(*summary["load_average"]))
    lines += [f"{k}: {v:.2f}x (same networks, end to end, {threads} thread(s))" for k, v in summary.items()
              if k.startswith("median_speedup")]
    return lines
