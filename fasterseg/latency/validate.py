"""Validate a latency table: predicted (sum of block entries) against end-to-end measurement of random
derived networks with the same backend. Reports Spearman rank correlation and mean absolute
percentage error, each with a 95 % bootstrap interval over the networks."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import torch
from scipy.stats import ConstantInputWarning, DegenerateDataWarning, bootstrap, spearmanr
from tqdm.auto import tqdm

from fasterseg.latency import load_for
from fasterseg.latency.backends import Backend
from fasterseg.latency.table import LatencyTable
from fasterseg.nets.derive import DeriveRules, derive
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import ArchSet
from fasterseg.paths import write_text


def random_architectures(space: SearchSpace, n: int, stem_head_widths, num_classes: int, seed: int = 0,
                         rules: DeriveRules = DeriveRules()) -> list:
    """`n` derived networks from random architecture parameters (random temperature, skip bias, branch
    pair and stem/head widths), so operators, widths and paths vary widely."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = i % len(stem_head_widths)
        a = ArchSet(space, search_widths=True)
        with torch.no_grad():
            temp = float(torch.rand((), generator=g)) * 3 + 0.5
            for p in a.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * temp)
        ends = (32, 16) if i % 3 else (32, 8)
        out.append(derive(a, space, *stem_head_widths[k], num_classes, ends=ends, name=f"random{i}", rules=rules))
    return out


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
    rows = []
    for arch in tqdm(archs, desc="validating latency table", disable=not progress):
        net = DerivedNet(arch, aux=False)
        t = backend.time(net, (1, 3, h, w))
        row = {"name": arch.name, "predicted_ms": table.predict(arch), "measured_ms": t.median_ms,
               "spread_ms": t.spread_ms, "cells": sum(len(b.ops) for b in arch.branches),
               "ends": "+".join(str(b.ends_at) for b in arch.branches)}
        for other in compare:
            row[f"measured_ms_{other.name}"] = other.time(net, (1, 3, h, w)).median_ms
        rows.append(row)
    df = pd.DataFrame(rows)
    summary = {"networks": len(df), **agreement(df["predicted_ms"], df["measured_ms"]), "table": table.describe(),
               "backend": backend.describe(), "resolution": [h, w]}
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
    lines += [f"{k}: {v:.2f}x (same networks, end to end, {threads} thread(s))" for k, v in summary.items()
              if k.startswith("median_speedup")]
    return lines
