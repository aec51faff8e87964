"""Architectures as plain data: the versioned JSON format and its validation.

An `Architecture` is what a search produces and what `DerivedNet` builds: per branch, per cell, the
operator, the cell's input scale (8/16/32) and its output width ratio (the last cell's width is the
head width); plus F, the stem/head widths and the number of classes. Example (abridged)::

    {"format": "fasterseg-arch", "version": 1, "name": "fasterseg_student", "fch": 12,
     "num_classes": 19, "stem_width": 0.6667, "head_width": 0.6667,
     "branches": [{"ends_at": 32, "ops": ["conv_2x", ...], "path": [8, 8, ..., 32],
                   "widths": [0.3333, ..., 0.6667]}, {"ends_at": 16, ...}]}

Derivation from a supernet is `fasterseg.nets.derive`.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from fasterseg.config import WIDTH_RATIOS
from fasterseg.config_checks import DECISIONS
from fasterseg.nets.ops import OPS, STEMS
from fasterseg.nets.space import SCALES
from fasterseg.paths import write_text

FORMAT, VERSION = "fasterseg-arch", 1
#: refused by the loader before anything is built: beyond these, building allocates hundreds of GB
MAX_FCH, MAX_CLASSES, MAX_CELLS = 256, 1000, 128


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
    stem: str = "original"  # the stem's kind (`ops.STEMS`); written to JSON only when not the original
    # how the 1/8 logits reach full resolution when deployed (`network.DECISIONS`); written only when not bilinear8
    decision: str = "bilinear8"


    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION}
        d.update(asdict(self))
        d["width_ratios"] = list(self.width_ratios)
        if self.stem == "original":
            del d["stem"]
        if self.decision == "bilinear8":
            del d["decision"]
        return d

    def to_json(self) -> str:
        """Indented JSON with lists of numbers/strings kept on one line."""
        text = json.dumps(self.to_dict(), indent=1)
        return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)

    def save(self, path: str | Path) -> Path:
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
        if self.fch > MAX_FCH or self.num_classes > MAX_CLASSES:
            raise ArchitectureError(f"fch={self.fch}, num_classes={self.num_classes}: at most fch {MAX_FCH} "
                                    f"({32 * MAX_FCH} channels at 1/32) and {MAX_CLASSES} classes; the paper's network "
                                    "has fch 12")
        if any(len(b.ops) > MAX_CELLS for b in self.branches):
            raise ArchitectureError(f"a branch has more than {MAX_CELLS} cells")
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
                if op not in OPS:
                    raise ArchitectureError(
                        f"{where}, cell {i}: unknown operator {op!r}; known: {', '.join(OPS)}"
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
    unknown = set(d) - set(required) - {"format", "version", "layers", "width_ratios", "source", "decisions", "stem",
                                        "decision"}
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
                source=d.get("source", {}), decisions=d.get("decisions", []), stem=_stem(d.get("stem", "original")),
                decision=_decision(d.get("decision", "bilinear8")))


def _stem(v) -> str:
    if v not in STEMS:
        raise ArchitectureError(f"'stem' must be one of {', '.join(STEMS)}, got {json.dumps(v)}")
    return v


def _decision(v) -> str:
    if v not in DECISIONS:
        raise ArchitectureError(f"'decision' must be one of {', '.join(DECISIONS)}, got {json.dumps(v)}")
    return v


def _number(v, kind: type, what: str):
    """`v` as int or float, or `ArchitectureError` naming the field (null and strings are refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and float(v) != int(v)):
        raise ArchitectureError(f"'{what}' must be {'an integer' if kind is int else 'a number'}, got {json.dumps(v)}")
    return kind(v)


# -------------------------------------------------------------------------------------------------
# derivation
# -------------------------------------------------------------------------------------------------


