"""The search: pretraining, teacher-student co-searching, adaptive latency weight, run records, resume.

Phases (DESIGN.md "Search procedure"):

- **pretrain**: supernet weights only, at max, min and two random widths per step (no architecture
  updates; architecture gradients are zeroed and never clipped with the weights).
- **search**: per step, a first-order architecture step (Adam) on a batch from the architecture half of
  the training split -- each set's segmentation loss at its own widths plus its latency penalty
  ``lambda * Lat`` -- then a weight step (SGD, gradient norm clipped at 5 over the weights) on a batch
  from the weight half: every set at its own widths plus the max/min sandwich passes.

After each epoch: validation mIoU of the five head predictions per set, derivation of each set (both
branch pairs, predicted latency from the LUT, the pair chosen by mIoU x (latency/target)^-0.07), collapse
diagnostics, adaptive lambda (halved above the FPS band, doubled below it), and a checkpoint.

Run directory: ``config.json``; ``history/steps.csv`` (losses, lambda, expected latencies),
``history/arch.csv`` (long format: softmax of every alpha/beta/gamma entry per logged step),
``history/epochs.csv`` (per epoch and set: mIoU per head, derived latency/FPS, diagnostics),
``history/lambda.csv`` (every lambda change); ``archs/<set>_epoch<NN>.json``; ``checkpoints/``
(``last.pt`` and ``prev.pt`` with sha256 sidecars, loaded with ``weights_only=True``).

Everything random is seeded: batches are drawn by (seed, epoch, step), transforms by (seed, epoch,
index), Gumbel noise and random widths by the supernet's own generator, whose state is checkpointed.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .arch import DeriveRules, branch_path, choose_ends, derive, objective
from .config import RunConfig
from .data.cityscapes import build_dataset
from .data.transforms import EvalTransform, TrainTransform
from .latency import load_for
from .latency.expected import ExpectedLatency, LatencyPenalty
from .losses import downsample_labels, ohem_cross_entropy, supernet_weight_loss
from .metrics import SegMeter
from .ops import PRIMITIVES, ZOOMED
from .space import SCALES, SearchSpace
from .supernet import PREDICTIONS, Supernet

CKPT_FORMAT = "fasterseg-search-checkpoint"


class SearchError(RuntimeError):
    """The search cannot start or continue; the message says why and what was kept."""


# -- data ----------------------------------------------------------------------------------------------
def split_train(n: int, portion: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the training indices: (weight half, architecture half)."""
    perm = np.random.default_rng([seed, 7]).permutation(n)
    k = int(round(n * portion))
    return np.sort(perm[:k]), np.sort(perm[k:])


def batch_at(ds, indices: np.ndarray, batch_size: int, epoch: int, step: int, seed: int, salt: int):
    """The batch of (epoch, step): a seeded permutation per epoch, read cyclically; no iterator state."""
    perm = np.random.default_rng([seed, salt, epoch]).permutation(indices)
    picks = [perm[(step * batch_size + j) % len(perm)] for j in range(batch_size)]
    ds.epoch = epoch
    xs, ys = zip(*(ds[int(i)] for i in picks))
    return torch.stack(xs), torch.stack(ys)


# -- records -------------------------------------------------------------------------------------------
class Table:
    """An append-only CSV with a fixed header (rows flushed as written)."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(columns)

    def add(self, rows: list[dict]) -> None:
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            w.writerows(rows)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (resuming replays them)."""
        df = pd.read_csv(self.path)
        if "step" in df and len(df):
            df[df["step"] <= step].to_csv(self.path, index=False)


WIDTH_LABEL = {4 / 12: "4/12", 6 / 12: "6/12", 8 / 12: "8/12", 10 / 12: "10/12", 1.0: "12/12"}


def arch_rows(net: Supernet, step: int, phase: str, epoch: int) -> list[dict]:
    """Long-format rows: the probability of every choice of every node, per set."""
    sp = net.space
    rows = []
    for a in net.arch:
        probs = a.probabilities()
        for s in range(3):
            for r, p in enumerate(probs[f"alpha_{s}"]):
                rows += [dict(step=step, phase=phase, epoch=epoch, arch=a.name, kind="alpha", scale=SCALES[s],
                              layer=r + s, choice=op, prob=float(v)) for op, v in zip(PRIMITIVES, p)]
            if s:
                for r, p in enumerate(probs[f"beta_{s}"]):
                    rows += [dict(step=step, phase=phase, epoch=epoch, arch=a.name, kind="beta", scale=SCALES[s],
                                  layer=r + s + 1, choice=c, prob=float(v)) for c, v in zip(("down", "same"), p)]
            for r, p in enumerate(probs[f"gamma_{s}"]):
                rows += [dict(step=step, phase=phase, epoch=epoch, arch=a.name, kind="gamma", scale=SCALES[s],
                              layer=r + sp.gamma_offset(s), choice=WIDTH_LABEL.get(round(w, 6), f"{w:.3f}"),
                              prob=float(v)) for w, v in zip(a.width_ratios, p)]
    return rows


