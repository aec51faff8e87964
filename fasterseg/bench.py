"""Benchmarks (`fasterseg bench ...`): timings as ratios against a reference measured in the same run.

The reference is a dense 3x3 convolution (64->64 channels on 1x64x128x256, 1.2 GMAC), timed
interleaved with the candidate, so machine load affects both. Thread count is fixed (default 1,
the steadiest on a shared machine) and recorded with the load average. Results go to JSON.
"""
from __future__ import annotations

import copy
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fasterseg.bench_ddp import bench_ddp
from fasterseg.bench_ddp import summary_lines as ddp_lines
from fasterseg.config import apply_overrides, profile
from fasterseg.data.batching import batch_at
from fasterseg.data.cityscapes import build_dataset
from fasterseg.data.prepare import prepare_data
from fasterseg.data.transforms import TrainTransform, normalize, resize_pair
from fasterseg.deploy.export import export_network
from fasterseg.latency import load_for
from fasterseg.latency.backends import OnnxRuntimeBackend, get_backend
from fasterseg.latency.build import build_table
from fasterseg.latency.keys import space_keys
from fasterseg.nas.losses import downsample_labels, supernet_weight_loss
from fasterseg.nas.run import search_data
from fasterseg.nas.searcher import Searcher
from fasterseg.nas.tuning import sweep_config
from fasterseg.nets import published
from fasterseg.nets.build import ClassMap
from fasterseg.nets.counting import totals
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.onnx import ort_call, quantize_int8
from fasterseg.nets.peers import PEERS
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import Supernet
from fasterseg.panels import TuningPanel
from fasterseg.paths import resolve, write_text
from fasterseg.pipeline import run_pipeline
from fasterseg.timing import REF_MACS, environment, interleaved, no_grad_call, peak_rss_mb, reference_conv
from fasterseg.tradeoffs import reference_points


