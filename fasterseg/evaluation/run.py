"""Evaluating a finished training run: scores, reference point, size and measured latency, written to files.

- `evaluate_run`: mIoU (whole validation images, `evaluation.scores`), the majority baseline, parameters and
  multiply-adds, and the latency of the deployed form, written to ``<run>/eval/`` (metrics.json,
  per_class.csv, confusion.csv, overlays.png, confusion.png); `fasterseg evaluate`.
- `measure_latency`: the same network timed with the latency backends at the deployment resolution.
- `retime_runs`: many runs timed in one round-robin pass (`timing.interleaved_many`), comparable across runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from fasterseg import faults
from fasterseg.data.cityscapes import build_dataset
from fasterseg.data.labels import class_names, palette
from fasterseg.data.prepare import prepare_data
from fasterseg.data.transforms import EvalTransform
from fasterseg.evaluation.scores import evaluate_model, majority_baseline, per_class_table
from fasterseg.latency.backends import get_backend
from fasterseg.metrics import SegScores
from fasterseg.nets.build import WithDecision, inference_copy, inference_network, load_trained, predict_logits
from fasterseg.nets.counting import totals
from fasterseg.paths import display_path
from fasterseg.runtime import Runtime
from fasterseg.runs import RunError, atomic_write
from fasterseg.timing import interleaved_many
from fasterseg.viz.eval_plots import plot_confusion, plot_overlays
from fasterseg.viz.style import save_figure


def measure_latency(model: torch.nn.Module, height: int, width: int, backends: tuple[str, ...], threads: int = 1,
                    device: str = "cpu") -> list[dict]:
    """Latency (ms, median with spread) of `model` (inference form: no auxiliary heads) at 1x3xHxW on
    each backend, with what every figure must name: backend, device, threads, precision, resolution, batch."""
    rows = []
    for name in backends:
        try:
            backend = get_backend(name, threads=threads, device=device)
        except (ImportError, RuntimeError, ValueError) as e:
            rows.append({"backend": name, "skipped": str(e)})
            continue
        t = backend.time(model.eval(), (1, 3, height, width))
        rows.append(latency_entry(backend, t.median_ms, t.spread_ms, height, width))
    return rows


def latency_entry(backend, median_ms: float, spread_ms: float, height: int, width: int, **extra) -> dict:
    """One ``latency`` entry of ``metrics.json``: the time (ms) with what every figure must name."""
    d = backend.describe()
    return {"backend": backend.name, "median_ms": median_ms, "spread_ms": spread_ms, "fps": 1000 / median_ms,
            "device": d.get("device"), "threads": d.get("threads"), "precision": "fp32",
            "resolution": [height, width], "batch": 1, **extra}


def write_latency(run: str | Path, entries: list[dict]) -> None:
    """Replace the ``latency`` entries of a run's ``eval/metrics.json`` (scores untouched)."""
    f = Path(run) / "eval" / "metrics.json"
    if not f.exists():
        raise RunError(f"{run} has not been evaluated (no eval/metrics.json); evaluate it first: fasterseg evaluate "
                       f"{run}")
    try:
        metrics = json.loads(f.read_text())
        metrics["latency"] = entries
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
        raise RunError(f"{f} is damaged ({type(e).__name__}); evaluate the run again: fasterseg evaluate {run}") \
            from None
    atomic_write(f, (json.dumps(metrics, indent=2) + "\n").encode())


def save_eval(out: Path, scores: SegScores, cm: np.ndarray, class_names: list[str]) -> Path:
    """Write ``per_class.csv`` and ``confusion.csv`` into `out` (``metrics.json`` comes last, `write_metrics`)."""
    out.mkdir(parents=True, exist_ok=True)
    per_class_table(scores, cm, class_names).to_csv(out / "per_class.csv")
    names = class_names[: cm.shape[0]]
    pd.DataFrame(cm, index=pd.Index(names, name="ground truth"), columns=names).to_csv(out / "confusion.csv")
    return out


def write_metrics(out: Path, metrics: dict) -> Path:
    """``<out>/metrics.json``, written atomically and last: its presence means the evaluation is complete."""
    return atomic_write(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())


