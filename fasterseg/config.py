"""Run configuration: one dataclass per component, grouped in `RunConfig`; profiles as data.

Every default is the paper's value (docs/method.md). A profile is a set of per-section overrides
(`PROFILES`): ``paper`` overrides nothing, ``cpu`` is a longer reference run on a laptop CPU, ``tiny``
runs in seconds to a minute (CI and notebooks) through the same code path.

Constructors never parse command lines: `apply_overrides` takes ``section.field=value`` strings, so the
CLI and a notebook build configs the same way. `RunConfig.validate()` checks the whole config (types,
ranges, consistency between sections, memory) before any work starts and raises `ConfigError` naming
every bad field and how to fix it.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from fasterseg.config_checks import PAPER_OPS, range_problems
from fasterseg.paths import write_text

WIDTH_RATIOS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)


class ConfigError(ValueError):
    """A config that cannot run; the message names the fields and the fix."""


@dataclass
class DataConfig:
    """Where the images come from. The synthetic fields only matter for ``dataset=synthetic``."""

    dataset: str = "cityscapes"  # cityscapes | camvid | synthetic
    root: str = "data/cityscapes"  # folder in the Cityscapes (or CamVid) layout
    num_classes: int = 19
    image_height: int = 1024  # synthetic street scenes: generated size, counts and seed
    image_width: int = 2048
    num_train: int = 2975
    num_val: int = 500
    seed: int = 0


@dataclass
class SpaceConfig:
    """Search-space geometry (docs/method.md, "Search space")."""

    layers: int = 16
    fch: int = 12  # base channel count F: channels at scale s are round(s * F * width)
    width_ratios: tuple[float, ...] = WIDTH_RATIOS
    # (stem width, head width) per architecture set; teacher first, then student
    stem_head_widths: tuple[tuple[float, float], ...] = ((1.0, 1.0), (8 / 12, 8 / 12))
    # derivation: first down at layer >= first_down_min, last at layer <= L - 1 - last_down_margin,
    # two downs at least down_gap_min layers apart
    first_down_min: int = 2
    last_down_margin: int = 2
    down_gap_min: int = 3
    # the fixed stem to 1/8: "original" (3x3 conv, then two conv_2x stages; the paper's), "light" (three single
    # 3x3 convs, about a third of the multiply-adds) or "dwsep" (3x3 conv, then two depthwise-separable stages)
    stem: str = "original"
    # the operators a cell chooses among ("skip" first): the paper's five, or others of the registry (dwsep, ir_e3,
    # ir_e6: depthwise-separable and inverted-residual blocks, which a CPU runs well)
    ops: tuple[str, ...] = PAPER_OPS
    # stem kinds to search among (each set's own choice; priced with the path term); empty: the fixed `stem`
    stems: tuple[str, ...] = ()
    # how the 1/8 logits reach full resolution, chosen at derivation by mIoU x latency: bilinear8 (the paper's),
    # bilinear2_nearest4 (bilinear x2 then nearest x4), nearest8 (nearest x8: the class map's nearest up-sampling)
    decisions: tuple[str, ...] = ("bilinear8",)


@dataclass
class LatencyConfig:
    """The latency model: which table, measured how, at which deployment resolution, and the penalty."""

    table: str = "data/latency/gtx1080ti_tensorrt_1024x2048.csv"
    backend: str = "tensorrt"  # torch | onnxruntime | onnxruntime_int8 (each block int8 QDQ) | tensorrt
    device: str = "cuda"  # for the torch backend: cpu or cuda
    threads: int = 1
    height: int = 1024  # deployment resolution: latency is evaluated here, not at the search crop
    width: int = 2048
    penalty: str = "decoupled"  # decoupled | coarse | scaled (ablation: coarse with each kind's gradient x its rate)
    rates: tuple[float, float, float] = (1 / 500, 497 / 500, 2 / 500)  # r_alpha, r_beta, r_gamma
    ends: tuple[int, int] = (32, 16)  # branch pair whose expected latency is penalised
    validate_networks: int = 30
    calibration: str = "check"  # a table that no longer fits this machine: check (refuse) | rescale | warn | off
    # CPU tables: time the reference conv after every sample and normalise each entry by it (a table built while
    # the machine's speed drifts stays consistent); off: bare times, as tables built before the option
    interleave: bool = True
    # after an interleaved CPU build: random networks timed end to end to fit the table's network factor (0: none)
    factor_networks: int = 10


@dataclass
class SearchConfig:
    """Pretraining and search (docs/method.md, "Search procedure"): two phases, per-set latency weights."""

    pretrain_epochs: int = 20
    search_epochs: int = 30
    steps_per_epoch: int = 0  # 0: one pass over the weight half of the training split
    pretrain_batch_size: int = 3
    batch_size: int = 2
    pretrain_crop: tuple[int, int] = (256, 512)  # after the x2 down-sampling
    crop: tuple[int, int] = (224, 448)
    downsample: int = 2  # images are down-sampled x2 before cropping during the search
    scale_min: float = 0.75
    scale_max: float = 1.25
    train_portion: float = 0.5  # share of the training split for weight steps; the rest for arch steps
    lr: float = 0.02
    lr_decay: float = 0.978  # per epoch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    lam: tuple[float, ...] = (0.0, 1e-2)  # latency weight per architecture set (teacher 0)
    fps_min: tuple[float, ...] = (0.0, 155.0)  # adaptive lambda band per set, in FPS of the table's device
    fps_max: tuple[float, ...] = (0.0, 175.0)
    adapt_lambda: bool = True
    target_ms: float = 8.3  # latency target of the branch-pair objective mIoU * (lat / target)^-0.07
    val_images: int = 0  # 0: the whole validation split
    log_every: int = 10  # steps between architecture-parameter snapshots in the history
    checkpoint_every: int = 50  # steps between checkpoints (and at every epoch end)
    seed: int = 0


@dataclass
class TrainConfig:
    """Training a derived network from scratch (docs/method.md, "Training from scratch")."""

    epochs: int = 600
    steps_per_epoch: int = 1000
    batch_size: int = 12
    crop: tuple[int, int] = (512, 1024)
    scale_min: float = 0.75
    scale_max: float = 1.25
    flip: bool = True
    lr: float = 0.01
    lr_decay: float = 0.992  # per epoch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    aux_weight: float = 0.2  # OHEM on the 1/16 and 1/32 auxiliary heads
    ohem_thresh: float = 0.7
    ohem_keep: float = 1 / 16  # at least batch*H*W*ohem_keep pixels
    accumulate: int = 1  # micro-batches per step (gradient accumulation; batch_size must divide)
    val_every: int = 10  # epochs between validations (and after the first and the last epoch)
    val_images: int = 0  # 0: the whole validation split
    checkpoint_every: int = 1000  # steps between checkpoints (and at every epoch end)
    grad_clip: float = 0.0  # 0: no clipping (the original clips nothing)
    seed: int = 0


@dataclass
class DistillConfig:
    """Teacher-to-student distillation: weight * T^2 * KL(softmax(z_T/T) || softmax(z_S/T)) per pixel."""

    weight: float = 1.0
    temperature: float = 1.0
    reduction: str = "element"  # element: KLDivLoss's default mean over N*C*H*W (the original); pixel: per-pixel KL


@dataclass
class EvalConfig:
    """Whole-image evaluation at full resolution (padded to multiples of 32)."""

    flip: bool = True  # average with the horizontally flipped image (the original does)
    batch_size: int = 1
    images: int = 0  # 0: the whole validation split
    overlays: int = 4  # image | ground truth | prediction panels drawn
    latency_height: int = 1024  # measured latency of the trained network at this resolution
    latency_width: int = 2048
    latency_backends: tuple[str, ...] = ("torch", "onnxruntime")


@dataclass
class ExportConfig:
    """ONNX export (BN folded) and the check against PyTorch."""

    opset: int = 17
    interpolation: str = "bilinear"  # bilinear | nearest (the original's TensorRT figure used nearest)
    height: int = 1024
    width: int = 2048
    tolerance: float = 1e-5  # max |logit difference| ONNX Runtime vs PyTorch, relative to the largest |logit|


@dataclass
class RuntimeConfig:
    """Where and how a run computes; may change when a run is resumed."""

    device: str = "auto"  # cpu | cuda | cuda:N | auto (cuda when available)
    amp: str = "none"  # none | bf16 | fp16 (mixed precision on CUDA; bf16 also on CPU)
    cudnn_benchmark: bool = True
    workers: int = 4  # data-loading worker processes
    pin_memory: bool = True  # used on CUDA only
    threads: int = 0  # torch CPU threads (0: PyTorch's default)
    tensorboard: bool = True  # TensorBoard event files beside the CSV histories (<run>/tensorboard/)
    sync_bn: bool = True  # batch-norm statistics over the global batch when several processes run (torchrun)


SECTIONS = ("data", "space", "latency", "search", "train", "distill", "eval", "export", "runtime")


@dataclass
class RunConfig:
    """Everything a run needs; a run saves the sections it uses as ``config.json``."""

    profile: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self, sections: tuple[str, ...] = SECTIONS) -> dict:
        d = asdict(self)
        return {"profile": d["profile"], **{s: d[s] for s in sections}}

    def to_json(self, sections: tuple[str, ...] = SECTIONS) -> str:
        return json.dumps(self.to_dict(sections), indent=2)

    def save(self, path: str | Path, sections: tuple[str, ...] = SECTIONS) -> Path:
        return write_text(path, self.to_json(sections))

    def to_yaml(self, sections: tuple[str, ...] = SECTIONS) -> str:
        """The config as a YAML file `load_config` reads: every section and field, each section headed by what
        it is for (lists on one line)."""
        d = json.loads(self.to_json(sections))
        parts = [f"# FasterSeg kit config (profile {self.profile}); the same sections and keys as the\n"
                 "# section.field=value overrides, which still apply on top: fasterseg <command> --config FILE\n",
                 yaml.safe_dump({"profile": d["profile"]}, sort_keys=False)]
        for name in sections:
            doc = (type(getattr(self, name)).__doc__ or "").strip().splitlines()[0]
            parts.append(f"\n# {doc}\n" + yaml.dump({name: d[name]}, Dumper=_FlowListDumper, sort_keys=False,
                                                      width=120))
        return "".join(parts)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """Build from a (possibly partial) dict; missing sections and fields take the defaults."""
        cfg = cls()
        _merge(cfg, d, "")
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """A stored ``config.json``; `ConfigError` naming the file when it is damaged."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is damaged or unreadable ({e}); restore it, or start over with --restart") \
                from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path} is not a config (a JSON object of sections); restore it, or start over with "
                              "--restart")
        return cls.from_dict(d)

    @property
    def n_sets(self) -> int:
        """Number of architecture sets (teacher, student, ...)."""
        return len(self.space.stem_head_widths)

    def validate(self, sections: tuple[str, ...] = SECTIONS) -> "RunConfig":
        """Raise `ConfigError` listing every problem of the given sections; returns self."""
        problems = []
        for name in sections:
            problems += _type_problems(getattr(self, name), name)
        if not problems:  # ranges only make sense on well-typed values

            problems += range_problems(self, sections)
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))
        return self

    def differences(self, other: "RunConfig", sections: tuple[str, ...]) -> list[str]:
        """``section.field: mine -> other`` for every field that differs in `sections`."""
        a, b = self.to_dict(sections), other.to_dict(sections)
        out = []
        for s in sections:
            for k in a[s]:
                if comparable(a[s][k]) != comparable(b[s][k]):
                    out.append(f"{s}.{k}: {a[s][k]!r} -> {b[s][k]!r}")
        return out


