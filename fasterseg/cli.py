"""`fasterseg <command>` (also `python -m fasterseg`): the kit's command line.

Every command that runs something takes --profile tiny|cpu|paper and section.field=value overrides,
and saves the resulting config next to its outputs. Start with: fasterseg demo
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import PROFILES, apply_overrides, profile
from .paths import resolve, write_text


def _config(args):
    return apply_overrides(profile(args.profile), list(getattr(args, "overrides", []) or []))


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="config profile (default: $FASTERSEG_PROFILE or tiny)")
    p.add_argument("overrides", nargs="*", metavar="section.field=value",
                   help="override config fields, e.g. data.num_train=8 space.layers=8")


def cmd_config(args) -> int:
    print(_config(args).to_json())
    return 0


def cmd_data_generate(args) -> int:
    from .data.check import check_tree
    from .data.synthetic import SyntheticSpec, ensure

    cfg = _config(args).data
    spec = SyntheticSpec(cfg.image_height, cfg.image_width, cfg.num_train, cfg.num_val, cfg.seed)
    root = resolve(args.root or cfg.root)
    ensure(root, spec)
    print(check_tree(root, "cityscapes").report())
    return 0


def cmd_data_check(args) -> int:
    from .data.check import DataTreeError, check_tree

    try:
        summary = check_tree(args.root, args.dataset, tuple(args.splits), progress=True)
    except DataTreeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.report())
    return 0


def cmd_figures(args) -> int:
    from .figures import regenerate

    for p in regenerate(args.out):
        print(p)
    return 0


def cmd_demo(args) -> int:
    """The end-to-end demo on the embedded synthetic data set: data -> latency table -> co-search ->
    the derived student (table, size, predicted latency) -> figures of the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .arch import Architecture
    from .counting import totals
    from .data.check import check_tree
    from .data.synthetic import SyntheticSpec, ensure
    from .latency import load_for
    from .network import DerivedNet
    from .search import run_search, run_status
    from .viz.search_plots import load_run, plot_alpha_evolution, plot_latency_lambda
    from .viz.style import save_figure

    cfg = _config(args)
    out = resolve(args.out or f"runs/demo-{cfg.profile}")
    cfg.save(out / "config.json")
    d = cfg.data
    print(f"[demo 1/4] synthetic street scenes ({d.num_train}+{d.num_val} images, {d.image_height}x{d.image_width})")
    ensure(resolve(d.root), SyntheticSpec(d.image_height, d.image_width, d.num_train, d.num_val, d.seed))
    print(check_tree(resolve(d.root), "cityscapes").report())
    print(f"\n[demo 2/4] latency table {cfg.latency.table}")
    lut = load_for(cfg)
    print("  " + lut.describe())
    run = out / "search"
    status = run_status(run, cfg)
    print(f"\n[demo 3/4] co-search of teacher and student ({cfg.search.pretrain_epochs} pretraining + "
          f"{cfg.search.search_epochs} search epochs) in {run}" + ("" if status == "new" else f" ({status} run found)"))
    if status != "done":
        run_search(cfg, run, resume=status == "partial")
    h = load_run(run)
    ep = h["epochs"]
    last = ep[(ep.arch == "student") & (ep.phase == "search")].iloc[-1]
    student = Architecture.load(run / last["arch_file"])
    H, W = cfg.latency.height, cfg.latency.width
    params, gmacs = totals(DerivedNet(student, aux=False), (1, 3, H, W))
    print(f"\n[demo 4/4] derived student ({last['arch_file']}): branches {last['ends']}, "
          f"val mIoU {100 * last['miou_' + last['ends']]:.1f} % (search-time supernet weights)")
    print(student.table().to_string(index=False))
    print(f"  {params:.2f} M parameters, {gmacs:.2f} GMACs at {H}x{W}; predicted latency {lut.predict(student):.2f} ms "
          f"({1000 / lut.predict(student):.0f} FPS) on {lut.meta.get('backend')} / {lut.meta.get('device')}, "
          f"{lut.meta.get('threads')} thread(s)")
    figs = out / "figures"
    axes = plot_alpha_evolution(h["arch"])
    save_figure(axes[0, 0].figure, figs / "alpha_evolution.png")
    ax = plot_latency_lambda(h["steps"], ep)
    save_figure(ax.figure, figs / "latency_lambda.png")
    plt.close("all")
    print(f"  figures of the run: {figs}")
    print("\nNot in the kit yet: training the derived networks from scratch, distillation and final evaluation.")
    return 0


