"""`fasterseg <command>` (also `python -m fasterseg`): the kit's command line. It only parses arguments,
calls the library and prints; every error the library explains is printed as one ``error:`` line.

Every command that runs something takes --profile tiny|cpu|paper and section.field=value overrides,
and saves the resulting config next to its outputs. Start with: fasterseg pipeline
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from fasterseg import bench, pipeline
from fasterseg.config import PROFILE_NAMES, RunConfig, load_config
from fasterseg.config_checks import DECISIONS, LATENCY_BACKENDS
from fasterseg.data.check import check_tree
from fasterseg.data.prepare import prepare_data
from fasterseg.deploy.export import export_run, summary_line
from fasterseg.deploy.forms import write_forms
from fasterseg.deploy.predict import predict_folder
from fasterseg.deploy.predict import summary_lines as predict_summary
from fasterseg.evaluation import run as evaluation
from fasterseg.figures import regenerate
from fasterseg.importers.original import convert_latency_table, import_published
from fasterseg.importers.weights import import_weights
from fasterseg.latency import LatencyTable
from fasterseg.latency import table as latency_table
from fasterseg.latency import validate as latency_validate
from fasterseg.latency.backends import get_backend
from fasterseg.latency.build import build_for
from fasterseg.latency.calibrate import calibrate_table, fit_warning
from fasterseg.nas.run import run_search
from fasterseg.nas.searcher import SEARCH_SECTIONS
from fasterseg.nets import published
from fasterseg.nets.counting import arch_report
from fasterseg.nets.footprint import check_run
from fasterseg.nets.peers import PEERS
from fasterseg.paths import resolve, write_text
from fasterseg.runs import RunError
from fasterseg.runtime import PeerLost, Runtime, shutdown
from fasterseg.studies import collapse_lines, run_collapse, run_study
from fasterseg.training.trainer import TRAIN_SECTIONS, run_train, stored_model
from fasterseg.viz.latency_plots import plot_predicted_vs_measured
from fasterseg.viz.style import save_figure


def _config(args, sections: tuple[str, ...] | None = None) -> RunConfig:
    """The profile, the --config file and the overrides, validated (whole, or `sections`) before any work."""
    cfg = load_config(getattr(args, "config", None), args.profile, list(getattr(args, "overrides", []) or []))
    return check_run(cfg, sections)


def _resume_config(args, out, sections: tuple[str, ...]) -> RunConfig:
    """For --resume without a profile, config file or overrides: the config stored in the run folder."""
    if args.resume and args.profile is None and not args.config and not args.overrides and \
            (out / "config.json").exists():
        return check_run(RunConfig.load(out / "config.json"), sections)
    return _config(args, sections)


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="config profile (default: the --config file's, else $FASTERSEG_PROFILE or tiny)")
    p.add_argument("--config", metavar="FILE.yaml", help="a config file with the same sections and keys as the "
                   "overrides (write one with `fasterseg config --write FILE.yaml`)")
    p.set_defaults(overrides=[])
    p.epilog = ("Config fields can be overridden anywhere on the line as section.field=value (JSON values), e.g. "
                "data.num_train=8 search.lam=[0,0.1]; they apply after the profile and the --config file.")


def cmd_config(args) -> int:
    cfg = _config(args)
    if args.write:
        path = write_text(resolve(args.write), cfg.to_yaml())
        print(f"wrote {path} (profile {cfg.profile}, every section and field)")
        return 0
    print(cfg.to_json())
    return 0


def cmd_data_generate(args) -> int:
    cfg = _config(args, ("data",)).data
    cfg.dataset = "synthetic"
    if args.root:
        cfg.root = args.root
    print(check_tree(prepare_data(cfg), "cityscapes").report())
    return 0


def cmd_data_check(args) -> int:
    print(check_tree(args.root, args.dataset, tuple(args.splits), progress=True).report())
    return 0


def cmd_figures(args) -> int:
    for p in regenerate(args.out):
        print(p)
    return 0


def cmd_pipeline(args) -> int:
    cfg = _config(args)
    res = pipeline.run_pipeline(cfg, resolve(args.out or f"runs/pipeline-{cfg.profile}"))
    if res.summary is not None:  # rank 0's (under torchrun the other ranks only search and train)
        print("\n".join(pipeline.summary_lines(cfg, res)))
    return 0


def cmd_arch_show(args) -> int:
    print("\n".join(arch_report(published.resolve(args.file), *args.size, aux=not args.no_aux)))
    return 0

def cmd_arch_import(args) -> int:
    for p in import_published(resolve(args.reference), resolve(args.out)):
        print(p)
    return 0


def _size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W), for --resolutions."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size HxW, e.g. 512x1024") from None
    return h, w


def cmd_bench(args) -> int:
    name = args.profile or "tiny"
    res = bench.run_bench(args.bench_cmd, name, args.threads, args.rounds, tuple(getattr(args, "only", None) or ()),
                    tuple(getattr(args, "arch", None) or ()), not getattr(args, "no_search", False),
                    getattr(args, "lut_keys", 0), getattr(args, "output", "logits"),
                    tuple(getattr(args, "resolutions", None) or ()), getattr(args, "decision", None))
    print("\n".join(bench.summary_lines(res)))
    print(bench.write(res, resolve(args.out or f"runs/bench/{args.bench_cmd}-{name}.json")))
    return 0


def _backend(cfg, args):
    name = args.backend or cfg.latency.backend
    return get_backend(name, threads=args.threads or cfg.latency.threads, device=cfg.latency.device)


def cmd_latency_build(args) -> int:
    cfg = _config(args)
    out = resolve(args.out or cfg.latency.table)
    table = build_for(cfg, _backend(cfg, args), out, resume=not args.no_resume, force=args.force)
    print(f"{out}: {table.describe()} in {table.meta['build_seconds']} s")
    return 0

def cmd_latency_show(args) -> int:
    cfg = _config(args)
    path = resolve(args.table or cfg.latency.table)
    table = LatencyTable.load(path)
    warning = fit_warning(table, args.table or cfg.latency.table)
    lines = latency_table.summary_lines(table, [published.resolve(a) for a in args.arch or []])
    print("\n".join(([warning] if warning else []) + lines))
    return 0

def cmd_latency_validate(args) -> int:
    cfg = _config(args)
    threads = args.threads or cfg.latency.threads
    compare = [get_backend(name, threads=threads, device=cfg.latency.device) for name in (args.compare or [])]
    out = resolve(args.out or f"runs/latency-validate-{cfg.profile}")
    df, summary = latency_validate.validate_config(cfg, _backend(cfg, args), out,
                                                   args.networks or cfg.latency.validate_networks, args.seed, compare)
    if not args.no_figure:
        save_figure(plot_predicted_vs_measured(df, summary).figure, out / "predicted_vs_measured.png")
    print("\n".join(latency_validate.summary_lines(summary, threads)) + f"\nwritten to {out}")
    return 0

def cmd_latency_calibrate(args) -> int:
    cfg = _config(args)
    print("\n".join(calibrate_table(resolve(args.table or cfg.latency.table), resolve(args.write) if args.write
                                     else None)))
    return 0


def cmd_latency_import(args) -> int:
    table = convert_latency_table(resolve(args.reference) / "latency_lookup_table.npy")
    print(table.save(resolve(args.out)), table.describe())
    return 0


def cmd_search(args) -> int:
    out = resolve(args.out or f"runs/search-{args.profile or 'tiny'}")
    cfg = _resume_config(args, out, SEARCH_SECTIONS)
    run_search(cfg, out, resume=args.resume or args.restart, max_steps=args.max_steps, restart=args.restart)
    print(f"run directory: {out}")
    return 0


def cmd_collapse(args) -> int:
    cfg = _config(args, SEARCH_SECTIONS)
    out = resolve(args.out or f"runs/collapse-{cfg.profile}")
    print("\n".join(collapse_lines(run_collapse(cfg, out, jobs=args.jobs, resume=args.resume), out)))
    return 0


def cmd_train(args) -> int:
    out = resolve(args.out or f"runs/train-{args.profile or 'tiny'}")
    cfg = _resume_config(args, out, TRAIN_SECTIONS + ("eval",))
    resume = args.resume or args.restart
    model, teacher = (args.model, args.teacher) if args.model else stored_model(out, resume, args.teacher)
    run_train(cfg, model, out, resume=resume, teacher=resolve(teacher) if teacher else None,
              max_steps=args.max_steps, restart=args.restart)
    print(f"run directory: {out}")
    return 0


def cmd_evaluate(args) -> int:
    cfg = _config(args, ("data", "eval", "runtime"))
    if args.latency_only:
        for x in evaluation.remeasure_latency(cfg, resolve(args.run), args.weights):
            print(f"{x['backend']}: {x['median_ms']:.2f} ms, {x['threads']} thread(s), {x['resolution']}")
        return 0
    print("\n".join(evaluation.summary_lines(evaluation.evaluate_run(cfg, resolve(args.run), which=args.weights))))
    return 0

def cmd_export(args) -> int:
    cfg = _config(args, ("data", "export") if args.forms else ("export",))
    out = resolve(args.out) if args.out else resolve(args.run) / "export"
    print(summary_line(export_run(resolve(args.run), cfg, out, args.weights)))
    if args.forms:
        print("\n".join(write_forms(resolve(args.run), cfg, out)))
    return 0

def cmd_predict(args) -> int:
    cfg = _config(args, ("eval", "runtime"))
    flip = cfg.eval.flip if args.flip is None else args.flip
    rt = Runtime.local(cfg.runtime)
    res = predict_folder(resolve(args.run), resolve(args.images), resolve(args.out), label_ids=args.label_ids,
                         flip=flip, device=rt.device)
    print("\n".join(predict_summary(res)))
    return 0


def cmd_import_weights(args) -> int:
    out = import_weights(resolve(args.weights), args.arch, resolve(args.out))
    print(f"{out}: a finished training run holding {args.weights} on {args.arch}; evaluate it with "
          f"fasterseg evaluate {args.out} --profile paper data.root=/path/to/cityscapes")
    return 0


def cmd_study(args) -> int:
    cfg = _config(args)
    target = getattr(args, "pipeline", None) or getattr(args, "study", None) or args.out
    print("\n".join(run_study(args.study_cmd, cfg, resolve(target or f"runs/{args.study_cmd}-{cfg.profile}"),
                               tuple(getattr(args, "seeds", ())), tuple(getattr(args, "lams", ())),
                               tuple(getattr(args, "names", None) or ()))))
    return 0


def _cmd(parent, name: str, func, help: str, profile: bool = True, *args: tuple) -> argparse.ArgumentParser:
    """A subcommand: `args` are (flags..., kwargs) tuples for `add_argument`."""
    p = parent.add_parser(name, help=help)
    if profile:
        _add_profile(p)
    for a in args:
        kw = dict(a[-1])
        if kw.get("type") == "positive":
            kw["type"] = _positive
        p.add_argument(*a[:-1], **kw)
    p.set_defaults(func=func)
    return p


def _group(sub, name: str, help: str):
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_cmd", required=True)


OUT = ("--out", {"help": "output folder"})
RESUME = ("--resume", {"action": "store_true", "help": "continue the run in --out from its last good checkpoint"})
MAX_STEPS = ("--max-steps", {"type": "positive", "help": "stop after this many steps of this call, with a checkpoint "
                                                           "(continue later with --resume)"})
RESTART = ("--restart", {"action": "store_true", "help": "start the run in --out over, clearing its records (when "
                                                        "nothing usable is left to resume)"})
RUN = ("run", {"help": "a finished training run"})
WEIGHTS = ("--weights", {"choices": ("best", "last"), "default": "best"})
SEEDS = ("--seeds", {"nargs": "+", "type": int, "default": [0, 1, 2]})
BACKEND = ("--backend", {"choices": LATENCY_BACKENDS, "help": "default: latency.backend"})
THREADS = ("--threads", {"type": int, "help": "default: latency.threads"})


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fasterseg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    main_job = "the main job: data, latency table, search, training, distillation, evaluation, export, report"
    _cmd(sub, "pipeline", cmd_pipeline, main_job, True, OUT)
    _cmd(sub, "demo", cmd_pipeline, "alias of pipeline", True, OUT)
    _cmd(sub, "config", cmd_config, "print the config of a profile (with a file and overrides) as JSON, or write it",
         True, ("--write", {"metavar": "FILE.yaml", "help": "write the complete config as YAML (for --config)"}))
    data = _group(sub, "data", "generate or check data sets")
    _cmd(data, "generate", cmd_data_generate, "write the synthetic street scenes in the Cityscapes layout", True,
         ("--root", {"help": "output folder (default: data.root of the profile)"}))
    _cmd(data, "check", cmd_data_check, "validate a data tree and print counts and class frequencies", False,
         ("--root", {"required": True, "help": "the data root (Cityscapes or CamVid layout)"}),
         ("--dataset", {"choices": ("cityscapes", "camvid"), "default": "cityscapes"}),
         ("--splits", {"nargs": "+", "default": ["train", "val"]}))
    arch = _group(sub, "arch", "show or import architectures")
    _cmd(arch, "show", cmd_arch_show, "print an architecture as a table with its parameter and MAC totals", False,
         ("file", {"help": "architecture JSON file, or a published name (fasterseg_student, fasterseg_teacher)"}),
         ("--size", {"nargs": 2, "type": int, "default": [1024, 2048], "metavar": ("H", "W"),
                     "help": "input size for the counts (default 1024 2048)"}),
         ("--no-aux", {"action": "store_true", "help": "count without the auxiliary training heads"}))
    _cmd(arch, "import", cmd_arch_import, "convert the original arch_0.pt/arch_1.pt into JSON (restricted unpickling)",
         False, ("--reference", {"default": "../shared/reference", "help": "folder holding arch_0.pt and arch_1.pt"}),
         ("--out", {"default": "fasterseg/published", "help": "where to write the JSON files"}))
    _cmd(sub, "search", cmd_search, "pretrain + co-search teacher and student (resumable)", True, OUT, RESUME,
         RESTART, MAX_STEPS)
    _cmd(sub, "collapse", cmd_collapse, "coarse vs decoupled latency penalty at equal lambda: a side-by-side table",
         True, OUT, ("--jobs", {"type": "positive", "default": 1, "help": "2 runs both searches at once"}),
         ("--resume", {"action": "store_true", "help": "continue unfinished searches of the study"}))
    _cmd(sub, "train", cmd_train, "train a network from scratch (optionally distilled from a teacher run)", True,
         ("--model", {"help": "architecture JSON, published name (fasterseg_student) or peer:NAME (fast_scnn, "
                              "lraspp_mobilenetv3_large, bisenetv2, ddrnet23_slim)"}),
         ("--teacher", {"help": "a finished training run to distil from"}), OUT, RESUME, RESTART, MAX_STEPS)
    _cmd(sub, "evaluate", cmd_evaluate, "whole-image mIoU, per-class IoU, majority baseline, measured latency", True,
         RUN, ("--weights", {"choices": ("best", "last", "init"), "default": "best",
                             "help": "init (with --latency-only): time the architecture freshly initialised, "
                                     "for a checkout without weights"}),
         ("--latency-only", {"action": "store_true",
                             "help": "re-time the latency only (on a quiet machine) into the metrics"}))
    _cmd(sub, "export", cmd_export, "ONNX (BN folded) checked against PyTorch; TensorRT where available", True, RUN,
         WEIGHTS, ("--out", {"help": "output folder (default <run>/export)"}),
         ("--forms", {"action": "store_true", "help": "also compare the deployed forms (fp32 nearest, int8) with fp32 "
                      "bilinear: mIoU, pixel agreement, ONNX Runtime latency at 512x1024 (forms.json)"}))
    _cmd(sub, "predict", cmd_predict, "colour overlays (and Cityscapes label-id PNGs) for a folder of images", True,
         RUN, ("--images", {"required": True, "help": "folder of images (searched recursively)"}),
         ("--out", {"required": True, "help": "output folder (overlays/ and label_ids/ inside)"}),
         ("--label-ids", {"action": "store_true", "help": "also write label-id PNGs in <out>/label_ids/ for the "
                                                          "official evaluation and the Cityscapes server"}),
         ("--flip", {"action": argparse.BooleanOptionalAction, "default": None,
                     "help": "average with the mirrored image (default: eval.flip of the profile)"}))
    _cmd(sub, "import-weights", cmd_import_weights, "the original release's trained weights as a run of the kit",
         False, ("weights", {"help": "the original's state dict (weights0.pt teacher, weights1.pt student)"}),
         ("--arch", {"required": True, "help": "the architecture it belongs to: fasterseg_student, fasterseg_teacher "
                                               "or a JSON file"}),
         ("--out", {"required": True, "help": "the run folder to write (new or empty)"}))
    study = _group(sub, "study", "training studies: same budget, several seeds")
    _cmd(study, "distill", cmd_study, "a pipeline's student with and without distillation", True,
         ("--pipeline", {"required": True, "help": "a finished pipeline folder"}), SEEDS)
    _cmd(study, "collapse", cmd_study, "the collapse study's students trained from scratch", True,
         ("--study", {"required": True, "help": "a collapse study folder (with coarse/ and decoupled/)"}), SEEDS)
    _cmd(study, "peers", cmd_study, "the peer networks trained under the same budget", True,
         ("--out", {"help": "study folder (default runs/peers-<profile>)"}), SEEDS,
         ("--names", {"nargs": "+", "choices": tuple(PEERS), "help": "some of the peers (default: all)"}))
    _cmd(study, "sweep", cmd_study, "searches over a grid of the student's latency weight, both penalties", True,
         ("--out", {"help": "study folder (default runs/sweep-<profile>)"}),
         ("--lams", {"nargs": "+", "type": float, "default": [0.01, 0.03, 0.1, 0.3, 1.0]}))
    lat = _group(sub, "latency", "latency tables: build, show, validate, import")
    _cmd(lat, "build", cmd_latency_build, "measure every block of the search space on this machine (resumable)", True,
         BACKEND, THREADS, ("--out", {"help": "CSV path (default: latency.table); a .json sidecar goes next to it"}),
         ("--no-resume", {"action": "store_true", "help": "start over instead of continuing a partial table (with "
                                                          "--force)"}),
         ("--force", {"action": "store_true", "help": "replace a complete table at the target path"}))
    _cmd(lat, "show", cmd_latency_show, "summarise a table; with --arch, predict networks' latency", True,
         ("--table", {"help": "CSV path (default: latency.table of the profile)"}),
         ("--arch", {"nargs": "*", "help": "architecture names or JSON files to predict"}))
    _cmd(lat, "validate", cmd_latency_validate, "predicted vs measured latency of random derived networks", True,
         BACKEND, THREADS, ("--networks", {"type": int, "help": "how many (default: latency.validate_networks)"}),
         ("--compare", {"nargs": "*", "choices": ("onnxruntime", "torch"), "help": "also time on these backends"}),
         ("--no-figure", {"action": "store_true", "help": "write no scatter figure (reference logs under data/)"}),
         ("--seed", {"type": int, "default": 0}), ("--out", {"help": "default runs/latency-validate-<profile>"}))
    _cmd(lat, "calibrate", cmd_latency_calibrate, "does the table still fit this machine? (re-times its probe)", True,
         ("--table", {"help": "CSV path (default: latency.table of the profile)"}),
         ("--write", {"help": "write a copy rescaled by the measured factor to this CSV path"}))
    _cmd(lat, "import", cmd_latency_import, "convert the original 1080Ti TensorRT table (restricted unpickling)", False,
         ("--reference", {"default": "../shared/reference"}),
         ("--out", {"default": "data/latency/gtx1080ti_tensorrt_1024x2048.csv"}))
    bench = _group(sub, "bench", "benchmarks (ratios against a reference timed in the same run)")
    for name, help_ in (("supernet", "supernet training step and the published student's inference time"),
                        ("search", "seconds per search step and images/s"),
                        ("pipeline", "the whole pipeline end to end, per stage"),
                        ("panel", "the tuning panel's response to a control move (committed cpu sweep)"),
                        ("networks", "published student and peers: torch, ONNX Runtime fp32 and int8"),
                        ("ddp", "search and training steps with 1 and 2 processes (gloo, CPU), share reducing")):
        _cmd(bench, name, cmd_bench, help_, False, ("--profile", {"choices": PROFILE_NAMES, "default": None}),
             ("--threads", {"type": "positive", "default": 1, "help": "torch threads (1: the steadiest)"}),
             ("--rounds", {"type": "positive", "default": 20 if name == "networks" else 5,
                           "help": "timed rounds, interleaved with the reference"}),
             ("--out", {"help": "JSON path (default runs/bench/<name>-<profile>.json)"}),
             *((("--arch", {"nargs": "*", "help": "architecture files measured beside the others (NAME=FILE "
                                                  "names one)"}),
                ("--only", {"nargs": "*", "help": "measure only these networks"}),
                ("--no-search", {"action": "store_true", "help": "leave out the search step and the table build"}),
                ("--lut-keys", {"type": int, "default": 0, "help": "time only this many table entries and "
                                "extrapolate (default: build the whole table)"}),
                ("--output", {"choices": ("logits", "classes"), "default": "logits",
                              "help": "time each network up to its logits, or up to the class map (argmax included; "
                                      "a nearest8 student takes it at 1/8)"}),
                ("--decision", {"choices": DECISIONS, "help": "with --output classes: this class decision for every "
                                "network (default: each one's own)"}),
                ("--resolutions", {"nargs": "*", "type": _size, "metavar": "HxW",
                                   "help": "input sizes (default: 512x1024 and 1024x2048; tiny: 128x256)"}))
               if name == "networks" else ()))
    _cmd(sub, "figures", cmd_figures, "regenerate every figure in figures/ from data and logged runs", False,
         ("--out", {"default": "figures"}))
    return ap


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


OVERRIDE = re.compile(r"^[a-z_]+\.[A-Za-z_0-9]+=")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: options and positionals by argparse; ``section.field=value`` overrides collected from
    anywhere on the line (argparse cannot place a variable-length positional after another positional)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if OVERRIDE.match(a)]  # taken out first, so none is read as a positional
    args, rest = parser.parse_known_args([a for a in argv if not OVERRIDE.match(a)])
    if rest or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(rest or overrides)}")
    if hasattr(args, "overrides"):
        args.overrides = list(args.overrides) + overrides
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    say = (lambda text: print(text, file=sys.stderr)) if os.environ.get("RANK", "0") == "0" else (lambda text: None)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        say("error: interrupted (nothing of this command was saved beyond what it already wrote)")
        return 130
    except (ValueError, RunError, OSError, PeerLost) as e:  # config, data, table, run errors carry their fix
        say(f"error: {e}")  # under torchrun every rank stops alike; rank 0 says why, once
        return 2
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
