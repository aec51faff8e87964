"""The main job, `fasterseg pipeline`: from data to a searched, trained, distilled, evaluated and exported
student, with a report. Stages (one line each; every stage resumable and skipped when done):

1. data: the synthetic street scenes generated (or a real data set's tree checked);
2. latency table: loaded and checked against the config;
3. search: pretraining and co-search of teacher and student (`fasterseg.nas`) in ``<out>/search``;
4. derive: the final teacher and student architectures in ``<out>/archs``;
5. teacher: trained from scratch (`fasterseg.training`) in ``<out>/train-teacher``;
6. student: trained from scratch, distilled from the teacher, in ``<out>/train-student``;
7. evaluate: both on the whole validation images, with the majority baseline and measured latency;
8. export: the student as ONNX (BN folded), checked against PyTorch with ONNX Runtime;
9. report: ``<out>/report.md`` with its figures in ``<out>/figures``.

`run_pipeline` returns a `PipelineResult`; `summary_lines` formats its table for the terminal.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from fasterseg import faults
from fasterseg.config import RunConfig
from fasterseg.data.prepare import prepare_data
from fasterseg.deploy.export import export_run
from fasterseg.evaluation.run import evaluate_run
from fasterseg.latency import load_for
from fasterseg.nas.records import final_arch
from fasterseg.nas.run import run_search
from fasterseg.nets.counting import totals
from fasterseg.nets.footprint import check_run
from fasterseg.nets.network import DerivedNet
from fasterseg.paths import check_writable
from fasterseg.report import write_report
from fasterseg.runs import RunError, load_history, run_status
from fasterseg.runtime import Runtime
from fasterseg.training.trainer import run_train, weights_complete

STAGES = 9


@dataclass
class PipelineResult:
    out: Path
    archs: dict[str, Path] = field(default_factory=dict)  # arch set -> architecture JSON
    summary: pd.DataFrame | None = None  # one row per network
    report: Path | None = None
    figures: list[Path] = field(default_factory=list)


def derived_summary(cfg: RunConfig, run: Path, lut) -> tuple[pd.DataFrame, dict]:
    """Per architecture set of a finished search: branches, parameters (M) and GMACs at the latency
    resolution (inference network), predicted latency (ms) and FPS from `lut`, and the search-time
    validation mIoU (supernet weights) of the chosen pair. Returns the table and the architectures."""
    ep = load_history(run)["epochs"]
    H, W = cfg.latency.height, cfg.latency.width
    rows, archs = [], {}
    for name in ep["arch_set"].unique():
        arch = final_arch(run, name)
        last = ep[(ep["arch_set"] == name) & (ep["phase"] == "search")].iloc[-1]
        params, gmacs = totals(DerivedNet(arch, aux=False), (1, 3, H, W))
        ms = lut.predict(arch)
        rows.append({"network": name, "branches": last["ends"], "params_M": params, "GMACs": gmacs,
                     "predicted_ms": ms, "search_miou": last[f"miou_{last['ends']}"]})
        archs[name] = arch
    return pd.DataFrame(rows).set_index("network"), archs


def _stage(say, k: int, name: str, text: str) -> None:
    say(f"[{k}/{STAGES} {name}] {text}")
    faults.hit(f"pipeline.{name.replace(' ', '_')}")


PIPELINE_SECTIONS = ("data", "space", "latency", "search", "train", "distill", "eval", "export")


def run_pipeline(cfg: RunConfig, out: str | Path, say: Callable[[str], None] = print,
                 progress: bool = True) -> PipelineResult:
    """Run every stage into `out` (see the module docstring); a stage whose outputs are complete is skipped.

    A pipeline folder keeps the config it was started with (``pipeline.json``): another config (``runtime``
    aside) is refused naming the differences, as a search or a training refuses one. Before a stage is
    skipped, its outputs are checked (final architectures, weights, evaluation with its figures, the ONNX file
    against its recorded checksum); incomplete ones are made again. Under ``torchrun`` every rank searches and
    trains (data-parallel); data preparation, the derived architectures, evaluation, export and the report are
    rank 0's, with a barrier after each, so no rank reads what another is still writing."""
    check_run(cfg)
    out = Path(out)
    check_writable(out)
    rt = Runtime.start(cfg.runtime)
    say = say if rt.main else (lambda *a, **k: None)
    progress = progress and rt.main
    if rt.main:
        _check_pipeline_config(out, cfg)
    res = PipelineResult(out)
    d = cfg.data
    root = prepare_data(d, progress=progress) if rt.main else None
    rt.barrier()
    _stage(say, 1, "data", f"{d.dataset} at {root}" + (f" ({d.num_train}+{d.num_val} images, {d.image_height}x"
                                                         f"{d.image_width})" if d.dataset == "synthetic" else ""))
    lut = load_for(cfg)
    _stage(say, 2, "latency table", f"{cfg.latency.table}: {lut.describe()}")

    def stage_run(k, name, folder, what, go, complete=lambda: True):
        status = run_status(folder)
        if status == "done" and not complete():
            status = "partial"  # marked done, outputs missing: resuming repairs them (run_train rewrites weights)
        note = {"new": "", "partial": " (continuing)", "done": " (done: skipped)"}[status]
        _stage(say, k, name, f"{what} in {folder}{note}")
        if status != "done":
            go(resume=status == "partial")

    sc = cfg.search
    search = out / "search"
    stage_run(3, "search", search, f"{sc.pretrain_epochs} pretraining + {sc.search_epochs} search epochs",
              lambda resume: run_search(cfg, search, resume=resume, progress=progress))
    derived, archs = derived_summary(cfg, search, lut)
    for name, arch in archs.items():
        path = out / "archs" / f"{name}.json"
        res.archs[name] = arch.save(path) if rt.main else path
    rt.barrier()
    _stage(say, 4, "derive", ", ".join(f"{n}: {r.branches}, {r.params_M:.2f} M params, {r.predicted_ms:.2f} ms "
                                        "predicted" for n, r in derived.iterrows()))
    tc = cfg.train
    runs = {"teacher": out / "train-teacher", "student": out / "train-student"}
    stage_run(5, "teacher", runs["teacher"], f"{tc.epochs} epochs x {tc.steps_per_epoch} steps from scratch",
              lambda resume: run_train(cfg, res.archs["teacher"], runs["teacher"], resume=resume, progress=progress),
              lambda: weights_complete(runs["teacher"]))
    stage_run(6, "student", runs["student"], f"{tc.epochs} epochs, distilled from the teacher "
              f"(weight {cfg.distill.weight}, T={cfg.distill.temperature})",
              lambda resume: run_train(cfg, res.archs["student"], runs["student"], resume=resume,
                                       teacher=runs["teacher"], progress=progress),
              lambda: weights_complete(runs["student"]))
    if rt.main:
        metrics = {name: _evaluated(cfg, run, progress) for name, run in runs.items()}
        _stage(say, 7, "evaluate", ", ".join(f"{n}: mIoU {100 * m['miou']:.1f} %" for n, m in metrics.items())
               + f" (majority class {100 * metrics['student']['majority_baseline']['miou']:.1f} %)")
        exported = _exported(cfg, runs["student"])
        _stage(say, 8, "export", f"{exported['onnx']} (max |ONNX Runtime - PyTorch| "
               f"{exported.get('max_abs_diff', 0):.2g}; TensorRT {exported['tensorrt']})")
        res.summary = summary_table(derived, metrics)
        res.report, res.figures = write_report(cfg, out, res.summary, runs, metrics, exported, res.archs)
        _stage(say, 9, "report", str(res.report))
    rt.barrier()
    return res