def diagnostics(net: Supernet, i: int, ends: tuple[int, int], rules: DeriveRules, arch) -> dict:
    """Collapse diagnostics of set i on the paths of its derived branches (before skip removal):
    share of parameter-free (skip) and zoomed operators, first down-sampling layer per branch, the
    number of layers removed, and the mean normalised entropy of alpha (1 = uniform)."""
    a, sp = net.arch[i], net.space
    betas = [None, F.softmax(a.beta(1).detach(), -1), F.softmax(a.beta(2).detach(), -1)]
    ops, firsts = [], {}
    for e in ends:
        last = {8: 0, 16: 1, 32: 2}[e]
        path, _ = branch_path(betas, last, sp.layers, rules)
        ops += [PRIMITIVES[int(a.alpha(s)[l - s].argmax())] for l, s in enumerate(path)]
        downs = [l for l in range(len(path) - 1) if path[l + 1] > path[l]]
        firsts[e] = downs[0] if downs else None
    ent = []
    for s in range(3):
        p = F.softmax(a.alpha(s).detach().double(), -1)
        ent.append((-(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(len(PRIMITIVES))))
    kept = sum(len(b.ops) for b in arch.branches)
    return {"skip_share": ops.count("skip") / len(ops), "zoomed_share": sum(o in ZOOMED for o in ops) / len(ops),
            "first_down_32": firsts.get(32), f"first_down_{ends[1]}": firsts.get(ends[1]),
            "removed_layers": len(ends) * sp.layers - kept, "alpha_entropy": float(torch.cat(ent).mean())}


# -- the searcher --------------------------------------------------------------------------------------
@dataclass
class Position:
    phase: str = "pretrain"
    epoch: int = 0
    epoch_step: int = 0  # steps done in this epoch
    step: int = 0  # global steps done


class Searcher:
    """One search run in `out` (see the module docstring). `resume=True` continues from its checkpoint."""

    def __init__(self, cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        sc = cfg.search
        if sc.threads:
            torch.set_num_threads(sc.threads)
        if self.out.exists() and not resume:
            if (self.out / "checkpoints").exists():
                raise SearchError(f"{self.out} already holds a run; use --resume to continue it or another --out")
            import shutil

            for sub in ("history", "archs"):  # records of a run that died before its first checkpoint
                shutil.rmtree(self.out / sub, ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        cfg.save(self.out / "config.json")
        torch.manual_seed(sc.seed)
        # data
        self.train = build_dataset(cfg.data, "train")
        self.val = build_dataset(cfg.data, "val", EvalTransform(sc.downsample))
        self.w_idx, self.a_idx = split_train(len(self.train), sc.train_portion, sc.seed)
        need = max(sc.batch_size, sc.pretrain_batch_size)
        if min(len(self.w_idx), len(self.a_idx)) < need or len(self.val) == 0:
            raise SearchError(
                f"the data is too small: {len(self.train)} training images split into {len(self.w_idx)} for weight "
                f"steps and {len(self.a_idx)} for architecture steps (train_portion {sc.train_portion}), "
                f"{len(self.val)} validation images; each half needs at least the batch size ({need}) and "
                "validation at least one image. Generate more images (data.num_train) or lower the batch size")
        if sc.val_images:
            self.val.samples = self.val.samples[: sc.val_images]
        # model, latency, optimisers
        self.space = SearchSpace.from_config(cfg.space)
        self.rules = DeriveRules.from_config(cfg.space)
        n_sets = len(cfg.space.stem_head_widths)
        for name in ("lam", "fps_min", "fps_max"):
            if len(getattr(sc, name)) != n_sets:
                raise SearchError(f"search.{name} has {len(getattr(sc, name))} values but there are {n_sets} "
                                  "architecture sets (space.stem_head_widths)")
        self.net = Supernet(self.space, cfg.data.num_classes, cfg.space.stem_head_widths)
        self.net.generator = torch.Generator().manual_seed(sc.seed)
        self.lut = load_for(cfg)
        self.expected = [ExpectedLatency(self.space, self.lut, sw, hw, cfg.data.num_classes, cfg.latency.ends)
                         for sw, hw in cfg.space.stem_head_widths]
        self.lam = [float(x) for x in sc.lam]
        self.arch_opts = [torch.optim.Adam(self.net.arch_parameters(i), lr=sc.arch_lr, betas=tuple(sc.arch_betas))
                          for i in range(n_sets)]
        self._new_weight_optimizer()
        self.pos = Position()
        h = self.out / "history"
        self.steps_log = Table(h / "steps.csv", ["step", "phase", "epoch", "lr", "loss_weight", "seconds"] +
                               [f"{k}_{a.name}" for a in self.net.arch for k in
                                ("loss_arch", "lam", "latency_weighted_ms", "latency_full_ms")])
        self.arch_log = Table(h / "arch.csv", ["step", "phase", "epoch", "arch", "kind", "scale", "layer", "choice", "prob"])
        self.epoch_log = Table(h / "epochs.csv", ["phase", "epoch", "step", "arch", *[f"miou_{p}" for p in PREDICTIONS],
                                                  "ends", "latency_ms", "fps", "latency_ms_8+32", "latency_ms_16+32",
                                                  "objective", "lam", "skip_share", "zoomed_share", "first_down_32",
                                                  "first_down_16", "first_down_8", "removed_layers", "alpha_entropy",
                                                  "arch_file"])
        self.lam_log = Table(h / "lambda.csv", ["epoch", "step", "arch", "old", "new", "fps_8+32", "fps_16+32", "reason"])
        if resume:
            self.load_checkpoint()
        else:
            self.arch_log.add(arch_rows(self.net, 0, "pretrain", 0))

    def _new_weight_optimizer(self) -> None:
        sc = self.cfg.search
        self.weight_opt = torch.optim.SGD(self.net.weight_parameters(), lr=sc.lr, momentum=sc.momentum,
                                          weight_decay=sc.weight_decay)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.weight_opt, sc.lr_decay)

    # -- steps -------------------------------------------------------------------------------------------
    def steps_per_epoch(self, phase: str) -> int:
        sc = self.cfg.search
        bs = sc.pretrain_batch_size if phase == "pretrain" else sc.batch_size
        return sc.steps_per_epoch or max(1, len(self.w_idx) // bs)

    def _transform(self, phase: str) -> TrainTransform:
        sc, d = self.cfg.search, self.cfg.data
        crop = sc.pretrain_crop if phase == "pretrain" else sc.crop
        return TrainTransform(crop[0], crop[1], d.scale_min, d.scale_max, downsample=sc.downsample)

    def _check(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            raise SearchError(f"the {what} loss became {float(loss)} at {self.pos.phase} epoch {self.pos.epoch} "
                              f"step {self.pos.epoch_step}; the run stopped and its last good checkpoint is kept in "
                              f"{self.out / 'checkpoints'}. Lower search.lr or search.arch_lr, or check the data")

    def arch_step(self, x, y) -> dict:
        """First-order architecture step for every set: segmentation loss at its own widths + penalty."""
        details = {}
        for i, a in enumerate(self.net.arch):
            self.arch_opts[i].zero_grad(set_to_none=True)
            out = self.net(x, arch=i, widths="sampled")
            loss = sum(ohem_cross_entropy(v, y) for v in out.values())
            if self.lam[i] > 0:
                pen, d = LatencyPenalty(self.expected[i], self.lam[i], self.cfg.latency.penalty,
                                        tuple(self.cfg.latency.rates))(a)
                loss = loss + pen
            else:  # no penalty (the teacher): only log the expected latency, without a graph
                with torch.no_grad():
                    d = {"latency_full_ms": float(self.expected[i](a))}
            self._check(loss, f"architecture ({a.name})")
            loss.backward()
            self.arch_opts[i].step()
            details.update({f"loss_arch_{a.name}": float(loss.detach()), f"lam_{a.name}": self.lam[i],
                            f"latency_weighted_ms_{a.name}": d.get("latency_weighted_ms"),
                            f"latency_full_ms_{a.name}": d["latency_full_ms"]})
        return details

    def weight_step(self, x, y, pretrain: bool) -> float:
        self.net.zero_grad(set_to_none=True)  # architecture gradients too: they are never clipped or kept
        loss, _ = supernet_weight_loss(self.net, x, y, pretrain=pretrain)
        self._check(loss, "weight")
        loss.backward()
        for p in self.net.arch_parameters():
            p.grad = None
        torch.nn.utils.clip_grad_norm_(self.net.weight_parameters(), self.cfg.search.grad_clip)
        self.weight_opt.step()
        return float(loss.detach())

    # -- epochs ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """Validation mIoU of the five predictions per set (teacher at max widths, others at argmax)."""
        self.net.eval()
        meters = [{p: SegMeter(self.cfg.data.num_classes) for p in PREDICTIONS} for _ in self.net.arch]
        for k in range(0, len(self.val), 4):
            xs, ys = zip(*(self.val[j] for j in range(k, min(k + 4, len(self.val)))))
            x, y = torch.stack(xs), torch.stack(ys)
            for i, a in enumerate(self.net.arch):
                out = self.net(x, arch=i, widths="argmax" if a.search_widths else "max")
                for p, v in out.items():
                    meters[i][p].update(F.interpolate(v, size=y.shape[-2:], mode="bilinear", align_corners=True), y)
        self.net.train()
        return [{p: m.scores().miou for p, m in ms.items()} for ms in meters]

    def end_epoch(self, phase: str, epoch: int, seconds: float) -> list[dict]:
        """Validate, derive, diagnose, adapt lambda, write the records; returns the epoch rows."""
        sc = self.cfg.search
        mious = self.evaluate()
        H, W = self.lut.resolution
        rows = []
        for i, a in enumerate(self.net.arch):
            sw, hw = self.cfg.space.stem_head_widths[i]
            cands, lat = {}, {}
            for pair in ((32, 8), (32, 16)):
                cands[pair] = derive(a, self.space, sw, hw, self.cfg.data.num_classes, ends=pair,
                                     name=f"{a.name}_{phase}{epoch:02d}", ignore_skip=not a.search_widths,
                                     rules=self.rules, source={"kind": "search", "run": str(self.out.name),
                                                               "phase": phase, "epoch": epoch, "step": self.pos.step})
                lat[pair] = self.lut.predict(cands[pair], H, W)
            scores = {"8+32": (mious[i]["8+32"], lat[(32, 8)]), "16+32": (mious[i]["16+32"], lat[(32, 16)])}
            ends = choose_ends(scores, sc.target_ms)
            arch = cands[ends]
            key = "8+32" if ends == (32, 8) else "16+32"
            rel = Path("archs") / f"{a.name}_{phase}_epoch{epoch:02d}.json"
            arch.save(self.out / rel)
            row = {"phase": phase, "epoch": epoch, "step": self.pos.step, "arch": a.name,
                   **{f"miou_{p}": mious[i][p] for p in PREDICTIONS}, "ends": f"{ends[1]}+{ends[0]}",
                   "latency_ms": lat[ends], "fps": 1000 / lat[ends], "latency_ms_8+32": lat[(32, 8)],
                   "latency_ms_16+32": lat[(32, 16)], "objective": objective(mious[i][key], lat[ends], sc.target_ms),
                   "lam": self.lam[i], **diagnostics(self.net, i, ends, self.rules, arch), "arch_file": str(rel)}
            rows.append(row)
            if phase == "search" and sc.adapt_lambda and self.lam[i] > 0:
                self._adapt_lambda(i, epoch, 1000 / lat[(32, 8)], 1000 / lat[(32, 16)])
        self.epoch_log.add(rows)
        if self.progress:
            s = " | ".join(f"{r['arch']}: mIoU({r['ends']}) {100 * r['miou_' + r['ends']]:.1f} "
                           f"{r['latency_ms']:.2f} ms ({r['fps']:.0f} FPS) lam {r['lam']:.3g} skip {r['skip_share']:.2f} "
                           f"zoom {r['zoomed_share']:.2f}" for r in rows)
            print(f"[{phase} {epoch + 1}] {seconds:.0f} s | {s}", flush=True)
        return rows

    def _adapt_lambda(self, i: int, epoch: int, fps0: float, fps1: float) -> None:
        sc, old = self.cfg.search, self.lam[i]
        if fps0 >= sc.fps_max[i] or fps1 >= sc.fps_max[i]:
            self.lam[i], reason = old / 2, f"FPS above the band's max {sc.fps_max[i]}"
        elif fps0 <= sc.fps_min[i] or fps1 <= sc.fps_min[i]:
            self.lam[i], reason = old * 2, f"FPS below the band's min {sc.fps_min[i]}"
        else:
            return
        self.lam_log.add([{"epoch": epoch, "step": self.pos.step, "arch": self.net.arch[i].name, "old": old,
                           "new": self.lam[i], "fps_8+32": fps0, "fps_16+32": fps1, "reason": reason}])

    def run(self, max_steps: int | None = None) -> Path:
        """Run (or continue) both phases; `max_steps` stops early after that many global steps (for
        tests and timing). Returns the run directory."""
        from tqdm.auto import tqdm

        sc = self.cfg.search
        phases = [("pretrain", sc.pretrain_epochs), ("search", sc.search_epochs)]
        start = [p for p, _ in phases].index(self.pos.phase)
        for phase, n_epochs in phases[start:]:
            if phase != self.pos.phase:
                self.pos = Position(phase, 0, 0, self.pos.step)
                self._new_weight_optimizer()  # the search phase starts its own schedule, as the original
            ds_transform = self._transform(phase)
            self.train.transform = ds_transform
            bs = sc.pretrain_batch_size if phase == "pretrain" else sc.batch_size
            steps = self.steps_per_epoch(phase)
            for epoch in range(self.pos.epoch, n_epochs):
                t0 = time.perf_counter()
                bar = tqdm(range(self.pos.epoch_step, steps), desc=f"{phase} {epoch + 1}/{n_epochs}",
                           disable=not self.progress, leave=False)
                for es in bar:
                    if max_steps is not None and self.pos.step >= max_steps:
                        return self.out
                    t = time.perf_counter()
                    row = {"step": self.pos.step + 1, "phase": phase, "epoch": epoch,
                           "lr": self.weight_opt.param_groups[0]["lr"]}
                    data_epoch = epoch if phase == "pretrain" else sc.pretrain_epochs + epoch  # fresh crops per phase
                    if phase == "search":
                        xa, ya = batch_at(self.train, self.a_idx, bs, data_epoch, es, sc.seed, 2)
                        row.update(self.arch_step(xa, downsample_labels(ya)))
                    xw, yw = batch_at(self.train, self.w_idx, bs, data_epoch, es, sc.seed, 1)
                    row["loss_weight"] = self.weight_step(xw, downsample_labels(yw), pretrain=phase == "pretrain")
                    self.pos.epoch_step, self.pos.step = es + 1, self.pos.step + 1
                    row["seconds"] = time.perf_counter() - t
                    self.steps_log.add([row])
                    bar.set_postfix(loss=f"{row['loss_weight']:.2f}")
                    if phase == "search" and self.pos.step % sc.log_every == 0:
                        self.arch_log.add(arch_rows(self.net, self.pos.step, phase, epoch))
                    if self.pos.step % sc.checkpoint_every == 0 and self.pos.epoch_step < steps:
                        self.save_checkpoint()
                self.sched.step()
                self.end_epoch(phase, epoch, time.perf_counter() - t0)
                self.pos = Position(phase, epoch + 1, 0, self.pos.step)
                self.save_checkpoint()
        return self.out

    # -- checkpoints -----------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Atomically write checkpoints/last.pt (the previous one becomes prev.pt), with a sha256 sidecar."""
        d = self.out / "checkpoints"
        d.mkdir(exist_ok=True)
        state = {"format": CKPT_FORMAT, "version": 1, "position": self.pos.__dict__.copy(),
                 "net": self.net.state_dict(), "weight_opt": self.weight_opt.state_dict(),
                 "sched": self.sched.state_dict(), "arch_opts": [o.state_dict() for o in self.arch_opts],
                 "lam": list(self.lam), "torch_rng": torch.get_rng_state(),
                 "generator": self.net.generator.get_state(), "config": self.cfg.to_json()}
        tmp = d / "last.pt.tmp"
        torch.save(state, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        last, prev = d / "last.pt", d / "prev.pt"
        if last.exists():
            os.replace(last, prev)
            if (d / "last.pt.sha256").exists():
                os.replace(d / "last.pt.sha256", d / "prev.pt.sha256")
        (d / "last.pt.sha256.tmp").write_text(digest + "\n")
        os.replace(tmp, last)
        os.replace(d / "last.pt.sha256.tmp", d / "last.pt.sha256")
        return last

    def _read_checkpoint(self, path: Path) -> dict:
        sha = path.with_name(path.name + ".sha256")
        if not sha.exists():
            raise SearchError(f"{path} has no checksum file")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha.read_text().strip():
            raise SearchError(f"{path} does not match its checksum (truncated or corrupt)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CKPT_FORMAT:
            raise SearchError(f"{path} is not a search checkpoint")
        return state

    def load_checkpoint(self) -> None:
        """Load last.pt, falling back to prev.pt when last.pt is corrupt; the choice is printed."""
        d = self.out / "checkpoints"
        errors = []
        for name in ("last.pt", "prev.pt"):
            p = d / name
            if not p.exists():
                errors.append(f"{p} is missing")
                continue
            try:
                state = self._read_checkpoint(p)
            except Exception as e:  # any failure to read means: do not trust this file
                errors.append(f"{p}: {e}")
                print(f"warning: checkpoint {p} is unusable ({e}); trying the previous one", flush=True)
                continue
            break
        else:
            raise SearchError("no usable checkpoint to resume from:\n  " + "\n  ".join(errors))
        self.net.load_state_dict(state["net"])
        self.pos = Position(**state["position"])
        if self.pos.phase == "search":
            self._new_weight_optimizer()
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.sched.load_state_dict(state["sched"])
        for o, s in zip(self.arch_opts, state["arch_opts"]):
            o.load_state_dict(s)
        self.lam = list(state["lam"])
        torch.set_rng_state(state["torch_rng"])
        self.net.generator.set_state(state["generator"])
        for t in (self.steps_log, self.arch_log, self.epoch_log, self.lam_log):
            t.truncate_after(self.pos.step)
        print(f"resumed from {p.name}: {self.pos.phase} epoch {self.pos.epoch + 1}, step {self.pos.step}", flush=True)


def run_search(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
               max_steps: int | None = None) -> Path:
    """Run a search (or continue one with `resume`) into `out`; returns the run directory."""
    return Searcher(cfg, out, resume=resume, progress=progress).run(max_steps=max_steps)


# -- the collapse study -----------------------------------------------------------------------------
COMPARE_COLUMNS = ["miou", "latency_ms", "fps", "skip_share", "zoomed_share", "first_down_32", "first_down_16",
                   "first_down_8", "removed_layers", "alpha_entropy", "ends"]


def compare_runs(runs: dict[str, str | Path], arch: str = "student") -> pd.DataFrame:
    """Side-by-side per search epoch of `arch` in several runs: mIoU of the chosen pair, predicted
    latency, operator shares, where the branches first go down, alpha entropy."""
    frames = []
    for name, d in runs.items():
        ep = pd.read_csv(Path(d) / "history" / "epochs.csv")
        ep = ep[(ep["arch"] == arch) & (ep["phase"] == "search")].copy()
        ep["miou"] = [r[f"miou_{r['ends']}"] for _, r in ep.iterrows()]
        cols = [c for c in COMPARE_COLUMNS if c in ep]
        frames.append(ep.set_index("epoch")[cols].add_prefix(f"{name}:"))
    return pd.concat(frames, axis=1)


def _run_one(args):
    cfg_json, out = args
    cfg = RunConfig.from_dict(json.loads(cfg_json))
    return str(run_search(cfg, out, progress=False))


def run_collapse(cfg: RunConfig, out: str | Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """The collapse study: the same search with the coarse and the decoupled penalty, at the same
    (fixed) lambda, seed and data; writes ``<out>/coarse``, ``<out>/decoupled`` and ``comparison.csv``.
    `jobs=2` runs both at once (one thread each)."""
    import copy

    out = Path(out)
    cfgs = {}
    for mode in ("coarse", "decoupled"):
        c = copy.deepcopy(cfg)
        c.latency.penalty, c.search.adapt_lambda = mode, False
        if jobs > 1:
            c.search.threads = 1
        cfgs[mode] = c
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
            list(ex.map(_run_one, [(c.to_json(), str(out / m)) for m, c in cfgs.items()]))
    else:
        for m, c in cfgs.items():
            run_search(c, out / m, progress=progress)
    table = compare_runs({m: out / m for m in cfgs})
    table.to_csv(out / "comparison.csv")
    return table


def run_status(out: str | Path, cfg: RunConfig) -> str:
    """``new`` (no run in `out`), ``partial`` (a checkpoint before the end) or ``done``."""
    last = Path(out) / "checkpoints" / "last.pt"
    if not last.exists():
        return "new"
    pos = torch.load(last, map_location="cpu", weights_only=True)["position"]
    return "done" if pos["phase"] == "search" and pos["epoch"] >= cfg.search.search_epochs else "partial"