def bench_supernet(profile_name: str = "tiny", threads: int = 1, rounds: int = 5) -> dict:
    """Supernet training step (forward + backward of the search-phase weight loss: both architecture
    sets plus max/min passes) at the profile's search crop and batch, and the published student's
    inference at 1x3x512x1024 in eager PyTorch and in ONNX Runtime (whose graph optimisation folds BN)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = profile(profile_name)
    space = SearchSpace.from_config(cfg.space)
    net = Supernet(space, cfg.data.num_classes, cfg.space.stem_head_widths)
    h, w = cfg.search.crop  # after the search's x2 down-sampling
    b = cfg.search.batch_size
    x = torch.randn(b, 3, h, w)
    y = torch.randint(0, cfg.data.num_classes, (b, h, w))
    rss0 = peak_rss_mb()

    def step():
        net.zero_grad(set_to_none=True)
        loss, _ = supernet_weight_loss(net, x, downsample_labels(y))
        loss.backward()

    res = {"environment": environment(threads), "profile": profile_name,
           "supernet": {"layers": space.layers, "fch": space.fch, "batch": b, "crop": [h, w],
                        "weights_M": sum(p.numel() for p in net.weight_parameters()) / 1e6,
                        "step": interleaved(step, rounds, warmup=1)}}
    res["supernet"]["peak_rss_increase_MB"] = peak_rss_mb() - rss0
    res["supernet"]["images_per_s"] = b / res["supernet"]["step"]["median_ms"] * 1e3

    arch = published.load("fasterseg_student")
    student = DerivedNet(arch, aux=False).eval()
    xi = torch.randn(1, 3, 512, 1024)
    _, gmacs = totals(student, (1, 3, 512, 1024))

    def infer():
        with torch.no_grad():
            student(xi)

    r = interleaved(infer, rounds)
    r.update({"GMACs": gmacs, "achieved_gmacs_per_s": gmacs / r["median_ms"] * 1e3, "fps": 1e3 / r["median_ms"],
              "input": [1, 3, 512, 1024], "interpolation": "bilinear", "batch": 1,
              "includes": "network forward only (no pre/post-processing)"})
    res["student_inference"] = r
    ort = OnnxRuntimeBackend(threads=threads)
    o = interleaved(ort.prepare(student, tuple(xi.shape)), rounds)
    o.update({"fps": 1e3 / o["median_ms"], "achieved_gmacs_per_s": gmacs / o["median_ms"] * 1e3,
              "runtime": ort.describe()["versions"], "graph_optimization": "ORT_ENABLE_ALL (folds BN into convs)"})
    res["student_inference_onnxruntime"] = o
    return res


def write(result: dict, path: str | Path) -> Path:
    """The report as JSON at `path`, and, for `bench networks`, its markdown table beside it (``.md``)."""
    path = write_text(path, json.dumps(result, indent=2))
    if "networks" in result:
        write_text(path.with_suffix(".md"), networks_markdown(result))
    return path


def run_bench(kind: str, profile_name: str = "tiny", threads: int = 1, rounds: int = 5, only: tuple = (),
              archs: tuple = (), with_search: bool = True, lut_keys: int = 0, output: str = "logits",
              resolutions: tuple[tuple[int, int], ...] = (), decision: str | None = None) -> dict:
    """One benchmark by name: ``supernet``, ``search``, ``pipeline``, ``panel`` (the committed cpu sweep) or
    ``networks`` (the other arguments are those of `bench_networks`)."""
    if kind == "pipeline":
        return bench_pipeline(profile_name, threads)
    if kind == "ddp":
        return bench_ddp(profile_name, steps=rounds)
    if kind == "panel":
        return bench_panel(threads=threads, rounds=rounds)
    if kind == "networks":
        return bench_networks(profile_name, threads, rounds, only, resolutions, archs=archs, with_search=with_search,
                              lut_keys=lut_keys, output=output, decision=decision)
    return {"supernet": bench_supernet, "search": bench_search}[kind](profile_name, threads, rounds)


def bench_search(profile_name: str = "tiny", threads: int = 1, rounds: int = 5) -> dict:
    """Seconds per search step (`Searcher.step`: architecture step + weight step, both sets, at the
    profile's crops and batch, batch loading included) and images per second, interleaved with the
    reference convolution."""
    torch.set_num_threads(threads)
    cfg = apply_overrides(profile(profile_name), [f"runtime.threads={threads}", "runtime.device=cpu"])
    sc = cfg.search
    prepare_data(cfg.data, progress=False)
    train, _, w_idx, a_idx = search_data(cfg)
    train.transform = TrainTransform(*sc.crop, sc.scale_min, sc.scale_max, downsample=sc.downsample)
    s = Searcher(cfg, load_for(cfg))
    k = {"i": 0}

    def step():
        i = k["i"] = k["i"] + 1
        s.step("search", batch_at(train, w_idx, sc.batch_size, 0, i, sc.seed, 1),
               batch_at(train, a_idx, sc.batch_size, 0, i, sc.seed, 2))

    r = interleaved(step, rounds, warmup=1)
    images = 2 * sc.batch_size  # an architecture batch and a weight batch per step
    r.update({"seconds_per_step": r["median_ms"] / 1e3, "images_per_s": images / r["median_ms"] * 1e3,
              "batch": sc.batch_size, "crop": list(sc.crop), "layers": cfg.space.layers, "fch": cfg.space.fch,
              "includes": "batch loading + arch step (both sets, penalty) + weight step (both sets + max/min)"})
    return {"environment": environment(threads), "profile": profile_name, "search_step": r}


def summary_lines(res: dict) -> list[str]:
    """The human-readable lines of a benchmark result (`bench_supernet` or `bench_search`)."""
    if "search" in res and "train" in res:
        return ddp_lines(res)
    env = res["environment"]
    head = f"[{env['runtime']}, {env['threads']} thread(s), fp32, load {env['load_average_1min']:.2f}]"
    if "networks" in res:
        return [head, networks_markdown(res)]
    if "panel" in res:
        r = res["panel"]
        lines = [f"{head} tuning panel over {r['sweep']}: one control move updates in {r['median_ms']:.0f} ms median "
                 f"[{r['min_ms']:.0f}-{r['max_ms']:.0f}] with its drawings made ahead, {r['ratio_to_reference']:.1f}x "
                 f"the reference conv ({r['reference_gmacs_per_s']:.0f} GMAC/s)"]
        if "first_visit" in r:
            f = r["first_visit"]
            lines.append(f"  a run's first visit (drawing and figure made then): {f['median_ms']:.0f} ms median "
                         f"[{f['min_ms']:.0f}-{f['max_ms']:.0f}], {f['ratio_to_reference']:.1f}x the reference conv")
        return lines
    if "pipeline" in res:
        p = res["pipeline"]
        return [f"{head} profile {res['profile']}: the whole pipeline in {p['seconds']:.0f} s "
                f"({p['ratio_to_reference']:.0f}x the reference conv, {p['reference_gmacs_per_s']:.0f} GMAC/s)"] + [
                f"  {s['stage']}: line printed at {s['elapsed_s']:.1f} s" for s in p["stages"]] + [
                f"  {n}: mIoU {r['miou']:.1f} % (majority class {r['majority_miou']:.1f} %)"
                for n, r in p.get("networks", {}).items() if "miou" in r]
    if "search_step" in res:
        r = res["search_step"]
        return [f"{head} profile {res['profile']}: L={r['layers']} F={r['fch']}, batch {r['batch']} at "
                f"{r['crop'][0]}x{r['crop'][1]}",
                f"search step {r['seconds_per_step']:.2f} s median [{r['min_ms'] / 1e3:.2f}-{r['max_ms'] / 1e3:.2f}], "
                f"{r['images_per_s']:.1f} images/s, {r['ratio_to_reference']:.1f}x the reference conv "
                f"({r['reference_gmacs_per_s']:.0f} GMAC/s)"]
    s, i, o = res["supernet"], res["student_inference"], res["student_inference_onnxruntime"]
    return [head,
            f"supernet L={s['layers']} F={s['fch']} ({s['weights_M']:.1f} M weights), batch {s['batch']} at "
            f"{s['crop'][0]}x{s['crop'][1]}: training step (weight loss, both arch sets + max/min, fwd+bwd) "
            f"{s['step']['median_ms']:.0f} ms median [{s['step']['min_ms']:.0f}-{s['step']['max_ms']:.0f}], "
            f"{s['images_per_s']:.1f} images/s, {s['step']['ratio_to_reference']:.1f}x the reference conv; "
            f"peak RSS +{s['peak_rss_increase_MB']:.0f} MB",
            f"published student at 1x3x512x1024 (bilinear, batch 1, forward only): {i['median_ms']:.0f} ms median "
            f"({i['fps']:.1f} FPS), {i['GMACs']:.2f} GMACs -> {i['achieved_gmacs_per_s']:.0f} GMAC/s; "
            f"reference conv {i['reference_gmacs_per_s']:.0f} GMAC/s; ratio {i['ratio_to_reference']:.2f}",
            f"  same on ONNX Runtime (CPU provider, {env['threads']} thread(s)): {o['median_ms']:.0f} ms "
            f"({o['fps']:.1f} FPS), {o['achieved_gmacs_per_s']:.0f} GMAC/s; ratio {o['ratio_to_reference']:.2f}; "
            f"{i['median_ms'] / o['median_ms']:.2f}x faster than eager PyTorch"]


def bench_panel(sweep: str | Path = "data/runs/sweep-cpu", threads: int = 1, rounds: int = 10) -> dict:
    """The tuning panel's response to a control move (notebook 05): one `TuningPanel.update` — nearest sweep
    run, the penalty's terms and gradients, the graphviz drawing and the static figure — timed interleaved with
    the reference conv, cycling λ over the sweep's values, the penalty mode and the set (the kernel side only: a
    browser adds its rendering). Twice: with the drawings cached (the panel draws every run ahead in the
    background) and as a first visit (``first_visit``: nothing drawn yet)."""
    torch.set_num_threads(threads)
    cfg = sweep_config(resolve(sweep))
    cfg.latency.calibration = "off"
    panel = TuningPanel(resolve(sweep), cfg, load_for(cfg), prerender=False)
    lams = sorted(set(panel.sweep["lam"]))
    moves = itertools.cycle([(name, value) for arch_set in ("student", "teacher") for mode in ("decoupled", "coarse")
                             for name, value in [("arch_set", arch_set), ("penalty", mode)] +
                             [("lam", lam) for lam in lams]])

    def move():  # one control changed per move, as a user does; its observer updates the panel once
        name, value = next(moves)
        while panel.w[name].value == value:
            name, value = next(moves)
        panel.w[name].value = value

    def cold_move():  # as a run's first visit: nothing drawn yet
        panel._pictures.clear()
        move()
    cold = interleaved(cold_move, rounds, warmup=1)
    warm = interleaved(move, rounds, warmup=1)
    return {"environment": environment(threads), "profile": cfg.profile,
            "panel": {"sweep": str(sweep), **warm, "first_visit": cold}}


def bench_pipeline(profile_name: str = "tiny", threads: int = 0) -> dict:
    """The whole `fasterseg pipeline` end to end in a fresh folder (data generated into it too): seconds per
    stage and in total, with the reference convolution's rate measured before and after (the machine's
    speed varies from day to day; compare runs by the ratio)."""
    before = interleaved(lambda: None, rounds=10)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(profile(profile_name), [f"data.root={tmp}/data"]
                              + ([f"runtime.threads={threads}"] if threads else []))
        marks, t0 = [], time.perf_counter()
        res = run_pipeline(cfg, Path(tmp) / "run", say=lambda line: marks.append((time.perf_counter() - t0, line)),
                           progress=False)
        total = time.perf_counter() - t0
        cols = [c for c in ("miou", "majority_miou", "params_M", "GMACs", "predicted_ms") if c in res.summary]
        networks = res.summary[cols].to_dict(orient="index")  # what the pipeline delivered, beside its time
    after = interleaved(lambda: None, rounds=10)
    # a stage's line is printed when it starts (search, training) or ends (data, table, derive, evaluate, ...):
    # record the elapsed time at each line rather than guess per-stage durations
    stages = [{"stage": line.split("]")[0].strip("["), "elapsed_s": t} for t, line in marks]
    ref_ms = (before["reference_median_ms"] + after["reference_median_ms"]) / 2
    return {"environment": environment(threads or torch.get_num_threads()), "profile": profile_name,
            "pipeline": {"seconds": total, "stages": stages, "networks": networks, "reference_conv_ms": ref_ms,
                         "reference_gmacs_per_s": REF_MACS / ref_ms / 1e6, "ratio_to_reference": total * 1e3 / ref_ms}}


def _calibration_images(cfg, height: int, width: int, n: int = 8):
    """`n` training images of the profile's data, resized to height x width, normalised (N, 3, H, W)."""
    prepare_data(cfg.data, progress=False)
    ds = build_dataset(cfg.data, "train")
    out = []
    for i in range(min(n, len(ds))):
        img, lab = ds.load(i)
        img, _ = resize_pair(img, lab, height, width)
        out.append(normalize(img))
    return np.stack(out)