# -- profiles as data ------------------------------------------------------------------------------------
PROFILES: dict[str, dict] = {
    "paper": {},
    "cpu": {
        "data": dict(dataset="synthetic", root="data/synthetic/cpu", image_height=256, image_width=512,
                     num_train=320, num_val=64),
        "space": dict(layers=8, fch=8),
        "latency": dict(table="data/latency/cpu_torch_cpu1_256x512.csv", backend="torch", device="cpu",
                        height=256, width=512),
        "search": dict(pretrain_epochs=3, search_epochs=8, steps_per_epoch=20, pretrain_batch_size=4, batch_size=4,
                       pretrain_crop=(128, 256), crop=(128, 256), lam=(0.0, 0.05), arch_lr=3e-3,
                       fps_min=(0.0, 60.0), fps_max=(0.0, 70.0), target_ms=16.0, val_images=32, log_every=5,
                       checkpoint_every=20),
        "train": dict(epochs=16, steps_per_epoch=25, batch_size=8, crop=(128, 256), lr=0.02, lr_decay=0.95,
                      val_every=4, val_images=64, checkpoint_every=50),
        "eval": dict(flip=False, latency_height=512, latency_width=1024),
        "export": dict(height=512, width=1024),
        "runtime": dict(device="cpu", workers=0, threads=2),
    },
    "tiny": {
        "data": dict(dataset="synthetic", root="data/synthetic/tiny", image_height=128, image_width=256,
                     num_train=40, num_val=12),
        "space": dict(layers=8, fch=4, down_gap_min=2),
        "latency": dict(table="data/latency/tiny_torch_cpu1_128x256.csv", backend="torch", device="cpu",
                        height=128, width=256, calibration="warn"),
        "search": dict(pretrain_epochs=1, search_epochs=3, steps_per_epoch=8, pretrain_batch_size=4, batch_size=4,
                       pretrain_crop=(64, 128), crop=(64, 128), lam=(0.0, 0.1), arch_lr=1e-2,
                       fps_min=(0.0, 280.0), fps_max=(0.0, 330.0), target_ms=3.5, log_every=2, checkpoint_every=4),
        "train": dict(epochs=6, steps_per_epoch=10, batch_size=4, crop=(128, 256), lr=0.05, lr_decay=0.9,
                      val_every=2, checkpoint_every=20),
        "eval": dict(flip=False, overlays=3, latency_height=128, latency_width=256),
        "export": dict(height=128, width=256),
        "runtime": dict(device="cpu", workers=0, threads=1),
    },
}
PROFILE_NAMES = tuple(PROFILES)


