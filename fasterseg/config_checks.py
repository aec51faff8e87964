"""Range and consistency checks of a `RunConfig`, and memory estimates that refuse absurd sizes before anything
is allocated. `RunConfig.validate` calls `range_problems`; each problem names the field and a fix. The search's
memory (which needs the supernet's structure) is checked one floor up, by `fasterseg.nets.footprint.check_run`.

This module is the floor under `config`: it knows the allowed values (data sets, backends, stem kinds) and the
derivation's down-sampling range, and imports nothing of the kit.
"""
from __future__ import annotations

import os
import re

DATASETS = ("cityscapes", "camvid", "synthetic")
#: the stem's kinds (`fasterseg.nets.ops.STEMS` builds them)
STEM_KINDS = ("original", "light", "dwsep")
#: the paper's five operators, in the original's index order (`fasterseg.nets.ops.PRIMITIVES`)
PAPER_OPS = ("skip", "conv", "zoomed_conv", "conv_2x", "zoomed_conv_2x")
#: every operator of the registry (`fasterseg.nets.ops.OPS`): the paper's and the CPU-shaped ones
OP_NAMES = PAPER_OPS + ("dwsep", "ir_e3", "ir_e6")
#: how the 1/8 logits become the full-resolution class map (`fasterseg.nets.network.DECISIONS`)
DECISIONS = ("bilinear8", "bilinear2_nearest4", "nearest8")
#: the latency penalty's forms (`fasterseg.latency.expected.LatencyPenalty`); "scaled" is an ablation
PENALTIES = ("decoupled", "coarse", "scaled")
LATENCY_BACKENDS = ("torch", "onnxruntime", "onnxruntime_int8", "tensorrt")
BRANCH_PAIRS = ((32, 16), (32, 8))


def down_range(layers: int, first_down_min: int, last_down_margin: int) -> range:
    """Layers where a branch may go down: from `first_down_min` to L - 1 - `last_down_margin` (the derivation's
    rule, `fasterseg.nets.derive.DeriveRules`)."""
    return range(first_down_min, layers - 1 - last_down_margin + 1)


def _multiple_of_32(where: str, hw) -> list[str]:
    h, w = hw
    if h % 32 or w % 32 or h < 64 or w < 64:
        return [f"{where}={list(hw)}: height and width must be multiples of 32 (the network's output stride) "
                "and at least 64"]
    return []


def _at_least(obj, name: str, section: str, low, strict: bool = False) -> list[str]:
    v = getattr(obj, name)
    if v < low or (strict and v == low):
        return [f"{section}.{name}={v}: must be {'>' if strict else '>='} {low}"]
    return []


def _one_of(obj, name: str, section: str, options) -> list[str]:
    v = getattr(obj, name)
    return [] if v in options else [f"{section}.{name}={v!r}: choose one of {', '.join(map(str, options))}"]


def _data(d) -> list[str]:
    p = _one_of(d, "dataset", "data", DATASETS) + _at_least(d, "num_classes", "data", 2)
    if not d.root.strip():
        p.append("data.root is empty: set data.root=/path/to/data")
    if d.dataset == "camvid" and d.num_classes != 11:
        p.append(f"data.num_classes={d.num_classes}: CamVid has 11 classes; set data.num_classes=11")
    if d.dataset in ("cityscapes", "synthetic") and d.num_classes != 19:
        p.append(
            f"data.num_classes={d.num_classes}: {d.dataset} uses the 19 Cityscapes train ids; set data.num_classes=19"
        )
    if d.dataset == "synthetic":
        p += _multiple_of_32("data.image_height/width", (d.image_height, d.image_width))
        p += _at_least(d, "num_train", "data", 1) + _at_least(d, "num_val", "data", 1)
    return p


def _space(s) -> list[str]:
    p = _at_least(s, "layers", "space", 4) + _at_least(s, "fch", "space", 1)
    p += _at_least(s, "first_down_min", "space", 1) + _at_least(s, "last_down_margin", "space", 0)
    p += _at_least(s, "down_gap_min", "space", 1)
    p += _one_of(s, "stem", "space", STEM_KINDS)
    if not s.ops or s.ops[0] != "skip" or len(set(s.ops)) != len(s.ops) or any(o not in OP_NAMES for o in s.ops):
        p.append(f"space.ops={list(s.ops)}: distinct operators of {list(OP_NAMES)}, 'skip' first (derivation "
                 "removes skips)")
    if any(k not in STEM_KINDS for k in s.stems) or len(s.stems) == 1:
        p.append(f"space.stems={list(s.stems)}: none (the fixed space.stem) or at least two of {list(STEM_KINDS)} "
                 "to search among")
    if not s.decisions or any(d not in DECISIONS for d in s.decisions):
        p.append(f"space.decisions={list(s.decisions)}: one or more of {list(DECISIONS)}")
    r = s.width_ratios
    if not r or list(r) != sorted(r) or r[0] <= 0 or r[-1] > 1:
        p.append(f"space.width_ratios={list(r)}: must be increasing ratios in (0, 1]")
    if not s.stem_head_widths:
        p.append("space.stem_head_widths is empty: give one (stem, head) width pair per architecture set")
    for sw, hw in s.stem_head_widths:
        for w in (sw, hw):
            if not any(abs(w - x) < 1e-6 for x in r):
                p.append(f"space.stem_head_widths: width {w} is not one of space.width_ratios {list(r)}")
    if not p:
        rng = down_range(s.layers, s.first_down_min, s.last_down_margin)
        if not any(b - a >= s.down_gap_min for a in rng for b in rng):
            p.append(
                f"space: no two down-samplings fit in {s.layers} layers with first_down_min={s.first_down_min}, "
                f"last_down_margin={s.last_down_margin}, down_gap_min={s.down_gap_min}; use more layers"
            )
    return p


