"""Search-space geometry: layers, scales, channel counts, and how architecture parameters are indexed.

The supernet has L layers; layer l holds a node per reachable scale: 1/8 from layer 0, 1/16 from
layer 1, 1/32 from layer 2. Scales are indexed s = 0, 1, 2 (1/8, 1/16, 1/32). A node (l, s) emits
a same-scale output and, except at 1/32 and in the last layer, a down-sampled one (scale s+1).

Architecture parameters per set (shapes as the original, so published files map one to one):

- ``alpha_s``: (L - s, 5) logits over operators; row k is node (k + s, s).
- ``beta_s`` (s = 1, 2): (L - s - 1, 2) logits over {0: from down (scale s-1), 1: from same scale};
  row k is node (k + s + 1, s) (the first node of a scale has a single input: no beta).
- ``gamma_s``: (L - 1 - max(s-1, 0), n_widths) logits over widths; row k is the width of the
  tensor T(k + max(s-1, 0), s), the output of layer l at scale s (same-scale output of node
  (l, s) and down output of node (l, s-1) share it, since node (l+1, s) adds them). The last
  layer's outputs have the head width instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import comb

from fasterseg.config import WIDTH_RATIOS, SpaceConfig
from fasterseg.nets.ops import OPS, PRIMITIVES, STEMS

SCALES = (8, 16, 32)
#: scale (8, 16, 32) -> scale index s (0, 1, 2); the one map from scales to indices
SCALE_INDEX = {scale: s for s, scale in enumerate(SCALES)}


@dataclass(frozen=True)
class SearchSpace:
    """Geometry of one supernet: `layers` (L), base channels `fch` (F), width ratios."""

    layers: int = 16
    fch: int = 12
    width_ratios: tuple[float, ...] = WIDTH_RATIOS
    ops: tuple[str, ...] = field(default=PRIMITIVES)  # the operators a cell chooses among, "skip" first
    stem: str = "original"  # the fixed stem's kind (`ops.STEMS`), when the stem is not searched
    stems: tuple[str, ...] = ()  # stem kinds searched among (empty: the fixed `stem`)
    decisions: tuple[str, ...] = ("bilinear8",)  # final up-sampling forms chosen among at derivation

    def __post_init__(self):
        if self.layers < 4:
            raise ValueError(f"the search space needs at least 4 layers (got {self.layers})")
        for k in (self.stem, *self.stems):
            if k not in STEMS:
                raise ValueError(f"stem {k!r}: choose one of {', '.join(STEMS)}")
        if not self.ops or self.ops[0] != "skip" or any(o not in OPS for o in self.ops):
            raise ValueError(f"ops {self.ops}: operators of {', '.join(OPS)}, 'skip' first")

    @classmethod
    def from_config(cls, cfg: SpaceConfig) -> "SearchSpace":
        return cls(cfg.layers, cfg.fch, tuple(cfg.width_ratios), tuple(cfg.ops), cfg.stem, tuple(cfg.stems),
                   tuple(cfg.decisions))

    @property
    def is_paper(self) -> bool:
        """The paper's space: its five operators, the fixed stem, logits up-sampled bilinearly x8."""
        return self.ops == PRIMITIVES and not self.stems and self.decisions == ("bilinear8",)

    # -- channels ---------------------------------------------------------------------------
    def channels(self, scale: int, width: float = 1.0) -> int:
        """round(scale * F * width): channel count at scale 8/16/32 for a width ratio."""
        return int(round(scale * self.fch * width))

    def width_options(self, scale: int) -> list[int]:
        """All channel counts the supernet may run at this scale (one per width ratio)."""
        return sorted({self.channels(scale, r) for r in self.width_ratios})

    def stem_channels(self, stem_width: float) -> tuple[int, int, int]:
        """Stem stages 3 -> 4F -> 8F -> 8F, scaled by the stem width (48, 96, 96 at F=12)."""
        return (2 * self.channels(2, stem_width), 2 * self.channels(4, stem_width), self.channels(8, stem_width))

    # -- nodes ------------------------------------------------------------------------------
    def nodes(self) -> list[tuple[int, int]]:
        """All (layer, scale index) nodes, layer-major: the one enumeration of the grid."""
        return [(l, s) for l in range(self.layers) for s in self.scales_at(l)]

    @staticmethod
    def scales_at(layer: int) -> range:
        """Scale indices reachable at `layer`: 1/8 from layer 0, 1/16 from 1, 1/32 from 2."""
        return range(min(layer, 2) + 1)

    def has_down(self, layer: int, s: int) -> bool:
        return s < 2 and layer < self.layers - 1

    def has_beta(self, layer: int, s: int) -> bool:
        return s >= 1 and layer > s

    # -- parameter indexing ----------------------------------------------------------------------
    def alpha_shape(self, s: int) -> tuple[int, int]:
        return (self.layers - s, len(self.ops))

    def beta_shape(self, s: int) -> tuple[int, int]:
        return (self.layers - s - 1, 2)

    def gamma_offset(self, s: int) -> int:
        return max(s - 1, 0)

    def gamma_shape(self, s: int, n_widths: int) -> tuple[int, int]:
        return (self.layers - 1 - self.gamma_offset(s), n_widths)

    def alpha_row(self, layer: int, s: int) -> int:
        return layer - s

    def beta_row(self, layer: int, s: int) -> int:
        return layer - s - 1

    def gamma_row(self, layer: int, s: int) -> int:
        """Row of gamma_s for T(layer, s), the output of `layer` at scale s (layer < L - 1)."""
        return layer - self.gamma_offset(s)

    # -- size of the space ---------------------------------------------------------------------
    def count_paths(self, last: int) -> int:
        """Number of down-sampling patterns of a branch that ends at scale index `last`."""
        return comb(self.layers - 1, last)

    def size(self) -> dict[str, float]:
        """log10 of the number of discrete choices: operators per node, widths per tensor, paths."""
        n_nodes = len(self.nodes())
        n_tensors = sum(self.gamma_shape(s, 1)[0] for s in range(3))
        return {
            "nodes": n_nodes,
            "width_tensors": n_tensors,
            "log10_operator_choices": n_nodes * math.log10(len(self.ops)),
            "log10_width_choices": n_tensors * math.log10(len(self.width_ratios)),
            "paths_to_1/16": self.count_paths(1),
            "paths_to_1/32": self.count_paths(2),
        }
