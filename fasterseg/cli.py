"""`fasterseg <command>` (also `python -m fasterseg`): the kit's command line. It only parses arguments,
calls the library and prints; every error the library explains is printed as one ``error:`` line.

Every command that runs something takes --profile tiny|cpu|paper and section.field=value overrides,
and saves the resulting config next to its outputs. Start with: fasterseg pipeline
"""
from __future__ import annotations

import argparse
import sys

from .config import PROFILE_NAMES, RunConfig, apply_overrides, profile
from .paths import resolve
from .runs import RunError


def _config(args, sections: tuple[str, ...] | None = None) -> RunConfig:
    """The profile with the overrides, validated (whole, or `sections`) before any work."""
    cfg = apply_overrides(profile(args.profile), list(getattr(args, "overrides", []) or []))
    return cfg.validate(sections) if sections else cfg.validate()


def _resume_config(args, out, sections: tuple[str, ...]) -> RunConfig:
    """For --resume without a profile or overrides: the config stored in the run folder."""
    if args.resume and args.profile is None and not args.overrides and (out / "config.json").exists():
        return RunConfig.load(out / "config.json").validate(sections)
    return _config(args, sections)


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="config profile (default: $FASTERSEG_PROFILE or tiny)")
    p.add_argument("overrides", nargs="*", metavar="section.field=value",
                   help="override config fields, e.g. data.num_train=8 space.layers=8")


def cmd_config(args) -> int:
    print(_config(args).to_json())
    return 0


def cmd_data_generate(args) -> int:
    from .data.check import check_tree
    from .data.prepare import prepare_data

    cfg = _config(args, ("data",)).data
    cfg.dataset = "synthetic"
    if args.root:
        cfg.root = args.root
    print(check_tree(prepare_data(cfg), "cityscapes").report())
    return 0


def cmd_data_check(args) -> int:
    from .data.check import check_tree

    print(check_tree(args.root, args.dataset, tuple(args.splits), progress=True).report())
    return 0


def cmd_figures(args) -> int:
    from .figures import regenerate

    for p in regenerate(args.out):
        print(p)
    return 0


def cmd_pipeline(args) -> int:
    from .pipeline import run_pipeline, summary_lines

    cfg = _config(args)
    res = run_pipeline(cfg, resolve(args.out or f"runs/pipeline-{cfg.profile}"))
    print("\n".join(summary_lines(cfg, res)))
    return 0


def cmd_arch_show(args) -> int:
    from . import published
    from .counting import arch_report

    print("\n".join(arch_report(published.resolve(args.file), *args.size, aux=not args.no_aux)))
    return 0

def cmd_arch_import(args) -> int:
    from .importers.original import import_published

    for p in import_published(resolve(args.reference), resolve(args.out)):
        print(p)
    return 0


def cmd_bench(args) -> int:
    from .bench import bench_search, bench_supernet, summary_lines, write

    name = args.profile or "tiny"
    res = (bench_supernet if args.bench_cmd == "supernet" else bench_search)(name, args.threads, args.rounds)
    print("\n".join(summary_lines(res)))
    print(write(res, resolve(args.out or f"runs/bench/{args.bench_cmd}-{name}.json")))
    return 0


def _backend(cfg, args):
    from .latency.backends import get_backend

    name = args.backend or cfg.latency.backend
    return get_backend(name, threads=args.threads or cfg.latency.threads, device=cfg.latency.device)


def cmd_latency_build(args) -> int:
    from .latency.build import build_for

    cfg = _config(args)
    out = resolve(args.out or cfg.latency.table)
    table = build_for(cfg, _backend(cfg, args), out, resume=not args.no_resume)
    print(f"{out}: {table.describe()} in {table.meta['build_seconds']} s")
    return 0

def cmd_latency_show(args) -> int:
    from . import published
    from .latency import LatencyTable

    cfg = _config(args)
    table = LatencyTable.load(resolve(args.table or cfg.latency.table))
    print("\n".join(table.summary_lines([published.resolve(a) for a in args.arch or []])))
    return 0

def cmd_latency_validate(args) -> int:
    from .latency.backends import get_backend
    from .latency.validate import summary_lines, validate_config

    cfg = _config(args)
    threads = args.threads or cfg.latency.threads
    compare = [get_backend(name, threads=threads, device=cfg.latency.device) for name in (args.compare or [])]
    out = resolve(args.out or f"runs/latency-validate-{cfg.profile}")
    summary = validate_config(cfg, _backend(cfg, args), out, args.networks or cfg.latency.validate_networks,
                              args.seed, compare, figure=not args.no_figure)
    print("\n".join(summary_lines(summary, threads)) + f"\nwritten to {out}")
    return 0

def cmd_latency_import(args) -> int:
    from .importers.original import convert_latency_table

    table = convert_latency_table(resolve(args.reference) / "latency_lookup_table.npy")
    print(table.save(resolve(args.out)), table.describe())
    return 0


def cmd_search(args) -> int:
    from .search import SEARCH_SECTIONS, run_search

    out = resolve(args.out or f"runs/search-{args.profile or 'tiny'}")
    cfg = _resume_config(args, out, SEARCH_SECTIONS)
    run_search(cfg, out, resume=args.resume, max_steps=args.max_steps)
    print(f"run directory: {out}")
    return 0


def cmd_collapse(args) -> int:
    import pandas as pd

    from .search import SEARCH_SECTIONS
    from .studies import run_collapse

    cfg = _config(args, SEARCH_SECTIONS)
    out = resolve(args.out or f"runs/collapse-{cfg.profile}")
    table = run_collapse(cfg, out, jobs=args.jobs, resume=args.resume)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).T.to_string())
    print(f"written to {out / 'comparison.csv'}")
    return 0


