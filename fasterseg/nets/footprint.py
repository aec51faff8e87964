"""Memory of a search before anything is allocated, and the whole pre-flight check of a run's config.

`supernet_weight_count` counts the supernet's parameters from its sizes: one cell of each kind (scale, with or
without a down-sampling output), one stem and one head per architecture set are built on PyTorch's meta device
(no memory), and the cells' counts are multiplied by how many nodes of each kind the grid holds. The cost does
not grow with ``space.layers``, so an absurd size is refused at once. `check_run` is what every entry point calls:
`RunConfig.validate` (types, ranges, consistency, arithmetic memory estimates) plus the search's memory.
"""
from __future__ import annotations

import torch

from fasterseg.config import ConfigError
from fasterseg.config_checks import physical_memory_bytes
from fasterseg.nets.ops import Stem
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import ArchSet, SupernetCell, SupernetHead


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def supernet_weight_count(space: SearchSpace, num_classes: int, stem_head_widths) -> int:
    """Parameters of `Supernet(space, num_classes, stem_head_widths)`, counted without building it."""
    L = space.layers
    # nodes per (scale index, has a down output): 1/8 at every layer (down except the last), 1/16 from layer 1
    # (down except the last), 1/32 from layer 2 (never down)
    kinds = {(0, True): L - 1, (0, False): 1, (1, True): L - 2, (1, False): 1, (2, False): L - 2}
    n = 0
    with torch.device("meta"):
        for (s, down), count in kinds.items():
            if count > 0:
                n += count * _numel(SupernetCell(space, s, down))
        for i, (sw, hw) in enumerate(stem_head_widths):
            n += _numel(Stem(*space.stem_channels(sw), kind=space.stem))
            n += _numel(SupernetHead(space, hw, num_classes))
            n += _numel(ArchSet(space, search_widths=i > 0))
    return n


def supernet_bytes(cfg) -> tuple[int, int]:
    """(weight bytes incl. gradients and momentum, activation bytes of one weight step) of the search:
    activations ~ 24 stored tensors per node and operator set, over the nodes' feature maps (F*h*w/s elements
    at scale s), for every pass of the weight step."""
    space = SearchSpace.from_config(cfg.space)
    weights = 3 * 4 * supernet_weight_count(space, cfg.data.num_classes, cfg.space.stem_head_widths)
    s = cfg.search
    h, w = max(s.pretrain_crop[0], s.crop[0]), max(s.pretrain_crop[1], s.crop[1])
    b = max(s.pretrain_batch_size, s.batch_size)
    passes = max(4, cfg.n_sets + 2)
    per_node = 24 * 4 * space.fch * h * w * b
    nodes = {8: space.layers, 16: space.layers - 1, 32: space.layers - 2}
    acts = sum(per_node // scale * n for scale, n in nodes.items()) * passes
    return weights, acts


def search_memory_problems(cfg) -> list[str]:
    """The search's estimated memory against this machine's physical memory."""
    ram = physical_memory_bytes()
    weights, acts = supernet_bytes(cfg)
    if weights + acts > ram:
        return [f"the search would need ~{(weights + acts) / 2**30:.0f} GiB ({weights / 2**30:.1f} GiB of supernet "
                f"weights and optimiser state, ~{acts / 2**30:.0f} GiB of activations per step), more than this "
                f"machine's {ram / 2**30:.0f} GiB: lower space.fch/space.layers, search.crop or search.batch_size"]
    return []


def check_run(cfg, sections: tuple[str, ...] | None = None):
    """Validate `cfg` on `sections` (all when None) and, when it searches, its memory; `ConfigError` naming
    every problem and its fix. Returns `cfg`."""
    cfg = cfg.validate(sections) if sections else cfg.validate()
    secs = sections or ("space", "search")
    if "space" in secs and "search" in secs:
        problems = search_memory_problems(cfg)
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))
    return cfg

