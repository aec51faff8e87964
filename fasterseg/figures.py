"""`fasterseg figures`: regenerate every figure in ``figures/`` from data and logged runs.

Each capability adds a producer to `PRODUCERS`; notebooks call the same `plot_*` functions.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd
import torch
from tqdm.auto import tqdm

from fasterseg.config import RunConfig, profile
from fasterseg.data.check import check_tree
from fasterseg.data.cityscapes import build_dataset
from fasterseg.data.prepare import prepare_data
from fasterseg.latency import LatencyTable, load_for
from fasterseg.latency.table import op_cost_ratios
from fasterseg.nas.records import final_arch
from fasterseg.nas.tuning import sweep_config
from fasterseg.nets import published
from fasterseg.nets.counting import count
from fasterseg.nets.derive import decision_margins, derive
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.space import SearchSpace
from fasterseg.panels import TuningPanel
from fasterseg.paper import PAPER_FPS
from fasterseg.paths import resolve
from fasterseg.runs import load_history
from fasterseg.studies import mean_per_class
from fasterseg.tradeoffs import crowded, reference_points
from fasterseg.viz.arch_plots import plot_cost_breakdown, plot_margins
from fasterseg.viz.data_plots import plot_class_frequencies, plot_samples
from fasterseg.viz.eval_plots import plot_per_class, plot_training_curves
from fasterseg.viz.graphs import arch_graph, supernet_graph
from fasterseg.viz.latency_plots import (
    plot_backend_scatter,
    plot_latency_breakdown,
    plot_op_cost_ratios,
    plot_predicted_vs_measured,
)
from fasterseg.viz.search_plots import (
    plot_alpha_evolution,
    plot_beta_gamma_evolution,
    plot_collapse,
    plot_latency_lambda,
)
from fasterseg.viz.style import save_figure
from fasterseg.viz.tradeoff_plots import plot_pareto


def _save(fig, path: Path) -> Path:
    """Write a matplotlib figure as `path` (PNG) and beside it as SVG; returns the PNG path."""
    save_figure(fig, path.with_suffix(".svg"))
    return save_figure(fig, path)


def _save_graph(graph, path: Path) -> Path:
    """Write a graphviz drawing as `path` (PNG) and beside it as SVG; returns the PNG path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".svg").write_bytes(graph.pipe(format="svg"))
    path.write_bytes(graph.pipe(format="png"))
    return path


def data_figures(out: Path) -> list[Path]:
    """Synthetic samples with colour labels, and class pixel frequencies (tiny profile set)."""
    cfg = profile("tiny").data
    with tempfile.TemporaryDirectory() as tmp:  # generated afresh there: nothing is written outside `out`
        cfg.root = str(Path(tmp) / "tiny")
        prepare_data(cfg, progress=False)
        ds = build_dataset(cfg, "train")
        samples = [ds.load(i) for i in range(4)]
        summary = check_tree(ds.root, "cityscapes")
    fig = plot_samples(samples, titles=[s.name for s in ds.samples[:4]])
    paths = [_save(fig, out / "data_synthetic_samples.png")]
    plt.close(fig)
    ax = plot_class_frequencies(summary.frequencies())
    ax.set_title(f"synthetic street scenes ({cfg.image_height}x{cfg.image_width}, tiny profile)", fontsize=9)
    paths.append(_save(ax.figure, out / "data_class_frequencies.png"))
    plt.close(ax.figure)
    return paths


def arch_figures(out: Path) -> list[Path]:
    """Path diagrams and supernet grids of the published teacher and student, their cost breakdown,
    and the margins of the student's derivation decisions."""
    paths, counts = [], {}
    for name in ("fasterseg_student", "fasterseg_teacher"):
        arch = published.load(name)
        paths.append(_save_graph(arch_graph(arch, f"{name} (published; derived with the original procedure)"),
                                 out / f"arch_{name}.png"))
        params = published.load_params(name)
        probs = {k: torch.softmax(v, -1).numpy() for k, v in params["logits"].items()}
        paths.append(_save_graph(supernet_graph(probs, params["layers"], f"{name}: searched supernet parameters"),
                                 out / f"supernet_{name}.png"))
        counts[name] = count(DerivedNet(arch, aux=False), (1, 3, 1024, 2048))
    ax = plot_cost_breakdown(counts)
    ax.set_title("where the multiply-adds are (1x3x1024x2048, inference)", fontsize=9)
    paths.append(_save(ax.figure, out / "arch_cost_breakdown.png"))
    plt.close(ax.figure)
    p = published.load_params("fasterseg_student")
    student = derive(p["logits"], SearchSpace(p["layers"], p["fch"]), 8 / 12, 8 / 12, 19)
    ax = plot_margins(decision_margins(student))
    ax.set_title("published student: how close each derivation decision was", fontsize=9)
    paths.append(_save(ax.figure, out / "arch_decision_margins.png"))
    plt.close(ax.figure)
    return paths