def overlay_samples(model: torch.nn.Module, dataset, n: int, flip: bool = False) -> list[tuple]:
    """(image uint8, ground truth, prediction) of the first `n` images of an evaluation dataset."""
    device = next(model.parameters()).device
    out = []
    for i in range(min(n, len(dataset))):
        img, gt = dataset.load(i)
        x, _ = dataset[i]
        pred = predict_logits(model, x[None].to(device), flip).argmax(1)[0].cpu().numpy()
        h, w = gt.shape
        out.append((img, gt, pred[:h, :w].astype(np.uint8)))
    return out


def evaluate_run(cfg, run: str | Path, which: str = "best", progress: bool = True) -> dict:
    """Evaluate a finished training run on the validation split (whole images, flip as ``eval.flip``),
    with the majority baseline, size and measured latency; writes ``<run>/eval/`` (metrics.json,
    per_class.csv, confusion.csv, overlays.png, confusion.png). Returns the metrics."""
    if which == "init":
        raise RunError("--weights init times a freshly initialised copy: it goes with --latency-only only")
    e, d = cfg.eval, cfg.data
    run = Path(run)
    rt = Runtime.local(cfg.runtime)  # runtime.device and threads; one process (rank 0's, under torchrun)
    model, spec = load_trained(run, which)
    model.to(rt.device)
    prepare_data(d, progress=progress)
    val = build_dataset(d, "val", EvalTransform())
    train = build_dataset(d, "train")
    scores, cm = evaluate_model(model, val, d.num_classes, e.flip, e.batch_size, e.images, runtime=rt,
                                progress=progress)
    base = majority_baseline(train, val, d.num_classes, e.images)

    net = inference_copy(model.cpu())  # BN folded, logits only: the deployed form
    params, gmacs = totals(net, (1, 3, e.latency_height, e.latency_width))
    # CPU backends at one thread (the steadiest figure on a shared machine, and the kit's CPU tables' thread
    # count); the torch backend on the run's device when it is a GPU
    lat = measure_latency(net, e.latency_height, e.latency_width, tuple(e.latency_backends), 1, str(rt.device))
    names = list(class_names(d.dataset, d.num_classes))
    n_img = min(len(val), e.images) if e.images else len(val)
    extra = {"run": display_path(run), "weights": which, "images": n_img, "resolution": list(val.load(0)[1].shape),
             "flip": e.flip, "majority_baseline": base, "params_M": params, "GMACs": gmacs,
             "macs_resolution": [e.latency_height, e.latency_width], "latency": lat,
             "model": spec.get("name") or spec.get("arch", {}).get("name")}
    out = save_eval(run / "eval", scores, cm, names)
    stamp = (f"{extra['model']}: mIoU {100 * scores.miou:.1f} % on {n_img} val images at full resolution"
             f"{' with flip' if e.flip else ''} (majority class {100 * base['miou']:.1f} %)")
    if e.overlays:
        fig = plot_overlays(overlay_samples(model, val, e.overlays, e.flip), stamp=stamp,
                            classes=(names, palette(d.dataset, d.num_classes)))
        save_figure(fig, out / "overlays.png")
        plt.close(fig)
    ax = plot_confusion(cm, names, stamp=stamp)
    save_figure(ax.figure, out / "confusion.png")
    plt.close(ax.figure)
    metrics = {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy, **extra}
    faults.hit("evaluation.figures")
    write_metrics(out, metrics)
    return metrics