def cmd_arch_show(args) -> int:
    from . import archs
    from .counting import count
    from .network import DerivedNet

    arch = archs.resolve(args.file)
    h, w = args.size
    print(f"{arch.name}: F={arch.fch}, {arch.num_classes} classes, stem width {arch.stem_width:.3f}, "
          f"head width {arch.head_width:.3f}, branches ending at " + " + ".join(f"1/{b.ends_at}" for b in arch.branches))
    print(arch.table().to_string(index=False))
    net = DerivedNet(arch, aux=not args.no_aux)
    df = count(net, (1, 3, h, w))
    print(f"\nparameters and multiply-accumulates at 1x3x{h}x{w}"
          f" ({'with' if not args.no_aux else 'without'} auxiliary heads; MACs of convolutions):")
    print(df[["params_M", "GMACs"]].round(3).to_string())
    return 0


def cmd_arch_import(args) -> int:
    from .importers.original import import_published

    for p in import_published(resolve(args.reference), resolve(args.out)):
        print(p)
    return 0


def cmd_bench_supernet(args) -> int:
    from .bench import bench_supernet, write

    res = bench_supernet(args.profile or "tiny", args.threads, args.rounds)
    s, i, env = res["supernet"], res["student_inference"], res["environment"]
    print(f"[{env['runtime']}, {env['threads']} thread(s), fp32, load {env['load_average_1min']:.2f}]")
    print(f"supernet L={s['layers']} F={s['fch']} ({s['weights_M']:.1f} M weights), batch {s['batch']} at "
          f"{s['crop'][0]}x{s['crop'][1]}: training step (weight loss, both arch sets + max/min, fwd+bwd) "
          f"{s['step']['median_ms']:.0f} ms median [{s['step']['min_ms']:.0f}-{s['step']['max_ms']:.0f}], "
          f"{s['images_per_s']:.1f} images/s, {s['step']['ratio_to_reference']:.1f}x the reference conv; "
          f"peak RSS +{s['peak_rss_increase_MB']:.0f} MB")
    print(f"published student at 1x3x512x1024 (bilinear, batch 1, forward only): {i['median_ms']:.0f} ms median "
          f"({i['fps']:.1f} FPS), {i['GMACs']:.2f} GMACs -> {i['achieved_gmacs_per_s']:.0f} GMAC/s; "
          f"reference conv {i['reference_gmacs_per_s']:.0f} GMAC/s; ratio {i['ratio_to_reference']:.2f}")
    o = res["student_inference_onnxruntime"]
    print(f"  same on ONNX Runtime (CPU provider, {env['threads']} thread(s)): {o['median_ms']:.0f} ms ({o['fps']:.1f} FPS), "
          f"{o['achieved_gmacs_per_s']:.0f} GMAC/s; ratio {o['ratio_to_reference']:.2f}; "
          f"{i['median_ms'] / o['median_ms']:.2f}x faster than eager PyTorch")
    print(write(res, resolve(args.out)))
    return 0


def _backend(cfg, args):
    from .latency.backends import get_backend

    name = args.backend or cfg.latency.backend
    return get_backend(name, threads=args.threads or cfg.latency.threads, device=cfg.latency.device)


def cmd_latency_build(args) -> int:
    from .latency.build import build_table
    from .space import SearchSpace

    cfg = _config(args)
    backend = _backend(cfg, args)
    out = resolve(args.out or cfg.latency.table)
    space = SearchSpace.from_config(cfg.space)
    table = build_table(out, backend, space, cfg.space.stem_head_widths, cfg.data.num_classes,
                        cfg.latency.height, cfg.latency.width, resume=not args.no_resume)
    print(f"{out}: {table.describe()} in {table.meta['build_seconds']} s")
    return 0


def cmd_latency_show(args) -> int:
    from . import archs
    from .latency import LatencyTable

    cfg = _config(args)
    table = LatencyTable.load(resolve(args.table or cfg.latency.table))
    print(table.describe())
    for k in ("method", "date", "versions", "complete", "build_seconds"):
        if k in table.meta:
            print(f"  {k}: {table.meta[k]}")
    df = table.to_frame()
    print(df.groupby(["op", "stride"])["median_ms"].describe()[["count", "min", "50%", "max"]].round(4).to_string())
    for name in args.arch or []:
        arch = archs.resolve(name)
        bd = table.breakdown(arch)
        ms = bd["latency_ms"].sum()
        print(f"\n{arch.name}: predicted {ms:.3f} ms ({1000 / ms:.1f} FPS) at {table.resolution[0]}x{table.resolution[1]}, "
              f"{table.meta.get('backend')} on {table.meta.get('device')} (sum of block entries)")
        print(bd.groupby("part")["latency_ms"].sum().round(4).to_string())
    return 0