def profile(name: str | None = None) -> RunConfig:
    """The config of a profile (``tiny``, ``cpu``, ``paper``); default from ``$FASTERSEG_PROFILE``, else tiny."""
    name = name or os.environ.get("FASTERSEG_PROFILE", "tiny")
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return RunConfig.from_dict({"profile": name, **PROFILES[name]})


def load_config(path: str | Path | None = None, profile_name: str | None = None,
                overrides: list[str] = ()) -> RunConfig:
    """A config from a YAML (or JSON) file with the same sections and keys as the overrides, on top of a profile:
    `profile_name` if given, else the file's ``profile`` key, else ``$FASTERSEG_PROFILE`` or tiny; `overrides`
    (``section.field=value``) apply last. Unknown sections or keys are refused with the nearest name."""
    d: dict = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file (write one with `fasterseg config --write {path}`)") \
                from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--config {path}: cannot read it ({e})") from None
        try:
            d = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"--config {path}: not valid YAML{where} ({getattr(e, 'problem', e)})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"--config {path}: expected sections (data:, search:, ...), got {type(d).__name__}")
        unknown = [k for k in d if k != "profile" and k not in SECTIONS]
        if unknown:
            raise ConfigError(f"--config {path}: unknown section {unknown[0]!r}{_nearest(unknown[0], SECTIONS)} "
                              f"(sections: {', '.join(SECTIONS)})")
    cfg = profile(profile_name or d.get("profile"))
    body = {k: v for k, v in d.items() if k != "profile"}
    if body:
        _merge(cfg, body, "", origin=None, source=f"--config {path}: ")
    return apply_overrides(cfg, list(overrides))


