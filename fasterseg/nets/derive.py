"""Derivation: a discrete architecture from a supernet's architecture parameters (docs/method.md, "Derivation").

Per branch, beta chooses the down-sampling positions (`branch_path`), gamma the widths along the path
(`path_widths`), alpha the operators (`path_ops`); skips that do not go down are removed within limits
(`DeriveRules`). `derive` is the corrected version of the original's procedure (`fasterseg.importers.original`
replays the original's quirks); every decision is reported with its margin (`decision_margins`). The branch
pair is chosen by the MnasNet-style objective (`choose_ends`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fasterseg.config_checks import down_range
from fasterseg.nets.arch import Architecture, Branch
from fasterseg.nets.ops import PRIMITIVES
from fasterseg.nets.space import SCALE_INDEX, SCALES, SearchSpace


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
        return down_range(layers, self.first_down_min, self.last_down_margin)


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


def choose_decision(scores: dict[str, tuple[float, float]], target_ms: float = 8.3) -> str:
    """The final up-sampling form with the best `objective`: `scores` is {form: (mIoU, latency ms)} (mIoU of the
    predictions up-sampled that way, latency of the network with that form)."""
    return max(scores, key=lambda f: objective(*scores[f], target_ms))


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
    op_names: Sequence[str] = PRIMITIVES,
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
                "choice": op_names[op],
                "runner_up": op_names[second if second != op else best],
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
    ops, path_c, widths_c, rep_o = path_ops(alphas, path, widths, ignore_skip=ignore_skip, op_names=space.ops)
    branch = Branch(SCALES[last], [space.ops[o] for o in ops], [SCALES[s] for s in path_c], widths_c + [head_width])
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
    decision: str = "bilinear8",
) -> Architecture:
    """Discrete architecture from an `ArchSet` (or a dict of logits), with two branches `ends`
    (scales, e.g. (32, 16); see `choose_ends`). The teacher derives with ``ignore_skip=True``. A searched stem's
    kind is its logits' argmax; `decision` is the final up-sampling form (chosen by the caller, `choose_decision`)."""
    logits = _as_logits(params)
    n_w = logits["gamma_0"].shape[-1]
    width_ratios = tuple(space.width_ratios) if n_w == len(space.width_ratios) else (max(space.width_ratios),) * n_w
    branches, decisions = [], []
    for e in ends:
        b, rep = derive_branch(logits, space, SCALE_INDEX[e], width_ratios, head_width, ignore_skip, rules)
        branches.append(b)
        decisions += rep
    stem = space.stem
    if space.stems:
        probs = F.softmax(logits["stem"], -1)
        best, second, pb, ps = _margin(probs)
        stem = space.stems[best]
        decisions.append({"kind": "stem", "choice": stem, "runner_up": space.stems[second], "p_best": pb,
                          "p_second": ps})
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
        stem=stem,
        decision=decision,
    )


def decision_margins(arch: Architecture):
    """The derivation report as a table: one row per decision with p_best, p_second and their margin."""
    df = pd.DataFrame(arch.decisions)
    if len(df) and "p_second" in df:
        df["margin"] = df["p_best"] - df["p_second"]
    return df