def cmd_latency_validate(args) -> int:
    from .arch import DeriveRules
    from .latency import load_for
    from .latency.validate import random_architectures, validate
    from .space import SearchSpace
    from .viz.latency_plots import plot_predicted_vs_measured
    from .viz.style import save_figure

    cfg = _config(args)
    table = load_for(cfg)
    backend = _backend(cfg, args)
    space = SearchSpace.from_config(cfg.space)
    nets = random_architectures(space, args.networks or cfg.latency.validate_networks, cfg.space.stem_head_widths,
                                cfg.data.num_classes, seed=args.seed, rules=DeriveRules.from_config(cfg.space))
    from .latency.backends import get_backend

    compare = [get_backend(name, threads=args.threads or cfg.latency.threads, device=cfg.latency.device)
               for name in (args.compare or [])]
    df, summary = validate(table, backend, nets, compare=compare)
    out = resolve(args.out or f"runs/latency-validate-{cfg.profile}")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "validation.csv", index=False)
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    cfg.save(out / "config.json")
    if not args.no_figure:
        ax = plot_predicted_vs_measured(df, summary)
        save_figure(ax.figure, out / "predicted_vs_measured.png")
    print(f"{summary['networks']} networks, {summary['table']}: Spearman {summary['spearman']:.3f}, "
          f"MAPE {100 * summary['mape']:.1f} %, median predicted/measured {summary['median_predicted_over_measured']:.3f}")
    for k, v in summary.items():
        if k.startswith("median_speedup"):
            print(f"{k}: {v:.2f}x (same networks, end to end, {backend.threads} thread(s))")
    print(f"written to {out}")
    return 0


def cmd_latency_import(args) -> int:
    from .importers.original import convert_latency_table

    table = convert_latency_table(resolve(args.reference) / "latency_lookup_table.npy")
    print(table.save(resolve(args.out)), table.describe())
    return 0


def cmd_search(args) -> int:
    from .search import SearchError, run_search

    cfg = _config(args)
    out = resolve(args.out or f"runs/search-{cfg.profile}")
    try:
        run_search(cfg, out, resume=args.resume, max_steps=args.max_steps)
    except SearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run directory: {out}")
    return 0


def cmd_collapse(args) -> int:
    from .search import SearchError, run_collapse

    cfg = _config(args)
    out = resolve(args.out or f"runs/collapse-{cfg.profile}")
    try:
        table = run_collapse(cfg, out, jobs=args.jobs)
    except SearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).T.to_string())
    print(f"written to {out / 'comparison.csv'}")
    return 0


