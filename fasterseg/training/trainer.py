"""Training a network from scratch (docs/method.md §9), optionally distilled from a teacher run.

Loss per micro-batch: OHEM cross-entropy on the final logits plus ``train.aux_weight`` x OHEM on the
auxiliary 1/16 and 1/32 heads, all up-sampled to the crop (threshold ``train.ohem_thresh``, at least
``train.ohem_keep`` x N*H*W pixels kept, label 255 ignored), plus the distillation term
(`distill.kd_loss`) when a teacher is given. SGD with momentum and weight decay, lr x ``lr_decay`` per
epoch, Kaiming (fan-in) initialisation, no pretrained weights.

A run folder (`fasterseg.runs`) holds ``model.json`` (what is trained: an architecture or a peer, and the
teacher), ``history/steps.csv`` and ``history/epochs.csv`` (validation mIoU every ``val_every`` epochs, and
after the first and the last), checkpoint generations of ``last`` and of ``best`` (best validation mIoU),
and at the end ``model_best.pt``/``model_last.pt`` (state dicts, ``weights_only``). Batches are a pure
function of (seed, epoch, step), prepared ahead in ``runtime.workers`` processes (pinned memory on CUDA),
so a resumed run equals an uninterrupted one. Under ``torchrun`` the
global batch is split across ranks (DistributedDataParallel averages the gradients), which equals one
process accumulating the same micro-batches (``train.accumulate``).
"""
from __future__ import annotations

import contextlib
import io
import hashlib
import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fasterseg import faults
from fasterseg.config import RunConfig
from fasterseg.config_checks import world_problems
from fasterseg.data.batching import chunk, epoch_batches
from fasterseg.data.cityscapes import build_dataset
from fasterseg.data.labels import overlay, palette
from fasterseg.data.prepare import data_digest, label_warning, prepare_data
from fasterseg.data.transforms import EvalTransform, TrainTransform
from fasterseg.evaluation.scores import evaluate_model
from fasterseg.losses import segmentation_loss
from fasterseg.nets.build import build_model, kaiming_init, load_state, model_spec, model_weights_path, predict_logits
from fasterseg.nets.footprint import check_run
from fasterseg.paths import check_writable, display_path, file_digest
from fasterseg.runs import (Position, RunDir, RunError, RunLock, RunLoop, StopFlag, already_done, atomic_write,
                            check_same_config, read_info, resume_and_drive)
from fasterseg.runtime import Runtime, load_scaler, sync_batch_norm
from fasterseg.training.distill import Teacher, kd_loss

TRAIN_SECTIONS = ("data", "train", "distill", "runtime")
EXPLODING_LOSS = 1e3  # a step loss above this (cross-entropy starts near ln(19) ~ 3) stops the run
EPOCH_COLUMNS = ["epoch", "step", "lr", "loss", "val_miou", "val_pixel_accuracy", "best_miou", "seconds"]
STEP_COLUMNS = ["step", "epoch", "lr", "loss", "loss_main", "loss_aux", "loss_kd", "seconds"]


class TrainError(RunError):
    """Training cannot start or continue; the message says why and what was kept."""


# -- what is trained ---------------------------------------------------------------------------------------