def _latency(c) -> list[str]:
    p = _one_of(c, "backend", "latency", LATENCY_BACKENDS) + _one_of(c, "penalty", "latency", PENALTIES)
    p += _one_of(c, "calibration", "latency", ("check", "rescale", "warn", "off"))
    p += _at_least(c, "threads", "latency", 1) + _at_least(c, "validate_networks", "latency", 1)
    p += _at_least(c, "factor_networks", "latency", 0)
    p += _multiple_of_32("latency.height/width", (c.height, c.width))
    if not re.fullmatch(r"cpu|cuda(:\d+)?", c.device):
        p.append(f"latency.device={c.device!r}: choose cpu or cuda")
    if min(c.rates) < 0 or sum(c.rates) <= 0:
        p.append(f"latency.rates={list(c.rates)}: must be >= 0 and not all 0 (paper: [0.002, 0.994, 0.004])")
    if tuple(c.ends) not in BRANCH_PAIRS:
        p.append(f"latency.ends={list(c.ends)}: choose [32, 16] or [32, 8]")
    if not c.table.strip():
        p.append("latency.table is empty: name a table CSV (see `fasterseg latency build`)")
    return p


def _schedule(c, section: str) -> list[str]:
    """Checks shared by the search and training sections."""
    p = _at_least(c, "lr", section, 0, strict=True) + _at_least(c, "momentum", section, 0)
    p += _at_least(c, "weight_decay", section, 0) + _at_least(c, "steps_per_epoch", section, 0)
    p += _at_least(c, "checkpoint_every", section, 1)
    if not 0 < c.lr_decay <= 1:
        p.append(f"{section}.lr_decay={c.lr_decay}: must be in (0, 1] (a factor per epoch)")
    if c.momentum >= 1:
        p.append(f"{section}.momentum={c.momentum}: must be < 1")
    if not 0 < c.scale_min <= c.scale_max:
        p.append(f"{section}.scale_min/scale_max={c.scale_min}/{c.scale_max}: need 0 < scale_min <= scale_max")
    return p


def _search(c, n_sets: int) -> list[str]:
    p = _schedule(c, "search") + _at_least(c, "pretrain_epochs", "search", 0)
    p += _at_least(c, "search_epochs", "search", 1)
    p += _at_least(c, "pretrain_batch_size", "search", 1) + _at_least(c, "batch_size", "search", 1)
    p += _multiple_of_32("search.pretrain_crop", c.pretrain_crop) + _multiple_of_32("search.crop", c.crop)
    p += _at_least(c, "downsample", "search", 1) + _at_least(c, "grad_clip", "search", 0, strict=True)
    p += _at_least(c, "arch_lr", "search", 0, strict=True) + _at_least(c, "target_ms", "search", 0, strict=True)
    p += _at_least(c, "val_images", "search", 0) + _at_least(c, "log_every", "search", 1)
    if not 0 < c.train_portion < 1:
        p.append(f"search.train_portion={c.train_portion}: must be in (0, 1)")
    if not all(0 <= b < 1 for b in c.arch_betas):
        p.append(f"search.arch_betas={list(c.arch_betas)}: must be in [0, 1)")
    for name in ("lam", "fps_min", "fps_max"):
        v = getattr(c, name)
        if len(v) != n_sets:
            p.append(
                f"search.{name} has {len(v)} values but there are {n_sets} architecture sets "
                f"(space.stem_head_widths); give one per set, e.g. search.{name}=[0, 0.1]"
            )
        elif min(v) < 0:
            p.append(f"search.{name}={list(v)}: must be >= 0")
    if len(c.fps_min) == len(c.fps_max) and any(a > b for a, b in zip(c.fps_min, c.fps_max)):
        p.append(f"search.fps_min {list(c.fps_min)} exceeds search.fps_max {list(c.fps_max)}")
    return p


def _train(c) -> list[str]:
    p = _schedule(c, "train") + _at_least(c, "epochs", "train", 1) + _at_least(c, "steps_per_epoch", "train", 1)
    p += _at_least(c, "batch_size", "train", 1) + _multiple_of_32("train.crop", c.crop)
    p += _at_least(c, "aux_weight", "train", 0) + _at_least(c, "accumulate", "train", 1)
    p += _at_least(c, "val_every", "train", 1) + _at_least(c, "val_images", "train", 0)
    p += _at_least(c, "grad_clip", "train", 0)
    if not 0 < c.ohem_thresh <= 1:
        p.append(f"train.ohem_thresh={c.ohem_thresh}: must be in (0, 1]")
    if not 0 <= c.ohem_keep <= 1:
        p.append(f"train.ohem_keep={c.ohem_keep}: must be in [0, 1]")
    if c.accumulate >= 1 and c.batch_size % c.accumulate:
        p.append(f"train.accumulate={c.accumulate} must divide train.batch_size={c.batch_size}")
    return p