def _check_pipeline_config(out: Path, cfg: RunConfig) -> None:
    """Record the config of a new pipeline folder; refuse another one for an existing folder."""
    f = out / "pipeline.json"
    if f.exists():
        try:
            stored = RunConfig.load(f)
        except (OSError, ValueError) as e:
            raise RunError(f"{f} is damaged ({e}); delete it to adopt the current config, or choose another --out") \
                from None
        diff = stored.differences(cfg, PIPELINE_SECTIONS)
        if diff:
            raise RunError(f"the pipeline in {out} was started with another config ({'; '.join(diff)}); run it with "
                           "the same profile and overrides, or choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        if (out / "search").exists() or (out / "train-teacher").exists():
            # a pipeline folder of an earlier kit version, which kept no pipeline.json: its search holds the config
            stored = RunConfig.load(out / "search" / "config.json") if (out / "search" / "config.json").exists() \
                else None
            diff = stored.differences(cfg, ("data", "space", "latency", "search")) if stored else []
            if diff:
                raise RunError(f"the pipeline in {out} was started with another config ({'; '.join(diff)}); run it "
                               "with the same profile and overrides, or choose another --out")
        else:
            raise RunError(f"{out} is not empty and holds no pipeline of the kit; choose a new or empty --out")
    cfg.save(f, PIPELINE_SECTIONS)



def _evaluated(cfg: RunConfig, run: Path, progress: bool) -> dict:
    """The evaluation of a training run, computed once: reused when ``<run>/eval/metrics.json`` (written last) and
    its figures are there, made again otherwise."""
    f = run / "eval" / "metrics.json"
    try:
        m = json.loads(f.read_text())
        figures = [run / "eval" / "confusion.png"] + ([run / "eval" / "overlays.png"] if cfg.eval.overlays else [])
        if m.get("images") is not None and all(p.exists() for p in figures):
            return m
    except (OSError, ValueError):
        pass
    return evaluate_run(cfg, run, progress=progress)


def _exported(cfg: RunConfig, run: Path) -> dict:
    """The export of a training run, made once: reused when ``export.json`` is there and ``model.onnx`` still
    has the checksum it records, made again otherwise."""
    f = run / "export" / "export.json"
    try:
        s = json.loads(f.read_text())
        onnx = run / "export" / "model.onnx"
        if s.get("sha256") and hashlib.sha256(onnx.read_bytes()).hexdigest() == s["sha256"]:
            return s
    except (OSError, ValueError):
        pass
    return export_run(run, cfg)


def summary_table(derived: pd.DataFrame, metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per network: branches, params (M), GMACs, predicted and measured latency (ms), mIoU (%)
    against the majority baseline."""
    df = derived.copy()
    for name, m in metrics.items():
        df.loc[name, "miou"] = 100 * m["miou"]
        df.loc[name, "majority_miou"] = 100 * m["majority_baseline"]["miou"]
        for lat in m["latency"]:
            if "median_ms" in lat:
                df.loc[name, f"measured_ms_{lat['backend']}"] = lat["median_ms"]
    df["search_miou"] = 100 * df["search_miou"]
    return df


def summary_lines(cfg: RunConfig, res: PipelineResult) -> list[str]:
    """The closing table of a pipeline run."""
    H, W = cfg.latency.height, cfg.latency.width
    return [f"networks (params and GMACs at {H}x{W}; predicted latency from {cfg.latency.table}, measured on this "
            f"machine at {cfg.eval.latency_height}x{cfg.eval.latency_width}, batch 1, fp32; mIoU % on the whole "
            "validation images; search_miou: supernet weights during the search):",
            res.summary.round(2).to_string(), f"report: {res.report}"]