# -- the trainer -----------------------------------------------------------------------------------------
class Trainer:
    """The state of one training (model, optimiser, schedule, position) and its step; no files."""

    def __init__(self, cfg: RunConfig, model: nn.Module, runtime: Runtime, teacher: Teacher | None = None):
        self.cfg, self.rt, self.teacher = cfg, runtime, teacher
        tc = cfg.train
        self.model = model.to(runtime.device)
        if runtime.sync_bn:
            self.model = sync_batch_norm(self.model, runtime.device)
        self.net = self.model
        if runtime.world > 1:
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            # some peers carry heads the two-head loss does not use (BiSeNetV2 has four boosters)
            unused = getattr(self.model, "has_unused_heads", False)
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=unused)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=tc.lr, momentum=tc.momentum,
                                   weight_decay=tc.weight_decay)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, tc.lr_decay)
        self.scaler = runtime.scaler()
        self.pos = Position("train")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One optimiser step on this rank's batch (N, 3, H, W), (N, H, W), in ``train.accumulate``
        micro-batches; returns the logged losses (means over the micro-batches)."""
        tc, d = self.cfg.train, self.cfg.distill
        self.opt.zero_grad(set_to_none=True)
        parts = {"loss": 0.0, "loss_main": 0.0, "loss_aux": 0.0, "loss_kd": 0.0}
        n = tc.accumulate
        for k in range(n):
            xm, ym = self.rt.to(*(t[chunk(list(range(len(t))), k, n)] for t in (x, y)))
            sync = k == n - 1 or self.rt.world == 1
            with (self.net.no_sync() if not sync else _null()):
                with self.rt.autocast():
                    outputs = self.net(xm, aux=True)
                loss, p = segmentation_loss(outputs, ym, tc)
                if self.teacher is not None and d.weight > 0:
                    with self.rt.autocast():
                        zt = self.teacher(xm)
                    kd = kd_loss(outputs[0], zt, d.temperature, d.reduction)
                    p["loss_kd"] = float(kd.detach())
                    loss = loss + d.weight * kd
                loss = faults.loss(loss, self.rt.rank, self.pos.step + 1)
                self._check(loss)
                self.scaler.scale(loss / n).backward()
            for key in p:
                parts[key] += p[key] / n
            parts["loss"] += float(loss.detach()) / n
        if tc.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return parts

    def _check(self, loss: torch.Tensor) -> None:
        """Stop every rank at this step when the loss is not finite or explodes on any of them (`Runtime.agree`),
        naming the ranks, before the backward pass that would otherwise wait for the stopped ones."""
        v = float(loss.detach())
        codes = self.rt.agree(0 if np.isfinite(v) and v <= EXPLODING_LOSS else 1)
        if any(codes):
            what = ("became " + str(v) if not np.isfinite(v) else f"exploded to {v:.3g} (> {EXPLODING_LOSS:g})") \
                if codes[self.rt.rank] else "became non-finite or exploded"
            on = f" on rank {', '.join(str(r) for r, c in enumerate(codes) if c)}" if self.rt.world > 1 else ""
            raise TrainError(f"the training loss {what}{on} at epoch {self.pos.epoch + 1} step "
                             f"{self.pos.epoch_step + 1} (global step {self.pos.step + 1}); lower train.lr or check "
                             "the data")

    def validate(self, val) -> tuple[float, float]:
        """(mIoU, pixel accuracy) on the validation split, whole images at full resolution."""
        e = self.cfg.eval
        scores, _ = evaluate_model(self.model, val, self.cfg.data.num_classes, flip=False, batch_size=e.batch_size,
                                   images=self.cfg.train.val_images, runtime=self.rt)
        return scores.miou, scores.pixel_accuracy

    def state_dict(self) -> dict:
        return {"position": asdict(self.pos), "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        load_scaler(self.scaler, state.get("scaler"))
        torch.set_rng_state(state["torch_rng"])
        self.pos = Position(**state["position"])


def _null():
    return contextlib.nullcontext()


# -- the run ---------------------------------------------------------------------------------------------
class TrainRun(RunLoop):
    """A `Trainer` driven through its epochs in a run folder, with records, validation and checkpoints."""

    def __init__(self, cfg: RunConfig, run: RunDir, trainer: Trainer, progress: bool = True,
                 on_step: Callable[[dict], None] | None = None, on_epoch: Callable[[dict], None] | None = None):
        super().__init__(run, trainer, {"steps": run.table("steps", STEP_COLUMNS),
                                        "epochs": run.table("epochs", EPOCH_COLUMNS)} if run.main else {})
        self.cfg, self.t, self.progress = cfg, trainer, progress
        self.on_step, self.on_epoch = on_step, on_epoch
        tc = cfg.train
        self.train = build_dataset(cfg.data, "train", TrainTransform(*tc.crop, tc.scale_min, tc.scale_max,
                                                                     flip=tc.flip))
        self.val = build_dataset(cfg.data, "val", EvalTransform())
        self.colours = palette(cfg.data.dataset, cfg.data.num_classes)
        self.indices = np.arange(len(self.train))

    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.cfg.train.steps_per_epoch

    def loop(self, max_steps: int | None, stop: StopFlag | None) -> str:
        tc, t, rt = self.cfg.train, self.t, self.t.rt
        budget = None if max_steps is None else t.pos.step + max_steps
        for epoch in range(t.pos.epoch, tc.epochs):
            t0, losses = time.perf_counter(), []
            first = t.pos.epoch_step
            batches = epoch_batches(self.train, self.indices, tc.batch_size, epoch, first, tc.steps_per_epoch, tc.seed,
                                    3, rt.workers, rt.pin_memory, rt.rank, rt.world)
            bar = tqdm(zip(range(first, tc.steps_per_epoch), batches), total=tc.steps_per_epoch - first,
                       desc=f"train {epoch + 1}/{tc.epochs}", disable=not (self.progress and rt.main), leave=False)
            for es, (x, y) in bar:
                if budget is not None and t.pos.step >= budget:
                    return "capped"
                if rt.agree(2 if stop is not None and stop.requested else 0) != [0] * rt.world:
                    return "interrupted"
                ts = time.perf_counter()
                row = {"lr": t.opt.param_groups[0]["lr"], **t.step(x, y)}
                t.pos.epoch_step, t.pos.step = es + 1, t.pos.step + 1
                row.update(step=t.pos.step, epoch=epoch, seconds=time.perf_counter() - ts)
                losses.append(row["loss"])
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                if rt.main:
                    self.tables["steps"].add([row])
                    self.tracker.scalars(t.pos.step, row, "step")
                    if self.on_step:
                        self.on_step(row)
                    if t.pos.step % tc.checkpoint_every == 0 and t.pos.epoch_step < tc.steps_per_epoch:
                        self.save()
            t.sched.step()
            self.end_epoch(epoch, losses, time.perf_counter() - t0)
        return "done"

    def end_epoch(self, epoch: int, losses: list[float], seconds: float) -> None:
        tc, t = self.cfg.train, self.t
        row = {"epoch": epoch, "step": t.pos.step, "lr": t.opt.param_groups[0]["lr"],
               "loss": float(np.mean(losses)) if losses else float("nan"), "seconds": seconds}
        if epoch == 0 or (epoch + 1) % tc.val_every == 0 or epoch == tc.epochs - 1:
            row["val_miou"], row["val_pixel_accuracy"] = t.validate(self.val)
            if row["val_miou"] > t.pos.best_miou:
                t.pos.best_miou, t.pos.best_epoch = row["val_miou"], epoch
                t.pos.epoch, t.pos.epoch_step = epoch + 1, 0
                self.save("best")
        row["best_miou"] = t.pos.best_miou
        t.pos.epoch, t.pos.epoch_step = epoch + 1, 0
        self.save()
        if not self.run.main:
            return
        self.tables["epochs"].add([row])
        self.tracker.scalars(t.pos.step, row, "epoch")
        if "val_miou" in row and self.tracker.writer is not None:
            for i, (img, pred) in enumerate(self.val_predictions(2)):
                self.tracker.image(f"val/prediction_{i}", np.concatenate([img, overlay(img, pred, self.colours)], 1),
                                   t.pos.step)
        if self.progress:
            val = (f" | val mIoU {100 * row['val_miou']:.1f} (best {100 * t.pos.best_miou:.1f})"
                   if "val_miou" in row else "")
            print(f"[train {epoch + 1}/{tc.epochs}] {seconds:.0f} s | loss {row['loss']:.3f} | lr {row['lr']:.3g}{val}",
                  flush=True)
        if self.on_epoch:
            self.on_epoch(row)

    def val_predictions(self, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(image, predicted class map) of the first `n` validation images, for TensorBoard."""
        out = []
        self.t.model.eval()
        for i in range(min(n, len(self.val))):
            img, _ = self.val.load(i)
            x, _ = self.val[i]
            logits = predict_logits(self.t.model, x[None].to(self.t.rt.device))
            out.append((img, logits.argmax(1)[0, :img.shape[0], :img.shape[1]].cpu().numpy().astype(np.uint8)))
        self.t.model.train()
        return out

    def write_weights(self) -> None:
        """model_last.pt and model_best.pt: state dicts of the final and of the best-validated model."""
        if not self.run.main:
            return
        for which, state in (("last", self.t.model.state_dict()),
                             ("best", self.run.load_checkpoint("best")[0]["model"])):
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write(model_weights_path(self.run.path, which), buf.getvalue())
            faults.hit("weights.written")


