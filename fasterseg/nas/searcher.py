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
(`adapt_lambda`). `Searcher` holds the state and the steps (no files); `nas.run.run_search` drives
it in a run folder (`fasterseg.runs`): ``history/{steps,arch,epochs,lambda}.csv``, ``archs/<set>_search_epochNN.json``,
checkpoints. Everything random is seeded: batches by (seed, epoch, step), transforms by (seed, epoch,
index), Gumbel noise and random widths by the supernet's own CPU generator, which is checkpointed.
"""
from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from fasterseg import faults
from fasterseg.config import RunConfig
from fasterseg.latency.expected import ExpectedLatency, LatencyPenalty
from fasterseg.losses import ohem_cross_entropy
from fasterseg.metrics import SegMeter
from fasterseg.nas.losses import downsample_labels, supernet_weight_loss
from fasterseg.nas.records import review_set
from fasterseg.nets.derive import DeriveRules
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.network import upsample_logits
from fasterseg.nets.supernet import PREDICTIONS, Supernet
from fasterseg.runs import Position, RunError
from fasterseg.runtime import Runtime, load_scaler, sync_batch_norm

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
        if self.rt.sync_bn:
            self.net = sync_batch_norm(self.net, self.rt.device)
        self.net.generator = torch.Generator().manual_seed(sc.seed)
        self.expected = [ExpectedLatency(self.space, lut, sw, hw, cfg.data.num_classes, cfg.latency.ends)
                         .to(self.rt.device) for sw, hw in cfg.space.stem_head_widths]
        self.lam = [float(x) for x in sc.lam]
        self.arch_opts = [torch.optim.Adam(self.net.arch_parameters(i), lr=sc.arch_lr, betas=tuple(sc.arch_betas))
                          for i in range(cfg.n_sets)]
        self.new_weight_optimizer()
        # fp16 (runtime.amp) scales the losses so small gradients do not underflow; a no-op otherwise
        self.arch_scaler, self.weight_scaler = self.rt.scaler(), self.rt.scaler()
        self.pos = Position()

    def new_weight_optimizer(self) -> None:
        """A fresh SGD and schedule (each phase starts its own, as the original)."""
        sc = self.cfg.search
        self.weight_opt = torch.optim.SGD(self.net.weight_parameters(), lr=sc.lr, momentum=sc.momentum,
                                          weight_decay=sc.weight_decay)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.weight_opt, sc.lr_decay)

    def _check(self, loss: torch.Tensor, what: str) -> None:
        """Stop every rank at this step when the loss is not finite on any of them (`Runtime.agree`), naming the
        ranks, before the backward pass that would otherwise wait for the stopped ones."""
        codes = self.rt.agree(0 if torch.isfinite(loss) else 1)
        if any(codes):
            p = self.pos
            on = f" on rank {', '.join(str(r) for r, c in enumerate(codes) if c)}" if self.rt.world > 1 else ""
            raise SearchError(f"the {what} loss became {float(loss) if codes[self.rt.rank] else 'nan'}{on} at "
                              f"{p.phase} epoch {p.epoch + 1} step {p.epoch_step + 1}; lower search.lr or "
                              "search.arch_lr, or check the data")

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
            # no weight gradients: not used here
            self.arch_scaler.scale(loss).backward(inputs=list(self.net.arch_parameters(i)))
            self.rt.all_reduce_grads(self.net.arch_parameters(i))
            self.arch_scaler.step(self.arch_opts[i])
            details.update({f"loss_arch_{a.name}": float(loss.detach()), f"lam_{a.name}": self.lam[i],
                            f"latency_weighted_ms_{a.name}": d.get("latency_weighted_ms"),
                            f"latency_full_ms_{a.name}": d["latency_full_ms"]})
        self.arch_scaler.update()
        return details

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, pretrain: bool) -> float:
        """One weight step; architecture gradients are dropped (never clipped or kept)."""
        self.net.zero_grad(set_to_none=True)
        with self.rt.autocast():
            loss, _ = supernet_weight_loss(self.net, x, y, pretrain=pretrain)
        loss = faults.loss(loss, self.rt.rank, self.pos.step + 1)
        self._check(loss, "weight")
        self.weight_scaler.scale(loss).backward(inputs=list(self.net.weight_parameters()))  # no architecture grads
        self.rt.all_reduce_grads(self.net.weight_parameters())
        self.weight_scaler.unscale_(self.weight_opt)
        torch.nn.utils.clip_grad_norm_(self.net.weight_parameters(), self.cfg.search.grad_clip)
        self.weight_scaler.step(self.weight_opt)
        self.weight_scaler.update()
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
        forms = [d for d in self.space.decisions if d != "bilinear8"]  # the two-branch pairs' other up-samplings
        names = list(PREDICTIONS) + [f"{p}@{d}" for p in ("8+32", "16+32") for d in forms]
        meters = [{p: SegMeter(self.cfg.data.num_classes) for p in names} for _ in self.net.arch_sets]
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
                    if p in ("8+32", "16+32"):
                        for d in forms:
                            meters[i][f"{p}@{d}"].update(upsample_logits(v.float(), tuple(y.shape[-2:]), d), y)
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
                "lam": list(self.lam), "torch_rng": torch.get_rng_state(), "generator": self.net.generator.get_state(),
                "arch_scaler": self.arch_scaler.state_dict(), "weight_scaler": self.weight_scaler.state_dict()}

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
        load_scaler(self.arch_scaler, state.get("arch_scaler"))
        load_scaler(self.weight_scaler, state.get("weight_scaler"))


