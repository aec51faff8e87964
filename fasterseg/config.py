"""Run configuration: one dataclass per component, grouped in `RunConfig`, with three profiles.

- ``tiny``: seconds to a minute on a laptop CPU (CI, notebooks); same code path as the others.
- ``cpu``: a longer reference run on a laptop CPU.
- ``paper``: the paper's Cityscapes hyper-parameters, for a GPU.

Constructors never parse command lines; `apply_overrides` takes ``section.field=value`` strings so
the CLI and a notebook can build configs the same way.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

PROFILES = ("tiny", "cpu", "paper")
WIDTH_RATIOS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)


@dataclass
class DataConfig:
    """Where the images come from and how they are cut for training."""

    dataset: str = "synthetic"  # synthetic | cityscapes | camvid
    root: str = "data/synthetic/tiny"  # folder in the Cityscapes (or CamVid) layout
    num_classes: int = 19
    # synthetic street scenes: generated size and counts (ignored for real data sets)
    image_height: int = 128
    image_width: int = 256
    num_train: int = 40
    num_val: int = 12
    seed: int = 0
    # training transforms
    crop_height: int = 128
    crop_width: int = 256
    scale_min: float = 0.75
    scale_max: float = 1.25
    batch_size: int = 4


@dataclass
class SpaceConfig:
    """Search-space geometry (DESIGN.md section 2)."""

    layers: int = 16
    fch: int = 12  # base channel count F: channels at scale s are round(s * F * width)
    width_ratios: tuple[float, ...] = WIDTH_RATIOS
    # (stem width, head width) per architecture set; teacher first, then student
    stem_head_widths: tuple[tuple[float, float], ...] = ((1.0, 1.0), (8 / 12, 8 / 12))
    # derivation: where down-sampling may happen (the original: first down at layer >= 2, last at
    # layer <= L-3, two downs at least 3 layers apart)
    first_down_min: int = 2
    last_down_margin: int = 2
    down_gap_min: int = 3


@dataclass
class LatencyConfig:
    """The latency model: which table, measured how, at which deployment resolution, and the penalty."""

    table: str = "data/latency/tiny_torch_cpu1_128x256.csv"
    backend: str = "torch"  # torch | onnxruntime | tensorrt
    device: str = "cpu"  # for the torch backend: cpu or cuda
    threads: int = 1
    height: int = 128  # deployment resolution: latency is evaluated here, not at the search crop
    width: int = 256
    penalty: str = "decoupled"  # decoupled | coarse
    rates: tuple[float, float, float] = (1 / 500, 497 / 500, 2 / 500)  # r_alpha, r_beta, r_gamma
    ends: tuple[int, int] = (32, 16)  # branch pair whose expected latency is penalised
    validate_networks: int = 30


@dataclass
class SearchConfig:
    """Pretraining and search (DESIGN.md "Search procedure"): two phases, per-set latency weights."""

    pretrain_epochs: int = 20
    search_epochs: int = 30
    steps_per_epoch: int = 0  # 0: one pass over the weight half of the training split
    pretrain_batch_size: int = 3
    batch_size: int = 2
    pretrain_crop: tuple[int, int] = (256, 512)  # after the x2 down-sampling
    crop: tuple[int, int] = (224, 448)
    downsample: int = 2  # images are down-sampled x2 before cropping during the search
    train_portion: float = 0.5  # share of the training split for weight steps; the rest for arch steps
    lr: float = 0.02
    lr_decay: float = 0.978  # per epoch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    lam: tuple[float, ...] = (0.0, 1e-2)  # latency weight per architecture set (teacher 0)
    fps_min: tuple[float, ...] = (0.0, 155.0)  # adaptive lambda band per set, in FPS of the LUT's device
    fps_max: tuple[float, ...] = (0.0, 175.0)
    adapt_lambda: bool = True
    target_ms: float = 8.3  # latency target of the branch-pair objective mIoU * (lat / target)^-0.07
    val_images: int = 0  # 0: the whole validation split
    log_every: int = 10  # steps between architecture-parameter snapshots in the history
    checkpoint_every: int = 50  # steps between checkpoints (and at every epoch end)
    threads: int = 0  # torch threads for the run (0: leave PyTorch's default)
    seed: int = 0


@dataclass
class RunConfig:
    """Everything one run needs; saved as ``config.json`` next to the run's outputs."""

    profile: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: str | Path) -> Path:
        from .paths import write_text

        return write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return _from_dict(cls, d)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _from_dict(cls, d: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            v = _from_dict(t, v)
        else:
            v = _coerce(v, t)
        kwargs[f.name] = v
    return cls(**kwargs)


def _coerce(v, t):
    origin = typing.get_origin(t)
    if origin is tuple and isinstance(v, (list, tuple)):
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(x, args[0]) for x in v)
        return tuple(_coerce(x, a) for x, a in zip(v, args))
    if t is float and isinstance(v, int):
        return float(v)
    return v


