"""A search run: a `Searcher` driven through pretraining and search in a run folder (`fasterseg.runs`).

`run_search` validates the config, prepares the data, checks the latency table, opens (locks) the folder and
drives the phases, writing ``history/{steps,arch,epochs,lambda}.csv``, ``archs/<set>_search_epochNN.json`` and
checkpoints; Ctrl-C, a non-finite loss or a step cap stop it with a checkpoint (`runs.drive`); `resume=True`
continues it.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from fasterseg.config import RunConfig
from fasterseg.config_checks import world_problems
from fasterseg.data.batching import batch_at, split_train
from fasterseg.data.cityscapes import build_dataset
from fasterseg.data.prepare import data_digest, label_warning, prepare_data
from fasterseg.data.transforms import EvalTransform, TrainTransform
from fasterseg.latency import load_for
from fasterseg.latency.table import sidecar
from fasterseg.nas.records import ARCH_COLUMNS, EPOCH_COLUMNS, LAMBDA_COLUMNS, arch_rows, epoch_line, step_columns
from fasterseg.nas.searcher import PHASES, SEARCH_SECTIONS, Searcher, SearchError
from fasterseg.nets.footprint import check_run
from fasterseg.paths import check_writable, file_digest, resolve
from fasterseg.runs import (Position, RunDir, RunLoop, StopFlag, already_done, check_same_config,
                            resume_and_drive)
from fasterseg.runtime import Runtime


def search_data(cfg: RunConfig):
    """(train dataset, val dataset, weight-half indices, arch-half indices) of a search, checked for size
    (the data must be prepared: `fasterseg.data.prepare.prepare_data`)."""
    sc = cfg.search
    train = build_dataset(cfg.data, "train")
    val = build_dataset(cfg.data, "val", EvalTransform(sc.downsample))
    w_idx, a_idx = split_train(len(train), sc.train_portion, sc.seed)
    need = max(sc.batch_size, sc.pretrain_batch_size)
    if min(len(w_idx), len(a_idx)) < need or len(val) == 0:
        more = ("raise data.num_train (and data.num_val)" if cfg.data.dataset == "synthetic" else
                f"add images to the {cfg.data.dataset} tree at data.root={cfg.data.root}")
        raise SearchError(
            f"the data is too small: {len(train)} training images split into {len(w_idx)} for weight steps and "
            f"{len(a_idx)} for architecture steps (search.train_portion {sc.train_portion}), {len(val)} validation "
            f"images; each half needs at least the batch size ({need}). Lower search.batch_size and "
            f"search.pretrain_batch_size, or {more}")
    if sc.val_images:
        val.samples = val.samples[: sc.val_images]
    return train, val, w_idx, a_idx


class SearchRun(RunLoop):
    """A `Searcher` driven through both phases in a run folder, with its records and checkpoints."""

    def __init__(self, cfg: RunConfig, run: RunDir, lut, runtime: Runtime, data: tuple, progress: bool = True,
                 on_epoch: Callable[[list[dict]], None] | None = None):
        self.cfg, self.run, self.progress, self.on_epoch = cfg, run, progress, on_epoch
        self.train, self.val, self.w_idx, self.a_idx = data
        self.s = Searcher(cfg, lut, runtime)
        names = self.s.net.names
        super().__init__(run, self.s, {"steps": run.table("steps", step_columns(names)),
                                       "arch": run.table("arch", ARCH_COLUMNS),
                                       "epochs": run.table("epochs", EPOCH_COLUMNS),
                                       "lambda": run.table("lambda", LAMBDA_COLUMNS)} if run.main else {})

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
                    if rt.agree(2 if stop is not None and stop.requested else 0) != [0] * rt.world:
                        return "interrupted"
                    t = time.perf_counter()
                    arch_batch = self.batch(self.a_idx, bs, data_epoch, es, 2) if phase == "search" else None
                    row = s.step(phase, self.batch(self.w_idx, bs, data_epoch, es, 1), arch_batch)
                    s.pos.epoch_step, s.pos.step = es + 1, s.pos.step + 1
                    row.update(step=s.pos.step, phase=phase, epoch=epoch, seconds=time.perf_counter() - t)
                    bar.set_postfix(loss=f"{row['loss_weight']:.2f}")
                    if rt.main:
                        self.tables["steps"].add([row])
                        self.tracker.scalars(s.pos.step, row, "step")
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
        step = self.s.pos.step
        for row in rows:
            self.tracker.scalars(step, row, f"epoch/{row['arch_set']}")
        for a in self.s.net.arch_sets:
            for name, prob in a.probabilities().items():
                self.tracker.histogram(f"{a.name}/{name}", prob.ravel(), step)
        if self.progress:
            print(epoch_line(phase, epoch, seconds, rows), flush=True)
        if self.on_epoch:
            self.on_epoch(rows)


def run_search(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
               max_steps: int | None = None, on_epoch: Callable[[list[dict]], None] | None = None,
               restart: bool = False) -> Path:
    """Run a search into `out` (or continue it with `resume`); returns the run folder.

    The whole config is validated first, then the data prepared and the latency table checked, and only
    then the folder opened (locked). `max_steps` stops after that many steps of this call, with a
    checkpoint. Raises `SearchError`/`RunError`/`ConfigError` with one-line messages; on Ctrl-C or a
    non-finite loss the run is marked stopped/failed and its last checkpoint kept (`runs.drive`).
    Under torchrun every rank calls it; rank 0 writes. A resume checks the config, then that the data and the
    latency table are those the run started with (digests in ``run.json``); `restart` starts the run in `out`
    over (its records cleared).
    """
    say = print if progress else (lambda *a, **k: None)
    check_run(cfg, SEARCH_SECTIONS)
    check_writable(out)
    if resume and not restart and (Path(out) / "config.json").exists():
        check_same_config(Path(out), "search", cfg, SEARCH_SECTIONS)  # before any data is prepared
    if resume and not restart and already_done(out, "search", cfg, SEARCH_SECTIONS):
        say(f"the search in {out} is already complete; nothing to do")
        return Path(out)
    runtime = Runtime.start(cfg.runtime)
    problems = world_problems(cfg, "search", runtime.world)
    if problems:
        raise SearchError("; ".join(problems))
    if runtime.main:
        prepare_data(cfg.data, progress=progress)
        warning = label_warning(cfg.data)
        if warning:
            warnings.warn(warning, stacklevel=2)
    runtime.barrier()
    lut = load_for(cfg, check_fit=True)
    lut_path = resolve(cfg.latency.table)
    data = search_data(cfg)
    if runtime.main:
        inputs = {"data": data_digest(cfg.data), "latency_table": file_digest(lut_path, sidecar(lut_path))}
        run = RunDir.start(out, "search", cfg, SEARCH_SECTIONS, resume=resume, device=runtime.device, inputs=inputs,
                           restart=restart)
    runtime.barrier()
    if not runtime.main:
        run = RunDir.attach(out, "search")
    try:
        sr = SearchRun(cfg, run, lut, runtime, data, progress, on_epoch)
        resume_and_drive(sr, run, resume and not restart, runtime.main, lambda stop: sr.run_phases(max_steps, stop),
                         lambda: sr.s.pos.step, max_steps, SearchError, say, cfg.runtime.tensorboard)
    finally:
        if "sr" in locals():
            sr.tracker.close()
        run.close()
    runtime.barrier()  # the other ranks return when rank 0 has written the last records
    return run.path