def run_train(cfg: RunConfig, model: str | Path | dict, out: str | Path, resume: bool = False,
              teacher: str | Path | None = None, progress: bool = True, max_steps: int | None = None,
              on_step: Callable[[dict], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
              restart: bool = False) -> Path:
    """Train `model` (see `model_spec`) from scratch into the run folder `out`, distilled from the finished
    training run `teacher` when given; `resume` continues it. Returns the run folder. Like `run_search`:
    validates everything first, refuses another run's folder or a changed config, model or input (data,
    architecture, teacher weights), stops cleanly on Ctrl-C/SIGTERM, a non-finite or exploding loss, or after
    `max_steps` steps of this call. A finished run whose final weights are missing is repaired from its
    checkpoints; `restart` starts the run in `out` over."""
    say = print if progress else (lambda *a, **k: None)
    check_run(cfg, TRAIN_SECTIONS + ("eval",))
    tc = cfg.train
    runtime = Runtime.start(cfg.runtime)
    problems = world_problems(cfg, "train", runtime.world)
    if problems:
        raise TrainError("; ".join(problems))
    check_writable(out)
    out = Path(out)
    spec = model_spec(model, cfg.data.num_classes)
    if teacher is not None:
        spec = {**spec, "teacher": display_path(teacher)}
    if resume and not restart and (out / "config.json").exists():
        check_same_config(out, "train", cfg, TRAIN_SECTIONS)  # before any data is prepared
    if resume and not restart and already_done(out, "train", cfg, TRAIN_SECTIONS):
        _check_same_model(out, spec)
        if runtime.main and not weights_complete(out):
            say(repair_weights(out))
        else:
            say(f"the training in {out} is already complete; nothing to do")
        runtime.barrier()
        return out
    if runtime.main:
        prepare_data(cfg.data, progress=progress)
        warning = label_warning(cfg.data)
        if warning:
            warnings.warn(warning, stacklevel=2)
    teach = Teacher(teacher, cfg.data.num_classes, cfg.data, str(model), runtime.device) if teacher else None
    torch.manual_seed(tc.seed)
    net = build_model(spec, cfg.data.num_classes)
    kaiming_init(net)
    runtime.barrier()
    if runtime.main:
        if resume:
            _check_same_model(out, spec)
        inputs = {"data": data_digest(cfg.data), "model": hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
                  .hexdigest()}
        if teacher is not None:
            inputs["teacher_weights"] = file_digest(model_weights_path(teacher))
        run = RunDir.start(out, "train", cfg, TRAIN_SECTIONS, resume=resume, device=runtime.device, inputs=inputs,
                           restart=restart)
        if not resume or restart:
            (out / "model.json").write_text(json.dumps(spec, indent=1) + "\n")
    runtime.barrier()
    if not runtime.main:
        run = RunDir.attach(out, "train")
    try:
        tr = TrainRun(cfg, run, Trainer(cfg, net, runtime, teach), progress, on_step, on_epoch)
        resume_and_drive(tr, run, resume and not restart, runtime.main, lambda stop: tr.loop(max_steps, stop),
                         lambda: tr.t.pos.step, max_steps, TrainError, say, cfg.runtime.tensorboard,
                         finish=tr.write_weights)
    finally:
        if "tr" in locals():
            tr.tracker.close()
        run.close()
    runtime.barrier()  # the other ranks return when rank 0 has written the weights and marked the run done
    return out


def weights_complete(run: Path) -> bool:
    """Whether a training run's ``model_best.pt`` and ``model_last.pt`` are there and readable."""
    try:
        for which in ("best", "last"):
            load_state(model_weights_path(run, which))
    except RunError:
        return False
    return True


def repair_weights(out: Path) -> str:
    """A run marked done without its final weights (a kit version that wrote them after the status, or a deleted
    file): rewrite them from the run's final checkpoints, or name the fix."""
    run = RunDir(out, "train", RunLock(out, "fasterseg train (repair)"), read_info(out))
    try:
        last, _ = run.load_checkpoint("last")
        best, _ = run.load_checkpoint("best")
    except RunError as e:
        run.close()
        raise TrainError(f"{out} is marked done but its final weights are missing and cannot be rebuilt ({e}); "
                         f"train it again with --restart --out {out}") from None
    try:
        for which, state in (("last", last["model"]), ("best", best["model"])):
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write(model_weights_path(out, which), buf.getvalue())
    finally:
        run.close()
    return f"repaired {out}: model_last.pt and model_best.pt rewritten from its final checkpoints"


def stored_model(out: Path, resume: bool, teacher: str | None = None) -> tuple[dict, str | None]:
    """For ``--resume`` without ``--model``: the model (and teacher) the run in `out` was started with."""
    if not (resume and (Path(out) / "model.json").exists()):
        raise ValueError("name the network to train: --model <architecture JSON | published name | peer:NAME>")
    spec = json.loads((Path(out) / "model.json").read_text())
    return spec, teacher or spec.pop("teacher", None)


def _check_same_model(out: Path, spec: dict) -> None:
    f = out / "model.json"
    if not f.exists():
        return
    stored = json.loads(f.read_text())
    if stored != json.loads(json.dumps(spec)):
        diff = sorted(k for k in set(stored) | set(spec) if stored.get(k) != json.loads(json.dumps(spec)).get(k))
        raise TrainError(f"the run in {out} trains another model ({f} differs in {', '.join(diff)}); resume with "
                         "the same --model and --teacher, or choose another --out")
