"""The search: pretraining, then teacher-student co-searching with the latency penalty and adaptive lambda.

Phases (docs/method.md, "Search procedure"):

- **pretrain**: supernet weights only, at max, min and two random widths per step; the architecture
  parameters stay at their initial (uniform) values, so nothing is derived yet.
- **search**: per step, a first-order architecture step (Adam) on a batch from the architecture half of
  the training split -- each set's segmentation loss at its own widths plus its latency penalty
  ``lambda * Lat`` -- then a weight step (SGD, gradient norm clipped over the weights) on a batch from
  the weight half: every set at its own widths plus the max/min sandwich passes.

After each search epoch every set is derived (both branch pairs, priced with the latency table, the pair
with the best mIoU x (latency/target)^-0.07 kept), diagnosed for collapse, and its lambda adapted
(`adapt_lambda`). `Searcher` holds the state and the steps (no files); `run_search` drives it in a run
folder (`fasterseg.runs`): ``history/{steps,arch,epochs,lambda}.csv``, ``archs/<set>_search_epochNN.json``,
checkpoints. Everything random is seeded: batches by (seed, epoch, step), transforms by (seed, epoch,
index), Gumbel noise and random widths by the supernet's own CPU generator, which is checkpointed.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .arch import DeriveRules
from .config import RunConfig
from .data.batching import batch_at, split_train
from .data.cityscapes import build_dataset
from .data.prepare import prepare_data
from .data.transforms import EvalTransform, TrainTransform
from .latency.expected import ExpectedLatency, LatencyPenalty
from .losses import downsample_labels, ohem_cross_entropy, supernet_weight_loss
from .metrics import SegMeter
from .runs import RunDir, RunError, StopFlag
from .runtime import Runtime
from .search_records import (ARCH_COLUMNS, EPOCH_COLUMNS, LAMBDA_COLUMNS, arch_rows, epoch_line, review_set,
                             step_columns)
from .space import SearchSpace
from .supernet import PREDICTIONS, Supernet

SEARCH_SECTIONS = ("data", "space", "latency", "search", "runtime")
PHASES = ("pretrain", "search")


class SearchError(RunError):
    """The search cannot start or continue; the message says why and what was kept."""


def adapt_lambda(lam: float, fps: list[float], fps_min: float, fps_max: float) -> tuple[float, str | None]:
    """The next latency weight of one set from the predicted FPS of its candidate networks (both branch
    pairs): halved when any is above the band's max (the network is fast enough: spend on accuracy),
    doubled when any is below its min, kept otherwise. Returns (new lambda, reason or None)."""
    if any(f >= fps_max for f in fps):
        return lam / 2, f"FPS above the band's max {fps_max:g}"
    if any(f <= fps_min for f in fps):
        return lam * 2, f"FPS below the band's min {fps_min:g}"
    return lam, None


@dataclass
class Position:
    phase: str = "pretrain"
    epoch: int = 0
    epoch_step: int = 0  # steps done in this epoch
    step: int = 0  # global steps done


class Searcher:
    """The state of a search (supernet, optimisers, lambda per set, position) and its steps; no files.

    `lut` is the latency table the penalty and the derivation use; `runtime` says where to compute.
    """

    def __init__(self, cfg: RunConfig, lut, runtime: Runtime | None = None):
        self.cfg, self.lut = cfg, lut
        self.rt = runtime or Runtime(torch.device("cpu"))
        sc = cfg.search
        torch.manual_seed(sc.seed)
        self.space = SearchSpace.from_config(cfg.space)
        self.rules = DeriveRules.from_config(cfg.space)
        self.net = Supernet(self.space, cfg.data.num_classes, cfg.space.stem_head_widths).to(self.rt.device)
        self.net.generator = torch.Generator().manual_seed(sc.seed)
        self.expected = [ExpectedLatency(self.space, lut, sw, hw, cfg.data.num_classes, cfg.latency.ends)
                         .to(self.rt.device) for sw, hw in cfg.space.stem_head_widths]
        self.lam = [float(x) for x in sc.lam]
        self.arch_opts = [torch.optim.Adam(self.net.arch_parameters(i), lr=sc.arch_lr, betas=tuple(sc.arch_betas))
                          for i in range(cfg.n_sets)]
        self.new_weight_optimizer()
        self.pos = Position()

    def new_weight_optimizer(self) -> None:
        """A fresh SGD and schedule (each phase starts its own, as the original)."""
        sc = self.cfg.search
        self.weight_opt = torch.optim.SGD(self.net.weight_parameters(), lr=sc.lr, momentum=sc.momentum,
                                          weight_decay=sc.weight_decay)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.weight_opt, sc.lr_decay)

    def _check(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            p = self.pos
            raise SearchError(f"the {what} loss became {float(loss)} at {p.phase} epoch {p.epoch + 1} step "
                              f"{p.epoch_step + 1}; lower search.lr or search.arch_lr, or check the data")

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One architecture step per set (its own widths, its own penalty); returns the logged values."""
        details = {}
        for i, a in enumerate(self.net.arch_sets):
            self.arch_opts[i].zero_grad(set_to_none=True)
            with self.rt.autocast():
                out = self.net(x, arch_set=i, widths="sampled")
            loss = sum(ohem_cross_entropy(v.float(), y) for v in out.values())
            if self.lam[i] > 0:
                pen, d = LatencyPenalty(self.expected[i], self.lam[i], self.cfg.latency.penalty,
                                        tuple(self.cfg.latency.rates))(a)
                loss = loss + pen
            else:  # no penalty (the teacher): only log the expected latency, without a graph
                with torch.no_grad():
                    d = {"latency_full_ms": float(self.expected[i](a))}
            self._check(loss, f"architecture ({a.name})")
            loss.backward(inputs=list(self.net.arch_parameters(i)))  # no weight gradients: not used here
            self.rt.all_reduce_grads(self.net.arch_parameters(i))
            self.arch_opts[i].step()
            details.update({f"loss_arch_{a.name}": float(loss.detach()), f"lam_{a.name}": self.lam[i],
                            f"latency_weighted_ms_{a.name}": d.get("latency_weighted_ms"),
                            f"latency_full_ms_{a.name}": d["latency_full_ms"]})
        return details

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, pretrain: bool) -> float:
        """One weight step; architecture gradients are dropped (never clipped or kept)."""
        self.net.zero_grad(set_to_none=True)
        with self.rt.autocast():
            loss, _ = supernet_weight_loss(self.net, x, y, pretrain=pretrain)
        self._check(loss, "weight")
        loss.backward(inputs=list(self.net.weight_parameters()))  # no architecture gradients
        self.rt.all_reduce_grads(self.net.weight_parameters())
        torch.nn.utils.clip_grad_norm_(self.net.weight_parameters(), self.cfg.search.grad_clip)
        self.weight_opt.step()
        return float(loss.detach())

    def step(self, phase: str, weight_batch, arch_batch=None) -> dict:
        """One step of `phase`: (search) the architecture step on `arch_batch`, then the weight step on
        `weight_batch`. Batches are (images (N, 3, H, W), labels (N, H, W)); labels are scored at 1/8."""
        row = {"lr": self.weight_opt.param_groups[0]["lr"]}
        if phase == "search":
            xa, ya = self.rt.to(*arch_batch)
            row.update(self.arch_step(xa, downsample_labels(ya)))
        xw, yw = self.rt.to(*weight_batch)
        row["loss_weight"] = self.weight_step(xw, downsample_labels(yw), pretrain=phase == "pretrain")
        return row

    @torch.no_grad()
    def evaluate(self, val, batch: int = 4) -> list[dict[str, float]]:
        """Validation mIoU of the five predictions per set, at max widths while pretraining (nothing is
        searched yet) and at the argmax widths (searched sets) during the search."""
        self.net.eval()
        meters = [{p: SegMeter(self.cfg.data.num_classes) for p in PREDICTIONS} for _ in self.net.arch_sets]
        for k in range(0, len(val), batch):
            xs, ys = zip(*(val[j] for j in range(k, min(k + batch, len(val)))))
            x, y = self.rt.to(torch.stack(xs), torch.stack(ys))
            for i, a in enumerate(self.net.arch_sets):
                mode = "argmax" if a.search_widths and self.pos.phase == "search" else "max"
                with self.rt.autocast():
                    out = self.net(x, arch_set=i, widths=mode)
                for p, v in out.items():
                    meters[i][p].update(F.interpolate(v.float(), size=y.shape[-2:], mode="bilinear",
                                                      align_corners=True), y)
        self.net.train()
        return [{p: m.scores().miou for p, m in ms.items()} for ms in meters]

    def review(self, val, epoch: int, run_name: str) -> tuple[list, list[dict]]:
        """Validate, derive and diagnose every set after an epoch, and adapt lambda (search phase);
        returns the `SetReview`s and the lambda changes (rows of ``lambda.csv``)."""
        phase, sc = self.pos.phase, self.cfg.search
        reviews, changes = [], []
        for i, mious in enumerate(self.evaluate(val)):
            r = review_set(self.net, i, mious, self.cfg, self.lut, self.rules, phase, epoch, self.pos.step,
                           self.lam[i], run_name)
            reviews.append(r)
            if phase == "search" and sc.adapt_lambda and self.lam[i] > 0:
                new, reason = adapt_lambda(self.lam[i], list(r.fps.values()), sc.fps_min[i], sc.fps_max[i])
                if reason:
                    changes.append({"epoch": epoch, "step": self.pos.step, "arch_set": self.net.names[i],
                                    "old": self.lam[i], "new": new, **{f"fps_{k}": v for k, v in r.fps.items()},
                                    "reason": reason})
                    self.lam[i] = new
        return reviews, changes

    def state_dict(self) -> dict:
        return {"position": asdict(self.pos), "net": self.net.state_dict(), "weight_opt": self.weight_opt.state_dict(),
                "sched": self.sched.state_dict(), "arch_opts": [o.state_dict() for o in self.arch_opts],
                "lam": list(self.lam), "torch_rng": torch.get_rng_state(), "generator": self.net.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.pos = Position(**state["position"])
        if self.pos.phase == "search":
            self.new_weight_optimizer()
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.sched.load_state_dict(state["sched"])
        for o, s in zip(self.arch_opts, state["arch_opts"]):
            o.load_state_dict(s)
        self.lam = list(state["lam"])
        torch.set_rng_state(state["torch_rng"])
        self.net.generator.set_state(state["generator"])


def search_data(cfg: RunConfig):
    """(train dataset, val dataset, weight-half indices, arch-half indices) of a search, checked for size
    (the data must be prepared: `fasterseg.data.prepare.prepare_data`)."""
    sc = cfg.search
    train = build_dataset(cfg.data, "train")
    val = build_dataset(cfg.data, "val", EvalTransform(sc.downsample))
    w_idx, a_idx = split_train(len(train), sc.train_portion, sc.seed)
    need = max(sc.batch_size, sc.pretrain_batch_size)
    if min(len(w_idx), len(a_idx)) < need or len(val) == 0:
        raise SearchError(
            f"the data is too small: {len(train)} training images split into {len(w_idx)} for weight steps and "
            f"{len(a_idx)} for architecture steps (search.train_portion {sc.train_portion}), {len(val)} validation "
            f"images; each half needs at least the batch size ({need}). Add images (data.num_train) or lower the "
            "batch size")
    if sc.val_images:
        val.samples = val.samples[: sc.val_images]
    return train, val, w_idx, a_idx


class SearchRun:
    """A `Searcher` driven through both phases in a run folder, with its records and checkpoints."""

    def __init__(self, cfg: RunConfig, run: RunDir, lut, runtime: Runtime, data: tuple, progress: bool = True,
                 on_epoch: Callable[[list[dict]], None] | None = None):
        self.cfg, self.run, self.progress, self.on_epoch = cfg, run, progress, on_epoch
        self.train, self.val, self.w_idx, self.a_idx = data
        self.s = Searcher(cfg, lut, runtime)
        names = self.s.net.names
        self.tables = {"steps": run.table("steps", step_columns(names)), "arch": run.table("arch", ARCH_COLUMNS),
                       "epochs": run.table("epochs", EPOCH_COLUMNS),
                       "lambda": run.table("lambda", LAMBDA_COLUMNS)} if run.main else {}

    def resume(self) -> str:
        state, path = self.run.load_checkpoint()
        self.s.load_state_dict(state)
        for t in self.tables.values():
            t.truncate_after(self.s.pos.step)
        p = self.s.pos
        return f"resumed from {path.name}: {p.phase} epoch {p.epoch + 1}, step {p.step}"

    def save(self) -> Path:
        return self.run.save_checkpoint(self.s.state_dict(), self.s.pos.step)

    def steps_per_epoch(self, phase: str) -> int:
        sc = self.cfg.search
        return sc.steps_per_epoch or max(1, len(self.w_idx) // (sc.pretrain_batch_size if phase == "pretrain"
                                                                 else sc.batch_size))

    def batch(self, indices, batch_size: int, data_epoch: int, step: int, salt: int):
        """This rank's share of the batch of (data epoch, step) from `indices` (salt 1: weights, 2: arch)."""
        rt = self.s.rt
        return batch_at(self.train, indices, batch_size, data_epoch, step, self.cfg.search.seed, salt, rt.rank,
                        rt.world)

    def total_steps(self) -> int:
        sc = self.cfg.search
        return sum(n * self.steps_per_epoch(ph) for ph, n in zip(PHASES, (sc.pretrain_epochs, sc.search_epochs)))

    def run_phases(self, max_steps: int | None = None, stop: StopFlag | None = None) -> str:
        """Run (or continue) both phases; stop after `max_steps` steps of this call, or at the next step
        when `stop` is requested. Returns ``done``, ``capped`` or ``interrupted``."""
        from tqdm.auto import tqdm

        sc, s, rt = self.cfg.search, self.s, self.s.rt
        budget = None if max_steps is None else s.pos.step + max_steps
        if rt.main and s.pos.step == 0 and s.pos.phase == "pretrain" and s.pos.epoch_step == 0:
            self.tables["arch"].add(arch_rows(s.net, 0, "pretrain", 0))
        for phase, n_epochs in list(zip(PHASES, (sc.pretrain_epochs, sc.search_epochs)))[PHASES.index(s.pos.phase):]:
            if phase != s.pos.phase:
                s.pos = Position(phase, 0, 0, s.pos.step)
                s.new_weight_optimizer()
            crop = sc.pretrain_crop if phase == "pretrain" else sc.crop
            self.train.transform = TrainTransform(*crop, sc.scale_min, sc.scale_max, downsample=sc.downsample)
            bs = sc.pretrain_batch_size if phase == "pretrain" else sc.batch_size
            steps = self.steps_per_epoch(phase)
            for epoch in range(s.pos.epoch, n_epochs):
                t0 = time.perf_counter()
                data_epoch = epoch if phase == "pretrain" else sc.pretrain_epochs + epoch  # fresh crops per phase
                bar = tqdm(range(s.pos.epoch_step, steps), desc=f"{phase} {epoch + 1}/{n_epochs}",
                           disable=not (self.progress and rt.main), leave=False)
                for es in bar:
                    if budget is not None and s.pos.step >= budget:
                        return "capped"
                    if stop is not None and stop.requested:
                        return "interrupted"
                    t = time.perf_counter()
                    arch_batch = self.batch(self.a_idx, bs, data_epoch, es, 2) if phase == "search" else None
                    row = s.step(phase, self.batch(self.w_idx, bs, data_epoch, es, 1), arch_batch)
                    s.pos.epoch_step, s.pos.step = es + 1, s.pos.step + 1
                    row.update(step=s.pos.step, phase=phase, epoch=epoch, seconds=time.perf_counter() - t)
                    bar.set_postfix(loss=f"{row['loss_weight']:.2f}")
                    if rt.main:
                        self.tables["steps"].add([row])
                        if phase == "search" and s.pos.step % sc.log_every == 0:
                            self.tables["arch"].add(arch_rows(s.net, s.pos.step, phase, epoch))
                        if s.pos.step % sc.checkpoint_every == 0 and s.pos.epoch_step < steps:
                            self.save()
                s.sched.step()
                self.end_epoch(phase, epoch, time.perf_counter() - t0)
                s.pos = Position(phase, epoch + 1, 0, s.pos.step)
                if rt.main:
                    self.save()
        return "done"

    def end_epoch(self, phase: str, epoch: int, seconds: float) -> None:
        reviews, changes = self.s.review(self.val, epoch, self.run.path.name)
        rows = [r.row for r in reviews]
        if not self.s.rt.main:
            return
        for r in reviews:
            if r.arch is not None:
                r.arch.save(self.run.path / r.row["arch_file"])
        self.tables["epochs"].add(rows)
        self.tables["lambda"].add(changes)
        if self.progress:
            print(epoch_line(phase, epoch, seconds, rows), flush=True)
        if self.on_epoch:
            self.on_epoch(rows)