def latency_figures(out: Path) -> list[Path]:
    """From the committed tables and validation logs (data/latency/): per-operator heat-maps, predicted
    vs measured, backends compared, and the published table's prediction for FasterSeg."""
    paths = []
    cpu = LatencyTable.load(resolve("data/latency/cpu_torch_cpu1_256x512.csv"))
    int8 = LatencyTable.load(resolve("data/latency/cpuspace_onnxruntime_int8_cpu1_512x1024.csv"))
    axes = plot_op_cost_ratios({
        "the paper's operators, PyTorch eager fp32 (cpu table)": op_cost_ratios(cpu, ("conv_2x", "zoomed_conv",
                                                                                        "zoomed_conv_2x")),
        "the CPU space's operators, ONNX Runtime int8": op_cost_ratios(int8, ("dwsep", "ir_e3", "ir_e6"))})
    axes[0].figure.suptitle("multiply-adds are not latency: each operator against a plain 3x3 conv on the same input "
                            "(the reference machine's committed tables, one thread)", fontsize=9)
    paths.append(_save(axes[0].figure, out / "latency_op_ratios_cpu.png"))
    plt.close(axes[0].figure)
    vdir = resolve("data/latency/validation/cpu")
    df = pd.read_csv(vdir / "validation.csv")
    summary = json.loads((vdir / "summary.json").read_text())
    ax = plot_predicted_vs_measured(df, summary)
    paths.append(_save(ax.figure, out / "latency_predicted_vs_measured_cpu.png"))
    plt.close(ax.figure)
    if "measured_ms_onnxruntime" in df:
        ax = plot_backend_scatter(df, "onnxruntime")
        paths.append(_save(ax.figure, out / "latency_backends_cpu.png"))
        plt.close(ax.figure)
    gpu = LatencyTable.load(resolve("data/latency/gtx1080ti_tensorrt_1024x2048.csv"))
    bds = {n: gpu.breakdown(published.load(n)) for n in ("fasterseg_student", "fasterseg_teacher")}
    ax = plot_latency_breakdown(bds, title="published 1080Ti TensorRT table at 1024x2048 (the table prices no glue)",
                                measured={"fasterseg_student": 1000 / PAPER_FPS})
    paths.append(_save(ax.figure, out / "latency_published_gtx1080ti.png"))
    plt.close(ax.figure)
    return paths