def _nearest(name: str, options) -> str:
    """``; did you mean 'x'?`` for the closest of `options`, or nothing."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Set fields from ``section.field=value`` strings (the value is parsed as JSON when it can be; a
    bare word stays a string). Types are checked here; ranges by `RunConfig.validate`.

    >>> apply_overrides(profile("tiny"), ["data.num_train=8"]).data.num_train
    8
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value (e.g. data.num_train=8)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"override {item!r}: the key must be section.field, e.g. search.lr=0.01 "
                              f"(sections: {', '.join(SECTIONS)})")
        section, name = parts
        if section not in SECTIONS:
            raise ConfigError(f"override {item!r}: no config section {section!r}{_nearest(section, SECTIONS)} "
                              f"(sections: {', '.join(SECTIONS)})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        _merge(cfg, {section: {name: value}}, "", origin=item)
    return cfg


class _FlowListDumper(yaml.SafeDumper):
    """Mappings as blocks, lists on one line (``crop: [512, 1024]``)."""


_FlowListDumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=True))


# -- typing --------------------------------------------------------------------------------------------
def _merge(obj, d: dict, prefix: str, origin: str | None = None, source: str = "") -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}{prefix.rstrip('.') or 'config'} must be a mapping of fields, got {d!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    for k, v in d.items():
        where = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"{source}{origin or where}: {type(obj).__name__} has no field {k!r}"
                              f"{_nearest(str(k), names)} (fields: {', '.join(names)})")
        t = hints[k]
        if dataclasses.is_dataclass(t):
            _merge(getattr(obj, k), v, f"{where}.", origin, source)
        else:
            try:
                setattr(obj, k, _coerce(v, t, origin or where))
            except ConfigError as e:
                raise ConfigError(f"{source}{e}") from None


def _type_name(t) -> str:
    origin = typing.get_origin(t)
    if origin is tuple:
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}s"
        return f"a list of {len(args)} {_type_name(args[0])}s"
    return {int: "integer", float: "number", str: "string", bool: "boolean (true/false)"}.get(t, str(t))


def _coerce(v, t, where: str):
    """`v` as type `t`, or `ConfigError` naming `where`, the expected type and an example."""
    origin = typing.get_origin(t)
    bad = ConfigError(
        f"{where}: expected {_type_name(t)}, got {v!r}"
        + (" (write lists in JSON, e.g. [0, 0.1])" if origin is tuple else "")
    )
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise bad
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(x, args[0], where) for x in v)
        if len(v) != len(args):
            raise bad
        return tuple(_coerce(x, a, where) for x, a in zip(v, args))
    if t is bool:
        if isinstance(v, bool):
            return v
        raise bad
    if t is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise bad
    if t is float:
        if isinstance(v, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", v.strip()):
            v = float(v)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ConfigError(f"{where}: expected a finite number, got {v!r}")
            return float(v)
        raise bad
    if t is str:
        if isinstance(v, str):
            return v
        raise bad
    return v


def _type_problems(section, name: str) -> list[str]:
    """Fields whose values do not have their declared type (e.g. set in code to None)."""
    hints = typing.get_type_hints(type(section))
    out = []
    for f in fields(section):
        try:
            _coerce(getattr(section, f.name), hints[f.name], f"{name}.{f.name}")
        except ConfigError as e:
            out.append(str(e))
    return out


def comparable(v, digits: int = 9):
    """`v` with tuples as lists and floats rounded to `digits`: what two configs or sidecars are compared on."""
    if isinstance(v, (list, tuple)):
        return [comparable(x, digits) for x in v]
    if isinstance(v, float):
        return round(v, digits)
    return v