def bench_networks(profile_name: str = "tiny", threads: int = 1, rounds: int = 20, networks: tuple[str, ...] = (),
                   resolutions: tuple[tuple[int, int], ...] = (), archs: tuple[str, ...] = (),
                   with_search: bool = True, lut_keys: int = 0, output: str = "logits",
                   decision: str | None = None) -> dict:
    """Every network (the published FasterSeg student and the peers, or `networks`) at each resolution:
    parameters, GMACs, and latency on torch eager (contiguous and channels-last), ONNX Runtime fp32 and ONNX
    Runtime int8 (static,
    calibrated on the profile's training images), each timed `rounds` times interleaved with the reference
    convolution (median, min, max, ratio to the reference, achieved share of the reference's GMAC/s).
    Default resolutions: 128x256 (tiny), else 512x1024 and 1024x2048. `archs`: architecture files (or
    published names) measured beside them, as ``NAME=FILE`` or named by their file's stem. Each row also has FPS
    on ONNX Runtime fp32 and the network's mIoU under the kit's equal training budget where the reference runs hold it
    (`equal_budget_miou`). `with_search` adds the profile's search-step throughput (`bench_search`) and latency
    table build time (`bench_lut_build`, `lut_keys` > 0 times only that many entries and extrapolates).
    `output`: ``logits`` (each network up to its full-resolution logits) or ``classes`` (up to the class map, the
    argmax included: `nets.build.ClassMap`, which takes a ``nearest8`` network's argmax at 1/8), with each network's
    own class decision or, with `decision`, that one for every network (its mIoU is then left out where the
    network was trained and evaluated with another)."""
    if output not in ("logits", "classes"):
        raise ValueError(f"output {output!r}; choose logits or classes")
    torch.set_num_threads(threads)
    cfg = profile(profile_name)
    res_list = resolutions or (((128, 256),) if profile_name == "tiny" else ((512, 1024), (1024, 2048)))
    builders = {"fasterseg_student": lambda: DerivedNet(published.load("fasterseg_student"), aux=False)}
    builders.update({n: (lambda n=n: PEERS[n](19, aux=False)) for n in PEERS})
    for a in archs:  # derived networks of the user's: NAME=FILE, or named by the file's stem
        name, _, file = a.rpartition("=") if "=" in a else (Path(a).stem, "", a)
        builders[name] = lambda file=file: DerivedNet(published.resolve(file), aux=False)
    names = networks or tuple(builders)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in res_list:
            calib = _calibration_images(cfg, h, w, 4)
            for name in names:
                net = builders[name]().eval()
                own = net.arch.decision if isinstance(net, DerivedNet) else "own"
                if output == "classes":
                    net = ClassMap(net, decision).eval()
                params, gmacs = totals(net, (1, 3, h, w))
                x = torch.randn(1, 3, h, w)
                fp32 = export_network(net, Path(tmp) / f"{name}_{h}.onnx", h, w)
                int8 = quantize_int8(fp32, Path(tmp) / f"{name}_{h}_int8.onnx", calib)
                row = {"network": name, "resolution": [h, w], "params_M": params, "GMACs": gmacs}
                net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)  # NHWC kernels in eager
                x_cl = x.contiguous(memory_format=torch.channels_last)
                calls = {"torch": no_grad_call(net, x), "torch_channels_last": no_grad_call(net_cl, x_cl),
                         "ort_fp32": ort_call(fp32, x, threads), "ort_int8": ort_call(int8, x, threads)}
                for runtime, call in calls.items():
                    r = interleaved(call, rounds, warmup=2)
                    r["achieved_share_of_reference"] = (gmacs / r["median_ms"] * 1e3) / r["reference_gmacs_per_s"]
                    row[runtime] = r
                row["fps_ort_fp32"] = 1e3 / row["ort_fp32"]["median_ms"]
                miou = equal_budget_miou().get(name) if decision in (None, own) else None
                row["decision"] = decision or own
                row["miou_equal_budget"], row["miou_equal_budget_std"], row["seeds"] = miou or (None, None, 0)
                rows.append(row)
    res = {"environment": environment(threads), "profile": profile_name, "rounds": rounds, "output": output,
           "decision": decision or "each network's own", "networks": rows}
    if with_search:
        res["search_step"] = bench_search(profile_name, threads, rounds=max(3, rounds // 4))["search_step"]
        res["lut_build"] = bench_lut_build(profile_name, threads, lut_keys)
    return res


def equal_budget_miou(root: str | Path = "data/runs") -> dict[str, tuple[float, float | None, int]]:
    """(mIoU mean %, std % or None for one seed, seeds) of each network trained under the kit's cpu budget in the
    committed reference runs (`tradeoffs.reference_points`), keyed by the bench's network names (the CPU-space
    student by its ``--arch`` name, ``cpu_space_student``); empty when none are committed."""
    pts = reference_points(root)
    names = {"published fasterseg_student": "fasterseg_student", "cpu-space student distilled": "cpu_space_student",
             "cpu_student": "cpu_student"}
    return {names.get(n, n): (float(m), None if np.isnan(sd) else float(sd), int(k))
            for n, m, sd, k in zip(pts["name"], pts["miou"], pts["miou_std"], pts["seeds"])} if len(pts) else {}


def bench_lut_build(profile_name: str = "tiny", threads: int = 1, keys: int = 0) -> dict:
    """Seconds to build the profile's latency table with its own backend into a temporary file (all its keys, or
    the first `keys` of them, extrapolated to all), with the reference convolution's rate measured before and
    after; per entry and for the whole table."""
    cfg = profile(profile_name)
    lc = cfg.latency
    space = SearchSpace.from_config(cfg.space)
    all_keys = sorted(set(space_keys(space, cfg.space.stem_head_widths, cfg.data.num_classes, lc.height, lc.width)))
    chosen = all_keys[:keys] if keys else all_keys
    ref = reference_conv()
    before = interleaved(ref, 5, warmup=1)["reference_median_ms"]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build_table(Path(tmp) / "t.csv", get_backend(lc.backend, threads=threads, device=lc.device), space,
                    cfg.space.stem_head_widths, cfg.data.num_classes, lc.height, lc.width, resume=False,
                    progress=False, keys=chosen)
        seconds = time.perf_counter() - t
    after = interleaved(ref, 5, warmup=1)["reference_median_ms"]
    ref_ms = (before + after) / 2
    per_entry = seconds / len(chosen)
    return {"backend": lc.backend, "resolution": [lc.height, lc.width], "entries_timed": len(chosen),
            "entries_in_table": len(all_keys), "seconds": seconds, "seconds_per_entry": per_entry,
            "seconds_whole_table": per_entry * len(all_keys), "extrapolated": len(chosen) < len(all_keys),
            "reference_median_ms": ref_ms, "reference_gmacs_per_s": REF_MACS / ref_ms / 1e6,
            "whole_table_in_reference_convs": per_entry * len(all_keys) * 1e3 / ref_ms}


def _quotient(row: dict, a: str, b: str) -> str:
    """Runtime `a`'s time over runtime `b`'s in a bench row, each first divided by its reference conv ("-" when
    `a` was not measured, as in reports from before it existed)."""
    if a not in row:
        return "-"
    return f"{row[a]['ratio_to_reference'] / row[b]['ratio_to_reference']:.2f}"


def vs_fast_scnn(res: dict, row: dict, runtime: str) -> str:
    """`row`'s time on `runtime` over Fast-SCNN's at the same resolution, each first divided by the reference conv
    timed beside it (fastest over fastest; median over median for results written before minima were kept): a
    drift of the machine between the networks' timing blocks cancels. "-" without Fast-SCNN."""
    key = "fastest_ratio_to_reference" if "fastest_ratio_to_reference" in row[runtime] else "ratio_to_reference"
    base = [r[runtime][key] for r in res["networks"]
            if r["network"] == "fast_scnn" and r["resolution"] == row["resolution"]]
    return f"{row[runtime][key] / base[0]:.2f}" if base else "-"


def networks_markdown(res: dict) -> str:
    """The `bench_networks` result as a markdown table: latency as ratios to Fast-SCNN on the same runtime
    and resolution (when it was measured; each time first divided by the reference conv's timed beside it), with
    the absolute medians and the reference conv's rate beside."""
    lines = ["| network | H x W | params (M) | GMACs | mIoU % (equal budget) | torch ms | torch channels-last / "
             "contiguous | ORT fp32 ms | ORT fp32 FPS | ORT int8 ms | int8 / fp32 | vs Fast-SCNN (ORT fp32) | "
             "vs Fast-SCNN (ORT int8) | share of conv rate (ORT fp32) | reference conv GMAC/s |", "|" + " --- |" * 15]
    for r in res["networks"]:
        miou, sd = r.get("miou_equal_budget"), r.get("miou_equal_budget_std")
        miou = "-" if miou is None else f"{miou:.1f}" + (f" ± {sd:.1f} ({r['seeds']} seeds)" if sd is not None else "")
        lines.append(f"| {r['network']} | {r['resolution'][0]}x{r['resolution'][1]} | {r['params_M']:.2f} | "
                     f"{r['GMACs']:.2f} | {miou} | {r['torch']['median_ms']:.1f} | "
                     f"{_quotient(r, 'torch_channels_last', 'torch')} | "
                     f"{r['ort_fp32']['median_ms']:.1f} | {1e3 / r['ort_fp32']['median_ms']:.1f} | "
                     f"{r['ort_int8']['median_ms']:.1f} | "
                     f"{r['ort_int8']['median_ms'] / r['ort_fp32']['median_ms']:.2f} | "
                     f"{vs_fast_scnn(res, r, 'ort_fp32')} | {vs_fast_scnn(res, r, 'ort_int8')} | "
                     f"{r['ort_fp32']['achieved_share_of_reference']:.2f} | "
                     f"{r['ort_fp32']['reference_gmacs_per_s']:.0f} |")
    env = res["environment"]
    lines.append(f"\n{env['threads']} thread(s), batch 1, load average {env['load_average_1min']:.2f}, {env['date']}; "
                 f"median of {res['rounds']} runs each, interleaved with the reference convolution. mIoU: the "
                 "network trained under the kit's cpu budget (committed reference runs), whole validation images. "
                 "Share of conv rate: the network's multiply-adds per second over the reference conv's. vs Fast-SCNN: "
                 "each network's fastest run over the reference conv's fastest beside it, divided by Fast-SCNN's "
                 "(the steadier figure on a shared machine; `timing.at_reference_speed`).")
    if "search_step" in res:
        st = res["search_step"]
        lines.append(f"\nSearch step ({res['profile']} profile: L={st['layers']} F={st['fch']}, batch {st['batch']} at "
                     f"{st['crop'][0]}x{st['crop'][1]}, both sets): {st['seconds_per_step']:.2f} s median, "
                     f"{st['images_per_s']:.2f} images/s, {st['ratio_to_reference']:.0f}x the reference conv "
                     f"({st['reference_gmacs_per_s']:.0f} GMAC/s).")
    if "lut_build" in res:
        lb = res["lut_build"]
        how = f"extrapolated from {lb['entries_timed']} entries" if lb["extrapolated"] else "measured"
        lines.append(f"Latency table build ({lb['backend']}, {lb['resolution'][0]}x{lb['resolution'][1]}, "
                     f"{lb['entries_in_table']} entries): {lb['seconds_whole_table']:.0f} s ({how}), "
                     f"{lb['whole_table_in_reference_convs']:.0f}x the reference conv "
                     f"({lb['reference_gmacs_per_s']:.0f} GMAC/s).")
    return "\n".join(lines)