def search_figures(out: Path) -> list[Path]:
    """From the committed reference collapse study (data/runs/collapse-cpu): alpha/beta/gamma evolution of
    the decoupled run, its latency and lambda, coarse vs decoupled side by side, and the final students."""
    study = resolve("data/runs/collapse-cpu")
    runs = {m: load_history(study / m) for m in ("coarse", "decoupled")}
    paths = []
    axes = plot_alpha_evolution(runs["decoupled"]["arch"])
    axes[0, 0].figure.suptitle("student alpha during the cpu-profile search (decoupled penalty)", fontsize=9)
    paths.append(_save(axes[0, 0].figure, out / "search_alpha_evolution.png"))
    plt.close(axes[0, 0].figure)
    axes = plot_beta_gamma_evolution(runs["decoupled"]["arch"])
    paths.append(_save(axes[0, 0].figure, out / "search_beta_gamma_evolution.png"))
    plt.close(axes[0, 0].figure)
    pipe = resolve("data/runs/pipeline-cpu/search")  # adaptive λ with an FPS band (the collapse study fixes λ)
    ph, sc = load_history(pipe), RunConfig.load(pipe / "config.json").search
    ax, _ = plot_latency_lambda(ph["steps"], ph["epochs"], band_fps=(sc.fps_min[-1], sc.fps_max[-1]),
                                changes=ph.get("lambda"))
    ax.set_title("student: expected and derived latency, adaptive λ (cpu pipeline search, decoupled)", fontsize=9)
    paths.append(_save(ax.figure, out / "search_latency_lambda.png"))
    plt.close(ax.figure)
    axes = plot_collapse({m: r["epochs"] for m, r in runs.items()})
    axes[0].figure.suptitle(
        "architecture collapse: coarse vs decoupled latency penalty at equal lambda (cpu profile)", fontsize=9
    )
    paths.append(_save(axes[0].figure, out / "collapse_coarse_vs_decoupled.png"))
    plt.close(axes[0].figure)
    three = {"coarse": runs["coarse"], "scaled": load_history(study / "scaled"), "decoupled": runs["decoupled"]}
    axes = plot_collapse({m: r["epochs"] for m, r in three.items()})
    axes[0].figure.suptitle("ablation: the coarse penalty with each gradient scaled by its rate ('scaled') beside "
                            "coarse and decoupled, equal lambda (cpu profile, seed 0)", fontsize=9)
    paths.append(_save(axes[0].figure, out / "collapse_penalty_ablation.png"))
    plt.close(axes[0].figure)
    for m in runs:
        arch = final_arch(study / m, "student")
        paths.append(_save_graph(arch_graph(arch, f"student after the {m}-penalty search"),
                                 out / f"collapse_student_{m}.png"))
    return paths


def training_figures(out: Path) -> list[Path]:
    """From the committed reference pipeline (data/runs/pipeline-cpu) and its distillation study: training
    curves, per-class IoU of teacher and students; the latency-accuracy plot of every trained reference
    network (data/runs)."""
    ref = resolve("data/runs/pipeline-cpu")
    study = ref / "distill-study"
    if not (study / "results.csv").exists():
        return []

    base = json.loads((ref / "train-teacher" / "eval" / "metrics.json").read_text())["majority_baseline"]["miou"]
    hist = {"teacher": load_history(ref / "train-teacher")["epochs"],
            "student, distilled": load_history(study / "distilled-seed0")["epochs"],
            "student, not distilled": load_history(study / "not_distilled-seed0")["epochs"]}
    axes = plot_training_curves(hist, baseline=base)
    paths = [_save(axes[0].figure, out / "training_curves_cpu.png")]
    plt.close(axes[0].figure)

    tables = {"teacher": pd.read_csv(ref / "train-teacher" / "eval" / "per_class.csv", index_col="class"),
              "student, distilled": mean_per_class(study, "distilled"),
              "student, not distilled": mean_per_class(study, "not_distilled")}
    ax = plot_per_class(tables, baseline=base, stamp="per-class IoU, students averaged over 3 seeds (cpu profile)")
    paths.append(_save(ax.figure, out / "training_per_class_cpu.png"))
    plt.close(ax.figure)
    points = reference_points("data/runs")
    if len(points):
        ax = plot_pareto(points, baseline=100 * base, zoom=crowded(points))
        paths.append(_save(ax.figure, out / "tradeoff_pareto_cpu.png"))
        plt.close(ax.figure)
    return paths


def tuning_figures(out: Path) -> list[Path]:
    """From the committed cpu λ sweep (data/runs/sweep-cpu): the tuning panel's initial static view."""
    sweep = resolve("data/runs/sweep-cpu")
    if not (sweep / "sweep.csv").exists():
        return []

    cfg = sweep_config(sweep)
    cfg.latency.calibration = "off"  # the panel reads the table's own numbers; this machine's speed is not used
    fig = TuningPanel(sweep, cfg, load_for(cfg), prerender=False).static_figure()  # no background drawing: the
    # process ends right after, and a drawing thread cut off at exit aborts it
    return [_save(fig, out / "tuning_panel_cpu.png")]


PRODUCERS: list[Callable[[Path], list[Path]]] = [data_figures, arch_figures, latency_figures, search_figures,
                                                 training_figures, tuning_figures]


def regenerate(out: str | Path = "figures") -> list[Path]:
    """Run every producer; returns the written paths."""
    out = resolve(out)
    written: list[Path] = []
    for producer in tqdm(PRODUCERS, desc="figures"):
        written += producer(out)
    return written