def _rest(cfg, sections) -> list[str]:
    p = []
    if "distill" in sections:
        p += _at_least(cfg.distill, "weight", "distill", 0)
        p += _at_least(cfg.distill, "temperature", "distill", 0, strict=True)
        p += _one_of(cfg.distill, "reduction", "distill", ("element", "pixel"))
    if "eval" in sections:
        e = cfg.eval
        p += _at_least(e, "batch_size", "eval", 1) + _at_least(e, "images", "eval", 0)
        p += _at_least(e, "overlays", "eval", 0) + _multiple_of_32(
            "eval.latency_height/width", (e.latency_height, e.latency_width)
        )
        p += [
            f"eval.latency_backends: {b!r} is not one of {', '.join(LATENCY_BACKENDS)}"
            for b in e.latency_backends
            if b not in LATENCY_BACKENDS
        ]
    if "export" in sections:
        x = cfg.export
        p += _at_least(x, "opset", "export", 13) + _one_of(x, "interpolation", "export", ("bilinear", "nearest"))
        p += _multiple_of_32("export.height/width", (x.height, x.width))
        p += _at_least(x, "tolerance", "export", 0, strict=True)
    if "runtime" in sections:
        r = cfg.runtime
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", r.device):
            p.append(f"runtime.device={r.device!r}: choose cpu, cuda, cuda:N or auto")
        p += _one_of(r, "amp", "runtime", ("none", "bf16", "fp16"))
        p += _at_least(r, "workers", "runtime", 0) + _at_least(r, "threads", "runtime", 0)
    return p


def range_problems(cfg, sections) -> list[str]:
    """Every range or consistency problem in `sections` of `cfg` (an empty list when it can run)."""
    checks = {
        "data": lambda: _data(cfg.data),
        "space": lambda: _space(cfg.space),
        "latency": lambda: _latency(cfg.latency),
        "search": lambda: _search(cfg.search, cfg.n_sets),
        "train": lambda: _train(cfg.train),
    }
    p = [x for s in sections if s in checks for x in checks[s]()] + _rest(cfg, sections)
    if not p:
        p += memory_problems(cfg, sections)
    return p


# -- memory -----------------------------------------------------------------------------------------------
def physical_memory_bytes() -> int:
    """This machine's physical memory (bytes)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1 << 40


def memory_problems(cfg, sections) -> list[str]:
    """Refuse configurations whose estimated memory (synthetic drawing, training activations) exceeds this
    machine's physical memory; arithmetic only."""
    ram = physical_memory_bytes()
    p = []
    if "data" in sections and cfg.data.dataset == "synthetic":
        need = 100 * cfg.data.image_height * cfg.data.image_width  # drawing buffers per image
        if need > ram:
            p.append(
                f"data.image_height/width={cfg.data.image_height}x{cfg.data.image_width}: drawing one synthetic "
                f"image needs ~{need / 2**30:.0f} GiB, more than this machine's {ram / 2**30:.0f} GiB"
            )
    if "train" in sections:
        t = cfg.train
        # a derived network stores ~ 60 maps of 8*F channels at 1/8 plus the stem's maps at 1/2..1/8, per image
        fch = cfg.space.fch if "space" in sections else 12
        per_image = 4 * t.crop[0] * t.crop[1] * (60 * 8 * fch / 64 + 3 * 4 * fch / 4 + 6 * 8 * fch / 16)
        need = per_image * t.batch_size / t.accumulate
        if need > ram:
            p.append(
                f"training would need ~{need / 2**30:.0f} GiB of activations per step (train.crop={list(t.crop)}, "
                f"batch {t.batch_size}), more than this machine's {ram / 2**30:.0f} GiB: lower train.crop or "
                "train.batch_size (or raise train.accumulate)"
            )
    return p


def world_problems(cfg, command: str, world: int) -> list[str]:
    """What stops `command` (``search``, ``train`` or ``pipeline``) of `cfg` from running on `world` processes
    (torchrun: nodes x processes per node): each process needs a whole share of the batch, and a search at least 2
    images per process (batch norm)."""
    p = []
    if command in ("search", "pipeline"):
        for name in ("batch_size", "pretrain_batch_size"):
            b = getattr(cfg.search, name)
            if b % world or b // world < 2:
                p.append(f"search.{name}={b} must split into at least 2 images on each of the {world} processes "
                         f"(batch norm needs more than one image): use a multiple of {2 * world}")
    if command in ("train", "pipeline"):
        t = cfg.train
        if t.batch_size % (world * t.accumulate):
            p.append(f"train.batch_size={t.batch_size} must be divisible by the number of processes ({world}) x "
                     f"train.accumulate ({t.accumulate})")
    return p