def cmd_bench_search(args) -> int:
    from .bench import bench_search, write

    res = bench_search(args.profile or "tiny", args.threads, args.rounds)
    r, env = res["search_step"], res["environment"]
    print(f"[{env['runtime']}, {env['threads']} thread(s), fp32, load {env['load_average_1min']:.2f}] "
          f"profile {res['profile']}: L={r['layers']} F={r['fch']}, batch {r['batch']} at {r['crop'][0]}x{r['crop'][1]}")
    print(f"search step {r['seconds_per_step']:.2f} s median [{r['min_ms'] / 1e3:.2f}-{r['max_ms'] / 1e3:.2f}], "
          f"{r['images_per_s']:.1f} images/s, {r['ratio_to_reference']:.1f}x the reference conv "
          f"({r['reference_gmacs_per_s']:.0f} GMAC/s)")
    print(write(res, resolve(args.out or f"runs/bench/search-{res['profile']}.json")))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fasterseg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="end-to-end demo on the synthetic street scenes")
    _add_profile(p)
    p.add_argument("--out", help="output folder (default runs/demo-<profile>)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="print the config of a profile (with overrides) as JSON")
    _add_profile(p)
    p.set_defaults(func=cmd_config)

    data = sub.add_parser("data", help="generate or check data sets").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("generate", help="write the synthetic street scenes in the Cityscapes layout")
    _add_profile(p)
    p.add_argument("--root", help="output folder (default: data.root of the profile)")
    p.set_defaults(func=cmd_data_generate)
    p = data.add_parser("check", help="validate a data tree and print counts and class frequencies")
    p.add_argument("--root", required=True, help="the data root (Cityscapes or CamVid layout)")
    p.add_argument("--dataset", choices=("cityscapes", "camvid"), default="cityscapes")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.set_defaults(func=cmd_data_check)

    arch = sub.add_parser("arch", help="show or import architectures").add_subparsers(dest="arch_cmd", required=True)
    p = arch.add_parser("show", help="print an architecture as a table with its parameter and MAC totals")
    p.add_argument("file", help="architecture JSON file, or a published name (fasterseg_student, fasterseg_teacher)")
    p.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"),
                   help="input size for the counts (default 1024 2048)")
    p.add_argument("--no-aux", action="store_true", help="count without the auxiliary training heads")
    p.set_defaults(func=cmd_arch_show)
    p = arch.add_parser("import", help="convert the original arch_0.pt/arch_1.pt into JSON (restricted unpickling)")
    p.add_argument("--reference", default="../shared/reference", help="folder holding arch_0.pt and arch_1.pt")
    p.add_argument("--out", default="fasterseg/archs", help="where to write the JSON files")
    p.set_defaults(func=cmd_arch_import)

    p = sub.add_parser("search", help="pretrain + co-search teacher and student (resumable)")
    _add_profile(p)
    p.add_argument("--out", help="run directory (default runs/search-<profile>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last good checkpoint")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (resume later with --resume)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("collapse", help="coarse vs decoupled latency penalty at equal lambda: a side-by-side table")
    _add_profile(p)
    p.add_argument("--out", help="study directory (default runs/collapse-<profile>)")
    p.add_argument("--jobs", type=int, default=1, help="2 runs both searches at once, one thread each")
    p.set_defaults(func=cmd_collapse)

    lat = sub.add_parser("latency", help="latency tables: build, show, validate, import")
    lat = lat.add_subparsers(dest="latency_cmd", required=True)
    p = lat.add_parser("build", help="measure every block of the search space on this machine (resumable)")
    _add_profile(p)
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), help="default: latency.backend")
    p.add_argument("--threads", type=int, help="default: latency.threads")
    p.add_argument("--out", help="CSV path (default: latency.table); a .json sidecar goes next to it")
    p.add_argument("--no-resume", action="store_true", help="start over instead of continuing a partial table")
    p.set_defaults(func=cmd_latency_build)
    p = lat.add_parser("show", help="summarise a table; with --arch, predict networks' latency")
    _add_profile(p)
    p.add_argument("--table", help="CSV path (default: latency.table of the profile)")
    p.add_argument("--arch", nargs="*", help="architecture names or JSON files to predict")
    p.set_defaults(func=cmd_latency_show)
    p = lat.add_parser("validate", help="predicted vs measured latency of random derived networks")
    _add_profile(p)
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--threads", type=int)
    p.add_argument("--networks", type=int, help="how many random networks (default: latency.validate_networks)")
    p.add_argument("--compare", nargs="*", choices=("onnxruntime", "torch"), help="also time the networks on these backends")
    p.add_argument("--no-figure", action="store_true", help="write no scatter figure (for reference logs under data/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default runs/latency-validate-<profile>)")
    p.set_defaults(func=cmd_latency_validate)
    p = lat.add_parser("import", help="convert the original 1080Ti TensorRT table (restricted unpickling)")
    p.add_argument("--reference", default="../shared/reference")
    p.add_argument("--out", default="data/latency/gtx1080ti_tensorrt_1024x2048.csv")
    p.set_defaults(func=cmd_latency_import)

    bench = sub.add_parser("bench", help="benchmarks (ratios against a reference timed in the same run)")
    bench = bench.add_subparsers(dest="bench_cmd", required=True)
    for name, func, help_, out in (
            ("supernet", cmd_bench_supernet, "supernet training step and the published student's inference time",
             "runs/bench/supernet.json"),
            ("search", cmd_bench_search, "seconds per search step and images/s", None)):
        p = bench.add_parser(name, help=help_)
        p.add_argument("--profile", choices=PROFILES, default=None)
        p.add_argument("--threads", type=int, default=1, help="torch threads (1: the steadiest on a shared machine)")
        p.add_argument("--rounds", type=int, default=5, help="timed rounds, each interleaved with the reference")
        p.add_argument("--out", default=out, help="JSON path (default runs/bench/<name>[-<profile>].json)")
        p.set_defaults(func=func)

    p = sub.add_parser("figures", help="regenerate every figure in figures/ from data and logged runs")
    p.add_argument("--out", default="figures")
    p.set_defaults(func=cmd_figures)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # config and data errors carry their fix in the message
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
