"""Architectures as plain data: the versioned JSON format, validation, and derivation from a supernet.

An `Architecture` is what a search produces and what `DerivedNet` builds: per branch, per cell, the
operator, the cell's input scale (8/16/32) and its output width ratio (the last cell's width is the
head width); plus F, the stem/head widths and the number of classes. Example (abridged)::

    {"format": "fasterseg-arch", "version": 1, "name": "fasterseg_student", "fch": 12,
     "num_classes": 19, "stem_width": 0.6667, "head_width": 0.6667,
     "branches": [{"ends_at": 32, "ops": ["conv_2x", ...], "path": [8, 8, ..., 32],
                   "widths": [0.3333, ..., 0.6667]}, {"ends_at": 16, ...}]}

Derivation (docs/method.md): per branch, beta chooses the down-sampling positions, gamma the widths, alpha
the operators; skips that do not go down are removed within limits. `derive()` is the corrected
version of the original's procedure; `fasterseg.importers.original` replays the original's quirks.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import WIDTH_RATIOS
from .ops import PRIMITIVES
from .space import SCALE_INDEX, SCALES, SearchSpace

FORMAT, VERSION = "fasterseg-arch", 1


class ArchitectureError(ValueError):
    """A malformed or inconsistent architecture document; the message says what is wrong."""


@dataclass
class Branch:
    """One path of cells from the stem to its last scale (`ends_at`)."""

    ends_at: int
    ops: list[str]
    path: list[int]  # input scale of each cell: 8, 16 or 32
    widths: list[float]  # output width ratio of each cell (the last one is the head width)

    def out_scales(self) -> list[int]:
        """Output scale of each cell (the next cell's input scale; the last cell stays)."""
        return self.path[1:] + [self.path[-1]]

    def downs(self) -> list[bool]:
        return [o > i for i, o in zip(self.path, self.out_scales())]


@dataclass
class Architecture:
    """A derived FasterSeg network, as plain data (see the module docstring for the JSON form)."""

    name: str
    fch: int
    num_classes: int
    stem_width: float
    head_width: float
    branches: list[Branch]
    layers: int | None = None  # L of the supernet it came from
    width_ratios: tuple[float, ...] = WIDTH_RATIOS
    source: dict = field(default_factory=dict)
    decisions: list[dict] = field(default_factory=list)  # margins per decision (derivation report)
    stem: str = "original"  # the fixed stem's kind (`ops.STEMS`); written to JSON only when not the original


    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION}
        d.update(asdict(self))
        d["width_ratios"] = list(self.width_ratios)
        if self.stem == "original":
            del d["stem"]
        return d

    def to_json(self) -> str:
        """Indented JSON with lists of numbers/strings kept on one line."""
        text = json.dumps(self.to_dict(), indent=1)
        return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)

    def save(self, path: str | Path) -> Path:
        from .paths import write_text

        return write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        """Build and validate; raises `ArchitectureError` naming the problem."""
        arch = cls(**_document_fields(d))
        arch.validate()
        return arch

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ArchitectureError(f"not valid JSON: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        """Read and validate an architecture file; `ArchitectureError` names the file and the problem."""
        p = Path(path)
        if p.is_dir():
            raise ArchitectureError(f"{path} is a folder, not an architecture JSON file")
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ArchitectureError(f"no architecture file {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ArchitectureError(f"cannot read {path}: {e}") from None
        try:
            return cls.from_json(text)
        except ArchitectureError as e:
            raise ArchitectureError(f"{path}: {e}") from None

    # -- validation -----------------------------------------------------------------------------
    def _is_width(self, w: float) -> bool:
        return any(abs(w - r) < 1e-6 for r in self.width_ratios)

    def validate(self) -> None:
        """Raise `ArchitectureError` for any inconsistency."""
        if self.fch <= 0 or self.num_classes <= 0:
            raise ArchitectureError(f"fch and num_classes must be positive (got {self.fch}, {self.num_classes})")
        for what, w in (("stem_width", self.stem_width), ("head_width", self.head_width)):
            if not self._is_width(w):
                raise ArchitectureError(f"{what} {w} is not one of the width ratios {list(self.width_ratios)}")
        if not 1 <= len(self.branches) <= 3:
            raise ArchitectureError(f"an architecture has 1 to 3 branches, not {len(self.branches)}")
        ends = [b.ends_at for b in self.branches]
        if len(set(ends)) != len(ends):
            raise ArchitectureError(f"two branches end at the same scale: {ends}")
        for k, b in enumerate(self.branches):
            where = f"branch {k} (ends at 1/{b.ends_at})"
            if b.ends_at not in SCALES:
                raise ArchitectureError(f"{where}: ends_at must be 8, 16 or 32")
            n = len(b.ops)
            if n == 0:
                raise ArchitectureError(f"{where}: has no cells")
            if len(b.path) != n or len(b.widths) != n:
                raise ArchitectureError(
                    f"{where}: wrong lengths: {n} ops, {len(b.path)} path entries, {len(b.widths)} widths "
                    "(one of each per cell)"
                )
            for i, op in enumerate(b.ops):
                if op not in PRIMITIVES:
                    raise ArchitectureError(
                        f"{where}, cell {i}: unknown operator {op!r}; known: {', '.join(PRIMITIVES)}"
                    )
            for i, s in enumerate(b.path):
                if s not in SCALES:
                    raise ArchitectureError(f"{where}, cell {i}: scale {s} is not 8, 16 or 32")
            if b.path[0] != 8:
                raise ArchitectureError(f"{where}: the first cell must take the stem's 1/8 output, not 1/{b.path[0]}")
            for i in range(n - 1):
                a, c = b.path[i], b.path[i + 1]
                if c < a:
                    raise ArchitectureError(f"{where}: the path goes up in scale at cell {i + 1} (1/{a} -> 1/{c})")
                if c > 2 * a:
                    raise ArchitectureError(f"{where}: the path skips a scale at cell {i + 1} (1/{a} -> 1/{c})")
            if b.path[-1] != b.ends_at:
                raise ArchitectureError(f"{where}: the last cell works at 1/{b.path[-1]}, not at ends_at 1/{b.ends_at}")
            for i, w in enumerate(b.widths):
                if not self._is_width(w):
                    raise ArchitectureError(f"{where}, cell {i}: width {w} is off the list {list(self.width_ratios)}")
            if abs(b.widths[-1] - self.head_width) > 1e-6:
                raise ArchitectureError(
                    f"{where}: the last cell's width {b.widths[-1]} must be the head width {self.head_width}"
                )

    # -- conveniences ----------------------------------------------------------------------------
    def channels(self, scale: int, width: float) -> int:
        return int(round(scale * self.fch * width))

    def table(self):
        """A pandas table: branch, cell, scale, operator, width, channels in/out, down."""
        import pandas as pd

        rows = []
        for b in self.branches:
            c_in = self.channels(8, self.stem_width)
            for i, (op, s, w, o, dn) in enumerate(zip(b.ops, b.path, b.widths, b.out_scales(), b.downs())):
                c_out = self.channels(o, w)
                rows.append(
                    {
                        "branch": f"1/{b.ends_at}",
                        "cell": i,
                        "scale": f"1/{s}",
                        "operator": op,
                        "width": round(w, 4),
                        "channels": f"{c_in}->{c_out}",
                        "down": dn,
                    }
                )
                c_in = c_out
        return pd.DataFrame(rows)


def _document_fields(d: dict) -> dict:
    """The constructor arguments of an architecture document, checked field by field."""
    if not isinstance(d, dict):
        raise ArchitectureError("an architecture document must be a JSON object")
    if d.get("format") != FORMAT:
        raise ArchitectureError(f"not a FasterSeg architecture: 'format' is {d.get('format')!r}, expected {FORMAT!r}")
    if d.get("version") != VERSION:
        raise ArchitectureError(f"unsupported version {d.get('version')!r} (this kit reads version {VERSION})")
    required = ("name", "fch", "num_classes", "stem_width", "head_width", "branches")
    missing = [k for k in required if k not in d]
    if missing:
        raise ArchitectureError(f"missing field(s): {', '.join(missing)}")
    unknown = set(d) - set(required) - {"format", "version", "layers", "width_ratios", "source", "decisions", "stem"}
    if unknown:
        raise ArchitectureError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if not isinstance(d["branches"], list):
        raise ArchitectureError(f"'branches' must be a list of branches, got {d['branches']!r}")
    branches = []
    for k, b in enumerate(d["branches"]):
        if not isinstance(b, dict) or set(b) != {"ends_at", "ops", "path", "widths"}:
            raise ArchitectureError(f"branch {k} must have exactly the keys ends_at, ops, path, widths")
        for key in ("ops", "path", "widths"):
            if not isinstance(b[key], list):
                raise ArchitectureError(f"branch {k}: '{key}' must be a list, got {b[key]!r}")
        branches.append(Branch(_number(b["ends_at"], int, f"branch {k} ends_at"), [str(o) for o in b["ops"]],
                               [_number(s, int, f"branch {k} path") for s in b["path"]],
                               [_number(w, float, f"branch {k} widths") for w in b["widths"]]))
    layers = d.get("layers")
    return dict(name=str(d["name"]), fch=_number(d["fch"], int, "fch"),
                num_classes=_number(d["num_classes"], int, "num_classes"),
                stem_width=_number(d["stem_width"], float, "stem_width"),
                head_width=_number(d["head_width"], float, "head_width"), branches=branches,
                layers=None if layers is None else _number(layers, int, "layers"),
                width_ratios=tuple(_number(w, float, "width_ratios") for w in d.get("width_ratios", WIDTH_RATIOS)),
                source=d.get("source", {}), decisions=d.get("decisions", []), stem=_stem(d.get("stem", "original")))


def _stem(v) -> str:
    from .ops import STEMS

    if v not in STEMS:
        raise ArchitectureError(f"'stem' must be one of {', '.join(STEMS)}, got {json.dumps(v)}")
    return v


def _number(v, kind: type, what: str):
    """`v` as int or float, or `ArchitectureError` naming the field (null and strings are refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and float(v) != int(v)):
        raise ArchitectureError(f"'{what}' must be {'an integer' if kind is int else 'a number'}, got {json.dumps(v)}")
    return kind(v)


# -------------------------------------------------------------------------------------------------
# derivation
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeriveRules:
    """Where the down-sampling may happen, as the original intends: the first down at layer >= 2,
    the last down at layer <= L - 3, two downs at least 3 layers apart."""

    first_down_min: int = 2
    last_down_margin: int = 2
    down_gap_min: int = 3

    @classmethod
    def from_config(cls, space_cfg) -> "DeriveRules":
        return cls(space_cfg.first_down_min, space_cfg.last_down_margin, space_cfg.down_gap_min)

    def down_range(self, layers: int) -> range:
        return range(self.first_down_min, layers - 1 - self.last_down_margin + 1)


def objective(miou: float, latency_ms: float, target_ms: float = 8.3, w: float = -0.07) -> float:
    """MnasNet-style objective used to pick the branch pair: mIoU * (latency / target) ** w."""
    return miou * math.pow(latency_ms / target_ms, w)


def choose_ends(scores: dict[str, tuple[float, float]] | None, target_ms: float = 8.3) -> tuple[int, int]:
    """(32, 8) or (32, 16): the pair with the best `objective`. `scores`: {"8+32": (mIoU, latency ms),
    "16+32": (...)}; without scores the paper's published choice (32, 16)."""
    if not scores:
        return (32, 16)
    o8 = objective(*scores["8+32"], target_ms)
    o16 = objective(*scores["16+32"], target_ms)
    return (32, 8) if o8 > o16 else (32, 16)


def _margin(p: torch.Tensor) -> tuple[int, int, float, float]:
    top = torch.topk(p, min(2, p.numel()))
    best = int(top.indices[0])
    second = int(top.indices[1]) if p.numel() > 1 else best
    return best, second, float(top.values[0]), float(top.values[-1])


def branch_path(
    betas: Sequence[torch.Tensor], last: int, layers: int, rules: DeriveRules = DeriveRules(), index_shift_16: int = 1
) -> tuple[list[int], list[dict]]:
    """Scale index per layer (0/1/2) for a branch ending at `last`, and the decision report.

    `betas`: softmax probabilities [None, beta_1, beta_2]; beta_s row k is node (k + s + 1, s), column 0
    "from down". A down at layer d (the cell at layer d goes down) is decided by node (d + 1, s + 1).
    `index_shift_16=0` reproduces the original's off-by-one for branches ending at 1/16.
    """
    downs = [0] * layers
    report = []
    rng = rules.down_range(layers)
    if last == 1:
        cands = list(rng)
        scores = torch.stack([betas[1][d - 1, 0] for d in cands])
        k = int(torch.argmax(scores))
        d = cands[k] - 1 + index_shift_16
        downs[d] = 1
        order = torch.sort(scores, descending=True)
        report.append(
            {
                "kind": "down",
                "what": "1/8->1/16",
                "choice": d,
                "runner_up": cands[int(order.indices[1])] if len(cands) > 1 else d,
                "p_best": float(order.values[0]),
                "p_second": float(order.values[min(1, len(cands) - 1)]),
            }
        )
    elif last == 2:
        best, second = (-1.0, None), (-1.0, None)
        for d2 in rng:
            for d1 in rng:
                if d2 - d1 < rules.down_gap_min:
                    continue
                p = float(betas[1][d1 - 1, 0] * betas[2][d2 - 2, 0])
                if p > best[0]:
                    best, second = (p, (d1, d2)), best
                elif p > second[0]:
                    second = (p, (d1, d2))
        if best[1] is None:
            raise ValueError(
                f"no valid pair of down-samplings in {layers} layers under {rules}; "
                "use more layers or relax DeriveRules"
            )
        downs[best[1][0]] = downs[best[1][1]] = 1
        report.append(
            {
                "kind": "down",
                "what": "1/8->1/16->1/32",
                "choice": list(best[1]),
                "runner_up": list(second[1]) if second[1] else list(best[1]),
                "p_best": best[0],
                "p_second": max(second[0], 0.0),
            }
        )
    path = [0]
    for dn in downs[:-1]:
        path.append(path[-1] + dn)
    return path, report


def path_widths(
    gammas: Sequence[torch.Tensor], path: list[int], width_ratios: Sequence[float], space: SearchSpace
) -> tuple[list[float], list[dict]]:
    """Argmax width of each cell's output along the path (n - 1 widths for n cells) and margins."""
    widths, report = [], []
    for p in range(1, len(path)):
        s = path[p]
        probs = F.softmax(gammas[s][space.gamma_row(p - 1, s)], -1)
        best, second, pb, ps = _margin(probs)
        widths.append(float(width_ratios[best]))
        if probs.numel() > 1:
            report.append(
                {
                    "kind": "width",
                    "position": p - 1,
                    "choice": float(width_ratios[best]),
                    "runner_up": float(width_ratios[second]),
                    "p_best": pb,
                    "p_second": ps,
                }
            )
    return widths, report


def path_ops(
    alphas: list[torch.Tensor],
    path: list[int],
    widths: list[float],
    ignore_skip: bool = False,
    prune_skips: bool = True,
) -> tuple[list[int], list[int], list[float], list[dict]]:
    """Operators along a path, removing skips within limits (docs/method.md, "Derivation").

    `alphas` are logits [alpha_0, alpha_1, alpha_2]; they are edited in place where a skip is ruled
    out (the caller passes copies unless it wants the original's shared edits). Returns
    (op indices, compacted path, compacted widths, report).
    """
    n = len(path)
    row = lambda i: alphas[path[i]][i - path[i]]  # noqa: E731
    min_len = int(np.round(n / 3.0)) + path[-1] * 2
    if ignore_skip:
        for i in range(n):
            row(i)[0] = -float("inf")
    skips = [
        (i, float(F.softmax(row(i), -1)[0]))
        for i in range(n)
        if int(row(i).argmax()) == 0 and (i == n - 1 or path[i] == path[i + 1])
    ]
    pos_skips = [i for i, _ in skips]
    pos_downs = [i for i in range(n - 1) if path[i] < path[i + 1]]
    if pos_downs:  # no stretch between two downs (or after the last) may be all skips
        pos_downs.append(n)
        for a, b in zip(pos_downs[:-1], pos_downs[1:]):
            if (
                a + 1 in pos_skips
                and b - 1 in pos_skips
                and pos_skips.index(b - 1) - pos_skips.index(a + 1) == (b - 1) - (a + 1)
            ):
                worst = (1.0, -1)
                for j in range(a + 1, b):
                    score = float(F.softmax(row(j), -1)[0])
                    if score <= worst[0]:
                        worst = (score, j)
                row(worst[1])[0] = -float("inf")
    if len(skips) > n - min_len:  # at most n - min_len removals: the most confident skips win
        skips = sorted(skips, key=lambda x: x[1], reverse=True)[: n - min_len]
    if not prune_skips:
        skips = []
    pos_skips = [i for i, _ in skips]
    ops, path_c, widths_c, report = [], [], [], []
    for i in range(n):
        op = int(row(i).argmax())
        if op == 0:
            if i in pos_skips:
                if i == n - 1:
                    widths_c = widths_c[:-1]
                report.append({"kind": "skip_removed", "position": i, "p_skip": float(F.softmax(row(i), -1)[0])})
                continue
            row(i)[0] = -float("inf")
            op = int(row(i).argmax())
        probs = F.softmax(row(i), -1)
        best, second, pb, ps = _margin(probs)
        report.append(
            {
                "kind": "op",
                "position": len(ops),
                "choice": PRIMITIVES[op],
                "runner_up": PRIMITIVES[second if second != op else best],
                "p_best": pb,
                "p_second": ps,
            }
        )
        path_c.append(path[i])
        if i < len(widths):
            widths_c.append(widths[i])
        ops.append(op)
    if len(path_c) < min_len:
        raise AssertionError("derivation removed too many layers")  # cannot happen: see the limit above
    return ops, path_c, widths_c, report


def _as_logits(params) -> dict[str, torch.Tensor]:
    if hasattr(params, "state"):
        params = params.state()
    return {k: torch.as_tensor(v).detach().clone().float() for k, v in params.items()}


def derive_branch(
    logits: dict[str, torch.Tensor],
    space: SearchSpace,
    last: int,
    width_ratios: Sequence[float],
    head_width: float,
    ignore_skip: bool = False,
    rules: DeriveRules = DeriveRules(),
) -> tuple[Branch, list[dict]]:
    """Derive one branch (ending at scale index `last`) from logits, without editing them."""
    alphas = [logits[f"alpha_{s}"].clone() for s in range(3)]
    betas = [None, F.softmax(logits["beta_1"], -1), F.softmax(logits["beta_2"], -1)]
    gammas = [logits[f"gamma_{s}"] for s in range(3)]
    path, rep = branch_path(betas, last, space.layers, rules)
    widths, rep_w = path_widths(gammas, path, width_ratios, space)
    ops, path_c, widths_c, rep_o = path_ops(alphas, path, widths, ignore_skip=ignore_skip)
    branch = Branch(SCALES[last], [PRIMITIVES[o] for o in ops], [SCALES[s] for s in path_c], widths_c + [head_width])
    report = [dict(r, branch=SCALES[last]) for r in rep + rep_w + rep_o]
    return branch, report


def derive(
    params,
    space: SearchSpace,
    stem_width: float,
    head_width: float,
    num_classes: int,
    ends: tuple[int, int] = (32, 16),
    name: str = "derived",
    ignore_skip: bool = False,
    rules: DeriveRules = DeriveRules(),
    source: dict | None = None,
) -> Architecture:
    """Discrete architecture from an `ArchSet` (or a dict of logits), with two branches `ends`
    (scales, e.g. (32, 16); see `choose_ends`). The teacher derives with ``ignore_skip=True``."""
    logits = _as_logits(params)
    n_w = logits["gamma_0"].shape[-1]
    width_ratios = tuple(space.width_ratios) if n_w == len(space.width_ratios) else (max(space.width_ratios),) * n_w
    branches, decisions = [], []
    for e in ends:
        b, rep = derive_branch(logits, space, SCALE_INDEX[e], width_ratios, head_width, ignore_skip, rules)
        branches.append(b)
        decisions += rep
    return Architecture(
        name=name,
        fch=space.fch,
        num_classes=num_classes,
        stem_width=stem_width,
        head_width=head_width,
        branches=branches,
        layers=space.layers,
        width_ratios=tuple(space.width_ratios),
        source=source or {"kind": "derived"},
        decisions=decisions,
        stem=space.stem,
    )


def decision_margins(arch: Architecture):
    """The derivation report as a table: one row per decision with p_best, p_second and their margin."""
    import pandas as pd

    df = pd.DataFrame(arch.decisions)
    if len(df) and "p_second" in df:
        df["margin"] = df["p_best"] - df["p_second"]
    return df