def decision_scores(cfg, runs: list[str | Path], decisions: tuple[str, ...], which: str = "best",
                    progress: bool = True) -> pd.DataFrame:
    """mIoU and pixel accuracy of trained runs on the validation split (whole images, as `evaluate_run`) with each
    class decision of `decisions` applied to the network's low-resolution logits (`nets.build.WithDecision`),
    beside its own (``own``): what a cheaper class decision costs a network trained with another. One row per
    run and decision."""
    d, e = cfg.data, cfg.eval
    prepare_data(d, progress=progress)
    val = build_dataset(d, "val", EvalTransform())
    rows = []
    for run in runs:
        model, spec = load_trained(run, which)
        model.eval()
        for decision in ("own",) + tuple(decisions):
            net = model if decision == "own" else WithDecision(model, decision).eval()
            scores, _ = evaluate_model(net, val, d.num_classes, e.flip, e.batch_size, e.images, progress=progress)
            rows.append({"run": display_path(Path(run)), "model": spec.get("name") or spec.get("arch", {}).get("name"),
                         "decision": decision, "miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy})
    return pd.DataFrame(rows)


def summary_lines(m: dict) -> list[str]:
    """The terminal lines of an `evaluate_run` result."""
    lines = [f"{m['model']}: mIoU {100 * m['miou']:.2f} %, pixel accuracy {100 * m['pixel_accuracy']:.2f} % on "
             f"{m['images']} images (majority class: {100 * m['majority_baseline']['miou']:.2f} %); "
             f"{m['params_M']:.3f} M params, {m['GMACs']:.2f} GMACs at "
             f"{m['macs_resolution'][0]}x{m['macs_resolution'][1]}"]
    for x in m["latency"]:
        lines.append(f"  {x['backend']}: " + (f"{x['median_ms']:.2f} ms ({x['fps']:.1f} FPS), {x['device']}, "
                                              f"{x['threads']} thread(s), fp32, batch 1" if "median_ms" in x
                                              else f"skipped ({x['skipped']})"))
    return lines + [f"written to {Path(m['run']) / 'eval'}"]


def remeasure_latency(cfg, run: str | Path, which: str = "best") -> list[dict]:
    """Time a trained run's inference network again (as `evaluate_run` does) and replace the ``latency``
    entries of its ``eval/metrics.json``: for a clean figure taken when nothing else runs on the machine.
    `which`: as `inference_network`."""
    e = cfg.eval
    entries = measure_latency(inference_network(run, which), e.latency_height, e.latency_width,
                              tuple(e.latency_backends), 1, "cpu")
    entries = [{**x, "weights": which} for x in entries]
    write_latency(run, entries)
    return entries


def retime_runs(cfg, runs: list[Path], which: str = "init", rounds: int = 10, progress: bool = True) -> dict:
    """Time many trained runs in one pass, round-robin (`bench.interleaved_many`: each round calls every run's
    network once per backend, then the reference conv), at the config's evaluation size on one thread, and write
    each run's ``latency`` entries into its ``eval/metrics.json``. Comparable across runs on a machine whose
    speed drifts. A backend that cannot run here is recorded as skipped. Returns {"runs": {run: [entries]},
    "rounds", "weights", "reference_gmacs_per_s"}."""
    if not runs:
        raise RunError("no trained runs to time (folders with model.json and eval/metrics.json)")
    e = cfg.eval
    h, w = e.latency_height, e.latency_width
    backends, skipped = [], []
    for name in e.latency_backends:
        try:
            backends.append(get_backend(name, threads=1))
        except (ImportError, RuntimeError, ValueError) as err:
            skipped.append({"backend": name, "skipped": str(err)})
    calls = {}
    for run in runs:
        net = inference_network(run, which)
        calls.update({(str(run), b.name): b.prepare(net, (1, 3, h, w)) for b in backends})
    timed = interleaved_many(calls, rounds, progress=progress)
    method = f"round-robin with {len(runs)} runs, {rounds} rounds"
    out: dict = {"runs": {}, "rounds": rounds, "weights": which,
                 "reference_gmacs_per_s": next(iter(timed.values()))["reference_gmacs_per_s"] if timed else None}
    for run in runs:
        entries = [latency_entry(b, t["median_ms"], t["spread_ms"], h, w, weights=which,
                                 ratio_to_reference=t["ratio_to_reference"],
                                 reference_gmacs_per_s=t["reference_gmacs_per_s"], method=method)
                   for b in backends for t in [timed[(str(run), b.name)]]] + skipped
        write_latency(run, entries)
        out["runs"][display_path(run)] = entries
    return out