def run_search(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
               max_steps: int | None = None, on_epoch: Callable[[list[dict]], None] | None = None) -> Path:
    """Run a search into `out` (or continue it with `resume`); returns the run folder.

    The whole config is validated first, then the data prepared and the latency table checked, and only
    then the folder opened (locked). `max_steps` stops after that many steps of this call, with a
    checkpoint. Raises `SearchError`/`RunError`/`ConfigError` with one-line messages; on Ctrl-C or a
    non-finite loss the run is marked stopped/failed and its last checkpoint kept (`runs.drive`).
    Under torchrun every rank calls it; rank 0 writes.
    """
    from .latency import load_for
    from .paths import check_writable
    from .runs import already_done, drive

    say = print if progress else (lambda *a, **k: None)
    cfg.validate(SEARCH_SECTIONS)
    check_writable(out)
    if resume and already_done(out, "search", cfg, SEARCH_SECTIONS):
        say(f"the search in {out} is already complete; nothing to do")
        return Path(out)
    runtime = Runtime.start(cfg.runtime)
    for name in ("batch_size", "pretrain_batch_size"):
        b = getattr(cfg.search, name)
        if b % runtime.world or b // runtime.world < 2:
            raise SearchError(f"search.{name}={b} must split into at least 2 images on each of the {runtime.world} "
                              "processes (batch norm needs more than one image)")
    if runtime.main:
        prepare_data(cfg.data, progress=progress)
    runtime.barrier()
    lut = load_for(cfg, check_fit=True)
    data = search_data(cfg)
    if runtime.main:
        run = RunDir.start(out, "search", cfg, SEARCH_SECTIONS, resume=resume)
    runtime.barrier()
    if not runtime.main:
        run = RunDir.attach(out, "search")
    try:
        sr = SearchRun(cfg, run, lut, runtime, data, progress, on_epoch)
        if resume and any(run.checkpoints.paths()):
            msg = sr.resume()
            if runtime.main:
                say(msg)
        drive(run, lambda stop: sr.run_phases(max_steps, stop), sr.save, lambda: sr.s.pos.step, sr.total_steps(),
              max_steps, SearchError, say)
    finally:
        run.close()
    return run.path
