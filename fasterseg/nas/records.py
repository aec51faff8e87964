"""What the search records: the history tables' columns, the long-format architecture-parameter rows,
and the review after each epoch (derivation of both branch pairs, the chosen pair, predicted latency,
collapse diagnostics, how many decisions are still undecided)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fasterseg.nets.arch import Architecture
from fasterseg.nets.derive import DeriveRules, branch_path, choose_decision, choose_ends, derive, objective
from fasterseg.nets.ops import ZOOMED
from fasterseg.nets.space import SCALE_INDEX, SCALES
from fasterseg.nets.supernet import PREDICTIONS, Supernet
from fasterseg.runs import RunError, load_history

WIDTH_LABEL = {4 / 12: "4/12", 6 / 12: "6/12", 8 / 12: "8/12", 10 / 12: "10/12", 1.0: "12/12"}
UNDECIDED_MARGIN = 0.01  # a decision whose best option leads the runner-up by less is "undecided"
PAIRS = ((32, 8), (32, 16))


def step_columns(names: list[str]) -> list[str]:
    return ["step", "phase", "epoch", "lr", "loss_weight", "seconds"] + [
        f"{k}_{n}" for n in names for k in ("loss_arch", "lam", "latency_weighted_ms", "latency_full_ms")]


ARCH_COLUMNS = ["step", "phase", "epoch", "arch_set", "kind", "scale", "layer", "choice", "prob"]
EPOCH_COLUMNS = ["phase", "epoch", "step", "arch_set", *[f"miou_{p}" for p in PREDICTIONS], "ends", "latency_ms", "fps",
                 "latency_ms_8+32", "latency_ms_16+32", "objective", "lam", "skip_share", "zoomed_share",
                 "first_down_32", "first_down_16", "first_down_8", "removed_layers", "alpha_entropy", "undecided",
                 "arch_file", "stem", "decision", "decision_scores"]
LAMBDA_COLUMNS = ["epoch", "step", "arch_set", "old", "new", "fps_8+32", "fps_16+32", "reason"]


def arch_rows(net: Supernet, step: int, phase: str, epoch: int) -> list[dict]:
    """Long-format rows: the probability of every choice of every node, per architecture set."""
    sp = net.space
    rows = []
    for a in net.arch_sets:
        probs = a.probabilities()
        base = dict(step=step, phase=phase, epoch=epoch, arch_set=a.name)
        for s in range(3):
            for r, p in enumerate(probs[f"alpha_{s}"]):
                rows += [dict(base, kind="alpha", scale=SCALES[s], layer=r + s, choice=op, prob=float(v))
                         for op, v in zip(sp.ops, p)]
            if s:
                for r, p in enumerate(probs[f"beta_{s}"]):
                    rows += [dict(base, kind="beta", scale=SCALES[s], layer=r + s + 1, choice=c, prob=float(v))
                             for c, v in zip(("down", "same"), p)]
            for r, p in enumerate(probs[f"gamma_{s}"]):
                rows += [dict(base, kind="gamma", scale=SCALES[s], layer=r + sp.gamma_offset(s),
                              choice=WIDTH_LABEL.get(round(w, 6), f"{w:.3f}"), prob=float(v))
                         for w, v in zip(a.width_ratios, p)]
        if "stem" in probs:  # a searched stem: one row per kind (scale 8, layer -1: before the cells)
            rows += [dict(base, kind="stem", scale=8, layer=-1, choice=k, prob=float(v))
                     for k, v in zip(sp.stems, probs["stem"])]
    return rows


def diagnostics(net: Supernet, i: int, ends: tuple[int, int], rules: DeriveRules, arch: Architecture) -> dict:
    """Collapse diagnostics of set i on the paths of its derived branches (before skip removal): share of
    parameter-free (skip) and zoomed operators, first down-sampling layer per branch, the number of layers
    removed, the mean normalised entropy of alpha (1 = uniform), and the share of undecided decisions."""
    a, sp = net.arch_sets[i], net.space
    betas = [None, F.softmax(a.beta(1).detach(), -1), F.softmax(a.beta(2).detach(), -1)]
    ops, firsts = [], {}
    for e in ends:
        path, _ = branch_path(betas, SCALE_INDEX[e], sp.layers, rules)
        ops += [sp.ops[int(a.alpha(s)[l - s].argmax())] for l, s in enumerate(path)]
        downs = [l for l in range(len(path) - 1) if path[l + 1] > path[l]]
        firsts[e] = downs[0] if downs else None
    ent = []
    for s in range(3):
        p = F.softmax(a.alpha(s).detach().double(), -1)
        ent.append((-(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(len(sp.ops))))
    kept = sum(len(b.ops) for b in arch.branches)
    margins = [d["p_best"] - d["p_second"] for d in arch.decisions if "p_second" in d]
    return {"skip_share": ops.count("skip") / len(ops), "zoomed_share": sum(o in ZOOMED for o in ops) / len(ops),
            "first_down_32": firsts.get(32), f"first_down_{ends[1]}": firsts.get(ends[1]),
            "removed_layers": len(ends) * sp.layers - kept, "alpha_entropy": float(torch.cat(ent).mean()),
            "undecided": sum(m < UNDECIDED_MARGIN for m in margins) / max(1, len(margins))}


@dataclass
class SetReview:
    """One architecture set after an epoch: its table row and (search phase) its derived architecture."""

    row: dict
    arch: Architecture | None
    fps: dict[str, float]  # candidate pair -> predicted FPS (for adaptive lambda)


def review_set(net: Supernet, i: int, mious: dict[str, float], cfg, lut, rules: DeriveRules, phase: str, epoch: int,
               step: int, lam: float, run_name: str) -> SetReview:
    """Row of set i for ``epochs.csv``. During pretraining alpha/beta/gamma are untouched, so nothing is
    derived (a derivation would only break ties); in the search both branch pairs are derived, priced
    with the table and the pair with the best mIoU * (latency / target)^-0.07 is kept."""
    a = net.arch_sets[i]
    row = {"phase": phase, "epoch": epoch, "step": step, "arch_set": a.name,
           **{f"miou_{p}": mious[p] for p in PREDICTIONS}, "lam": lam}
    if phase == "pretrain":
        return SetReview(row, None, {})
    sw, hw = cfg.space.stem_head_widths[i]
    cands, lat = {}, {}
    for pair in PAIRS:
        cands[pair] = derive(a, net.space, sw, hw, cfg.data.num_classes, ends=pair, name=f"{a.name}_{phase}{epoch:02d}",
                             ignore_skip=not a.search_widths, rules=rules,
                             source={"kind": "search", "run": run_name, "phase": phase, "epoch": epoch, "step": step})
        lat[pair] = lut.predict(cands[pair])
    key = {pair: f"{pair[1]}+{pair[0]}" for pair in PAIRS}
    ends = choose_ends({key[p]: (mious[key[p]], lat[p]) for p in PAIRS}, cfg.search.target_ms)
    arch = cands[ends]
    if len(net.space.decisions) > 1:  # the final up-sampling: priced with the table, scored on the validation split
        scores = {}
        for d in net.space.decisions:
            arch.decision = d
            scores[d] = (mious.get(f"{key[ends]}@{d}", mious[key[ends]]), lut.predict(arch))
        arch.decision = choose_decision(scores, cfg.search.target_ms)
        lat[ends] = scores[arch.decision][1]
        row["decision"] = arch.decision
        row["decision_scores"] = json.dumps({d: {"miou": round(m, 5), "latency_ms": round(t, 4)}
                                             for d, (m, t) in scores.items()})
    row.update({"ends": key[ends], "latency_ms": lat[ends], "fps": 1000 / lat[ends],
                **{f"latency_ms_{key[p]}": lat[p] for p in PAIRS},
                "objective": objective(mious[key[ends]], lat[ends], cfg.search.target_ms),
                **diagnostics(net, i, ends, rules, arch), "stem": arch.stem,
                "arch_file": str(Path("archs") / f"{a.name}_{phase}_epoch{epoch:02d}.json")})
    return SetReview(row, arch, {key[p]: 1000 / lat[p] for p in PAIRS})


def epoch_line(phase: str, epoch: int, seconds: float, rows: list[dict]) -> str:
    """One progress line per epoch."""
    if phase == "pretrain":
        s = " | ".join(f"{r['arch_set']}: mIoU(8+32) {100 * r['miou_8+32']:.1f} at max widths" for r in rows)
        return (f"[pretrain {epoch + 1}] {seconds:.0f} s | {s} (weights only: the architectures are undecided until "
                "the search phase)")
    s = " | ".join(f"{r['arch_set']}: mIoU({r['ends']}) {100 * r['miou_' + r['ends']]:.1f} {r['latency_ms']:.2f} ms "
                   f"({r['fps']:.0f} FPS) lam {r['lam']:.3g} skip {r['skip_share']:.2f} zoom {r['zoomed_share']:.2f} "
                   f"undecided {r['undecided']:.0%}" for r in rows)
    return f"[search {epoch + 1}] {seconds:.0f} s | {s}"


def final_arch(run: str | Path, arch_set: str = "student"):
    """The architecture of `arch_set` after the last search epoch of a search run."""
    ep = load_history(run)["epochs"]
    rows = ep[(ep["arch_set"] == arch_set) & (ep["phase"] == "search")]
    if rows.empty:
        raise RunError(f"{run} has no finished search epoch for the architecture set {arch_set!r}")
    return Architecture.load(Path(run) / rows.iloc[-1]["arch_file"])