def profile(name: str | None = None) -> RunConfig:
    """The config of a profile (``tiny``, ``cpu``, ``paper``); default from ``$FASTERSEG_PROFILE``."""
    name = name or os.environ.get("FASTERSEG_PROFILE", "tiny")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    cfg = RunConfig(profile=name)
    if name == "tiny":
        cfg.data = DataConfig(root="data/synthetic/tiny", image_height=128, image_width=256,
                              num_train=40, num_val=12, crop_height=128, crop_width=256, batch_size=4)
        cfg.space = SpaceConfig(layers=8, fch=4, down_gap_min=2)
        cfg.latency = LatencyConfig(table="data/latency/tiny_torch_cpu1_128x256.csv", height=128, width=256)
        cfg.search = SearchConfig(pretrain_epochs=1, search_epochs=3, steps_per_epoch=8, pretrain_batch_size=4,
                                  batch_size=4, pretrain_crop=(64, 128), crop=(64, 128), lam=(0.0, 0.1), arch_lr=1e-2,
                                  fps_min=(0.0, 280.0), fps_max=(0.0, 330.0), target_ms=3.5, log_every=2,
                                  checkpoint_every=4, threads=1)
    elif name == "cpu":
        cfg.data = DataConfig(root="data/synthetic/cpu", image_height=256, image_width=512,
                              num_train=320, num_val=64, crop_height=256, crop_width=512, batch_size=4)
        cfg.space = SpaceConfig(layers=8, fch=8)
        cfg.latency = LatencyConfig(table="data/latency/cpu_torch_cpu1_256x512.csv", height=256, width=512)
        cfg.search = SearchConfig(pretrain_epochs=3, search_epochs=8, steps_per_epoch=20, pretrain_batch_size=4,
                                  batch_size=4, pretrain_crop=(128, 256), crop=(128, 256), lam=(0.0, 0.05), arch_lr=3e-3,
                                  fps_min=(0.0, 60.0), fps_max=(0.0, 70.0), target_ms=16.0, val_images=32,
                                  log_every=5, checkpoint_every=20)
    else:  # paper: Cityscapes at full size (DESIGN.md); synthetic fallback at half size
        cfg.data = DataConfig(dataset="cityscapes", root="data/cityscapes", image_height=512,
                              image_width=1024, num_train=200, num_val=50, crop_height=512,
                              crop_width=1024, batch_size=12)
        cfg.space = SpaceConfig(layers=16, fch=12)
        # the published 1080Ti TensorRT table: search for that GPU without having one
        cfg.latency = LatencyConfig(table="data/latency/gtx1080ti_tensorrt_1024x2048.csv", backend="tensorrt",
                                    device="cuda", height=1024, width=2048)
    return cfg


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Set fields from ``section.field=value`` strings (value parsed as JSON when it can be).

    >>> apply_overrides(profile("tiny"), ["data.num_train=8"]).data.num_train
    8
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value (e.g. data.num_train=8)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        obj = cfg
        for p in parts[:-1]:
            if not hasattr(obj, p) or not dataclasses.is_dataclass(getattr(obj, p)):
                raise ValueError(f"override {item!r}: no config section {p!r}")
            obj = getattr(obj, p)
        name = parts[-1]
        hints = typing.get_type_hints(type(obj))
        if name not in hints:
            known = ", ".join(f.name for f in fields(obj))
            raise ValueError(f"override {item!r}: {type(obj).__name__} has no field {name!r} (fields: {known})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        setattr(obj, name, _coerce(value, hints[name]))
    return cfg