def cmd_train(args) -> int:
    from .train import TRAIN_SECTIONS, run_train

    out = resolve(args.out or f"runs/train-{args.profile or 'tiny'}")
    cfg = _resume_config(args, out, TRAIN_SECTIONS + ("eval",))
    model = args.model
    if model is None:
        import json as _json

        if not (args.resume and (out / "model.json").exists()):
            raise ValueError("name the network to train: --model <architecture JSON | published name | peer:NAME>")
        model = _json.loads((out / "model.json").read_text())
        args.teacher = args.teacher or model.pop("teacher", None)
    run_train(cfg, model, out, resume=args.resume, teacher=resolve(args.teacher) if args.teacher else None,
              max_steps=args.max_steps)
    print(f"run directory: {out}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_run, summary_lines

    cfg = _config(args, ("data", "eval", "runtime"))
    print("\n".join(summary_lines(evaluate_run(cfg, resolve(args.run), which=args.weights))))
    return 0

def cmd_export(args) -> int:
    from .export import export_run, summary_line

    cfg = _config(args, ("export",))
    print(summary_line(export_run(resolve(args.run), cfg, resolve(args.out) if args.out else None, args.weights)))
    return 0

def cmd_predict(args) -> int:
    from .predict import predict_folder

    files = predict_folder(resolve(args.run), resolve(args.images), resolve(args.out), label_ids=args.label_ids,
                           flip=args.flip)
    print(f"{len(files)} files written to {resolve(args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fasterseg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)

    for name in ("pipeline", "demo"):
        p = sub.add_parser(
            name,
            help="the main job: data, latency table, search, training, distillation, evaluation, export, report"
            + (" (alias of pipeline)" if name == "demo" else ""),
        )
        _add_profile(p)
        p.add_argument("--out", help="output folder (default runs/pipeline-<profile>)")
        p.set_defaults(func=cmd_pipeline)

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
    p.add_argument(
        "--size",
        nargs=2,
        type=int,
        default=[1024, 2048],
        metavar=("H", "W"),
        help="input size for the counts (default 1024 2048)",
    )
    p.add_argument("--no-aux", action="store_true", help="count without the auxiliary training heads")
    p.set_defaults(func=cmd_arch_show)
    p = arch.add_parser("import", help="convert the original arch_0.pt/arch_1.pt into JSON (restricted unpickling)")
    p.add_argument("--reference", default="../shared/reference", help="folder holding arch_0.pt and arch_1.pt")
    p.add_argument("--out", default="fasterseg/published", help="where to write the JSON files")
    p.set_defaults(func=cmd_arch_import)

    p = sub.add_parser("search", help="pretrain + co-search teacher and student (resumable)")
    _add_profile(p)
    p.add_argument("--out", help="run directory (default runs/search-<profile>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last good checkpoint")
    p.add_argument(
        "--max-steps",
        type=_positive,
        help="stop after this many steps of this call, with a checkpoint (continue later with --resume)",
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("collapse", help="coarse vs decoupled latency penalty at equal lambda: a side-by-side table")
    _add_profile(p)
    p.add_argument("--out", help="study directory (default runs/collapse-<profile>)")
    p.add_argument("--jobs", type=_positive, default=1, help="2 runs both searches at once, one thread each")
    p.add_argument("--resume", action="store_true", help="continue unfinished searches of the study")
    p.set_defaults(func=cmd_collapse)

    p = sub.add_parser("train", help="train a network from scratch (optionally distilled from a teacher run)")
    _add_profile(p)
    p.add_argument("--model", help="architecture JSON, published name (fasterseg_student) or peer:NAME "
                   "(fast_scnn, lraspp_mnv3_large, bisenetv2, ddrnet23_slim)")
    p.add_argument("--teacher", help="a finished training run to distil from")
    p.add_argument("--out", help="run directory (default runs/train-<profile>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last good checkpoint")
    p.add_argument("--max-steps", type=_positive, help="stop after this many steps of this call, with a checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="whole-image mIoU, per-class IoU, majority baseline, measured latency")
    _add_profile(p)
    p.add_argument("run", help="a finished training run")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="ONNX (BN folded) checked against PyTorch; TensorRT where available")
    _add_profile(p)
    p.add_argument("run", help="a finished training run")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--out", help="output folder (default <run>/export)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="colour overlays (and Cityscapes label-id PNGs) for a folder of images")
    p.add_argument("run", help="a finished training run")
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--label-ids", action="store_true", help="also write label-id PNGs for the Cityscapes server")
    p.add_argument("--flip", action="store_true", help="average with the mirrored image")
    p.set_defaults(func=cmd_predict)

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
    p.add_argument(
        "--compare", nargs="*", choices=("onnxruntime", "torch"), help="also time the networks on these backends"
    )
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
    for name, help_ in (
        ("supernet", "supernet training step and the published student's inference time"),
        ("search", "seconds per search step and images/s"),
    ):
        p = bench.add_parser(name, help=help_)
        p.add_argument("--profile", choices=PROFILE_NAMES, default=None)
        p.add_argument(
            "--threads", type=_positive, default=1, help="torch threads (1: the steadiest on a shared machine)"
        )
        p.add_argument("--rounds", type=_positive, default=5, help="timed rounds, each interleaved with the reference")
        p.add_argument("--out", help="JSON path (default runs/bench/<name>-<profile>.json)")
        p.set_defaults(func=cmd_bench)

    p = sub.add_parser("figures", help="regenerate every figure in figures/ from data and logged runs")
    p.add_argument("--out", default="figures")
    p.set_defaults(func=cmd_figures)
    return ap


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted (nothing of this command was saved beyond what it already wrote)", file=sys.stderr)
        return 130
    except (ValueError, RunError, OSError) as e:  # config, data, architecture, table and run errors carry their fix
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
