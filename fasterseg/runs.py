"""Run folders: the records every long job (search, training) keeps, and the readers plots use.

A run folder holds::

    run.json            kind (search | train), id, status (running | stopped | failed | done), progress
    config.json         the config sections the run uses (compared on resume)
    run.lock            held (flock) by the process running it: a second process is refused
    history/*.csv       append-only tables (one row per step, epoch, ...)
    archs/*.json        architecture snapshots
    checkpoints/        <tag>-<step>.pt with .sha256 sidecars, written atomically, kept in generations

Guarantees: a run folder is only written by the process holding its lock; a resumed run must have the
same config (the ``runtime`` section aside) and its checkpoints must carry the run's id; checkpoint
writes are atomic and fsynced and old generations are deleted only after a new one is complete, so a
crash at any point leaves the last complete checkpoint usable; a corrupt one is detected by its checksum
and the previous one is used, with a warning.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from fasterseg import faults
from fasterseg.config import RunConfig
from fasterseg.paths import check_writable
from fasterseg.runtime import PeerLost
from fasterseg.tracking import Tracker, provenance

RUN_FORMAT = "fasterseg-run"
RUNTIME_SECTIONS = ("runtime",)  # may differ when a run is resumed


class RunError(RuntimeError):
    """A run cannot start, continue or be read; the message says why and what was kept."""


# -- files -------------------------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file (``.<name>.tmp``), fsync it, rename it over `path`, fsync the
    folder: `path` holds either its old or its new content, never a part. A full disk is named with the folder,
    the space needed and the space left (the partial temporary file removed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        faults.hit("atomic_write.tmp")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            free = shutil.disk_usage(path.parent).free
            raise RunError(f"the disk of {path.parent} is full: writing {path.name} needs {len(data) / 1e6:.1f} MB, "
                           f"{free / 1e6:.1f} MB are free; free some space (or choose another --out) and resume") \
                from None
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_tmp(folder: Path) -> int:
    """Delete the kit's partial temporary files (``.<name>.tmp``, from a write a crash cut short) under a run
    folder this process holds; returns how many."""
    n = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink()
            n += 1
    return n


class Table:
    """An append-only CSV with a fixed header (rows flushed as written)."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = Path(path), list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)

    def add(self, rows: list[dict]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerows(rows)

    def read(self) -> pd.DataFrame:
        return read_csv(self.path)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a resumed run replays them)."""
        df = self.read()
        if "step" in df and len(df):
            df[df["step"] <= step].to_csv(self.path, index=False)


# -- checkpoints -----------------------------------------------------------------------------------------
class Checkpoints:
    """Generations of checkpoints in one folder: ``<tag>-<step:08d>.pt`` plus ``.sha256``.

    `save` writes a new generation (file, then checksum, each atomically) and only then deletes the
    tag's generations beyond `keep`; `load` tries the newest first and falls back to older ones when a
    file is missing its checksum, does not match it, or fails `check`. Files are read with
    ``torch.load(weights_only=True)``.
    """

    def __init__(self, folder: Path, fmt: str, keep: int = 2):
        self.folder, self.fmt, self.keep = Path(folder), fmt, keep

    def paths(self, tag: str = "last") -> list[Path]:
        """Checkpoint files of `tag`, newest first."""
        return sorted(self.folder.glob(f"{tag}-*.pt"), reverse=True)

    def save(self, state: dict, step: int, tag: str = "last") -> Path:
        """A new generation (file, then checksum, each atomically); then the tag's generations beyond the `keep`
        newest *usable* ones are deleted (a file without a matching checksum never counts as a generation, and
        one older than the newest usable one is deleted)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"format": self.fmt, **state}, buf)
        data = buf.getvalue()
        path = self.folder / f"{tag}-{step:08d}.pt"
        atomic_write(path, data)
        faults.hit("checkpoint.written")
        atomic_write(path.with_name(path.name + ".sha256"), (hashlib.sha256(data).hexdigest() + "\n").encode())
        kept = 0
        for p in self.paths(tag):
            if kept < self.keep and self.usable(p):
                kept += 1
                continue
            if kept:  # older than a usable generation: superseded, or a file no resume could use
                p.with_name(p.name + ".sha256").unlink(missing_ok=True)
                p.unlink(missing_ok=True)
        return path

    def usable(self, path: Path) -> bool:
        """Whether `path` has its checksum file and matches it (what `read` checks first)."""
        sha = path.with_name(path.name + ".sha256")
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() == sha.read_text().strip()
        except OSError:
            return False

    def read(self, path: Path) -> dict:
        """One checkpoint, verified against its checksum and format; raises `RunError` otherwise."""
        sha = path.with_name(path.name + ".sha256")
        if not sha.exists():
            raise RunError(f"{path.name} has no checksum file (its write was interrupted)")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha.read_text().strip():
            raise RunError(f"{path.name} does not match its checksum (truncated or corrupt)")

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != self.fmt:
            raise RunError(f"{path.name} is not a {self.fmt}")
        return state

    def load(self, tag: str = "last", check: Callable[[dict, Path], None] | None = None,
             warn: Callable[[str], None] = print) -> tuple[dict, Path]:
        """The newest usable checkpoint of `tag` and its path. `check(state, path)` may raise `RunError`
        to refuse one (e.g. another run's); a refused or unreadable file is reported through `warn`."""
        errors = []
        for p in self.paths(tag):
            try:
                state = self.read(p)
                if check is not None:
                    check(state, p)
                return state, p
            except RunError as e:
                errors.append(str(e))
                warn(f"warning: checkpoint {p} is unusable ({e}); trying the previous one")
            except Exception as e:  # noqa: BLE001 - any failure to read means: do not trust this file
                why = ("it holds Python objects, not only tensors: not loaded" if "weights_only" in str(e) else
                       (str(e).splitlines() or [type(e).__name__])[0])
                errors.append(f"{p.name}: {why}")
                warn(f"warning: checkpoint {p} is unusable ({why}); trying the previous one")
        found = "; ".join(errors) if errors else f"no {tag}-*.pt files"
        raise RunError(f"no usable checkpoint to resume from in {self.folder} ({found})")


# -- where a run stands ---------------------------------------------------------------------------------
@dataclass
class Position:
    """Where a search or a training stands: its phase (``pretrain``/``search``, or ``train``), the epoch, the steps
    done in that epoch and in all; a training also keeps its best validation mIoU and that epoch."""

    phase: str = "pretrain"
    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    best_miou: float = -1.0
    best_epoch: int = -1

    def describe(self) -> str:
        return f"{self.phase} epoch {self.epoch + 1}, step {self.step}"


class RunLoop:
    """An engine (`Searcher`, `Trainer`: ``pos``, ``state_dict``, ``load_state_dict``) driven in a run folder:
    its history tables, checkpoint writes (rank 0 only) and resumption (history rows after the checkpoint's step
    are dropped: the resumed run writes them again)."""

    def __init__(self, run: "RunDir", engine, tables: dict[str, "Table"]):
        self.run, self.engine, self.tables = run, engine, tables
        self.tracker = Tracker(run.path, enabled=False)

    def start_tracking(self, enabled: bool) -> None:
        """TensorBoard events from here on (rank 0 only); events after the resumed step are purged."""
        self.tracker = Tracker(self.run.path, enabled and self.run.main, purge_step=self.engine.pos.step + 1)

    def save(self, tag: str = "last") -> Path | None:
        if not self.run.main:
            return None
        return self.run.save_checkpoint(self.engine.state_dict(), self.engine.pos.step, tag)

    def resume(self) -> str:
        state, path = self.run.load_checkpoint()
        self.engine.load_state_dict(state)
        for t in self.tables.values():
            t.truncate_after(self.engine.pos.step)
        return f"resumed from {path.name}: {self.engine.pos.describe()}"

    def total_steps(self) -> int:
        raise NotImplementedError


# -- the lock --------------------------------------------------------------------------------------------
class RunLock:
    """An exclusive `flock` on ``run.lock``; released when closed or when the process dies."""

    def __init__(self, folder: Path, what: str):
        self.path = folder / "run.lock"
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise RunError(f"{folder} is in use by {holder}; wait for it to finish or choose another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} ({what}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


# -- interruption ----------------------------------------------------------------------------------------
class StopFlag:
    """While entered (in the main thread), Ctrl-C or SIGTERM (what schedulers and torchrun send) asks a run to stop
    at the next step boundary, where its state is consistent and can be saved; a second signal interrupts at once
    (`KeyboardInterrupt`). Under torchrun the ranks agree on the flag at every step (`Runtime.agree`)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        what = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if os.environ.get("RANK", "0") == "0":
            print(f"\n{what}: stopping after this step to save a checkpoint (again to stop at once)", file=sys.stderr,
                  flush=True)

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


# -- run folders -----------------------------------------------------------------------------------------
class RunDir:
    """An open run folder of one `kind`, locked by this process (see the module docstring).

    `start` creates or continues a run: a new run refuses a folder that holds a run (of any kind) with a
    checkpoint, and clears the records of one that died before its first checkpoint; `resume=True`
    requires a run of the same kind whose stored config equals `cfg` on `sections` (``runtime`` aside).
    """

    def __init__(self, path: Path, kind: str, lock: RunLock | None, info: dict):
        self.path, self.kind, self.lock, self.info = Path(path), kind, lock, info
        self.main = lock is not None  # only the process holding the lock writes
        self.checkpoints = Checkpoints(self.path / "checkpoints", f"fasterseg-{kind}-checkpoint")

    @classmethod
    def attach(cls, path: str | Path, kind: str) -> "RunDir":
        """The run folder as seen by a data-parallel rank other than 0: read-only, no lock (rank 0 holds
        it and writes every record)."""
        info = read_info(path)
        if info is None or info.get("kind") != kind:
            raise RunError(f"{path} holds no {kind} run that rank 0 opened")
        return cls(Path(path), kind, None, info)

    @classmethod
    def start(cls, path: str | Path, kind: str, cfg, sections: tuple[str, ...], resume: bool = False,
              device=None, inputs: dict[str, str] | None = None, restart: bool = False) -> "RunDir":
        """Open (lock) the run folder; see the class docstring. `inputs`: digests of what the run reads (data,
        latency table, architecture), recorded by a new run and compared on resume. `restart`: clear the records
        of the run in `path` (its own history, architectures, checkpoints, events) and start it over."""
        path = Path(path)
        check_writable(path)
        if resume and not (path / "run.json").exists():
            raise RunError(f"nothing to resume in {path}: it holds no run; start one without --resume")
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} is a file; choose another --out")
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        try:
            lock = RunLock(path, f"fasterseg {kind}")
        except RunError:
            raise
        remove_stale_tmp(path)
        try:
            info = cls._open(path, kind, cfg, sections, resume, restart)
            if resume and not restart:
                check_same_inputs(path, info.get("inputs", {}), inputs or {})
            else:
                info["inputs"] = inputs or {}
        except BaseException:
            lock.release()
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        run = cls(path, kind, lock, info)
        cfg.save(path / "config.json", sections)
        record = provenance(device)
        starts = info.get("starts", []) + [{"date": time.strftime("%Y-%m-%d %H:%M:%S"), "git": record["git"]}]
        run.set_status("running", provenance=record, starts=starts)
        return run

    @staticmethod
    def _open(path: Path, kind: str, cfg, sections, resume: bool, restart: bool = False) -> dict:
        info = read_info(path)
        if info is not None and info.get("kind") != kind:
            raise RunError(f"{path} holds a {info.get('kind')} run, not a {kind} run; choose another --out")
        if restart:
            if info is None and not (path / "run.json").exists():
                raise RunError(f"--restart: {path} holds no {kind} run to start over")
            for sub in ("history", "archs", "checkpoints", "tensorboard"):  # the run's own records (we hold its lock)
                shutil.rmtree(path / sub, ignore_errors=True)
            return {"format": RUN_FORMAT, "kind": kind, "id": uuid.uuid4().hex,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S"), "restarted": True}
        if resume and info is None:
            raise RunError(f"{path / 'run.json'} is damaged (not a run record of the kit); restore it, or start the "
                           "run over with --restart")
        checkpoints = Checkpoints(path / "checkpoints", f"fasterseg-{kind}-checkpoint")
        has_ckpt = any((path / "checkpoints").glob("*.pt"))
        if resume and info.get("status") != "done" and not any(checkpoints.usable(p) for p in checkpoints.paths()):
            history = [t for t in (path / "history").glob("*.csv") if len(t.read_text().splitlines()) > 1]
            if history or has_ckpt:
                raise RunError(f"nothing usable to resume from in {path}: no complete checkpoint "
                               f"({'only damaged or partial ones' if has_ckpt else 'none was written'}), though "
                               "the run has records; start it over with --restart (its records are cleared)")
        if not resume:
            if has_ckpt:
                raise RunError(f"{path} already holds a {kind} run; use --resume to continue it, or another --out")
            if info is None and any(p.name != "run.lock" for p in path.iterdir()):
                raise RunError(f"{path} is not empty and holds no run of the kit; choose a new or empty --out")
            for sub in ("history", "archs", "checkpoints"):  # records of a run that died before its first checkpoint
                shutil.rmtree(path / sub, ignore_errors=True)
            return {"format": RUN_FORMAT, "kind": kind, "id": uuid.uuid4().hex,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        check_same_config(path, kind, cfg, sections)
        return info

    # -- records ----------------------------------------------------------------------------------------
    def table(self, name: str, columns: list[str]) -> Table:
        return Table(self.path / "history" / f"{name}.csv", columns)

    def set_status(self, status: str, **extra) -> None:
        """Update run.json: ``running``, ``stopped`` (interrupted or capped), ``failed`` or ``done``."""
        self.info.update(status=status, updated=time.strftime("%Y-%m-%d %H:%M:%S"), **extra)
        if self.main:
            atomic_write(self.path / "run.json", (json.dumps(self.info, indent=2) + "\n").encode())

    def check_checkpoint(self, state: dict, path: Path) -> None:
        """Refuse a checkpoint of another run (a copied or foreign file)."""
        if state.get("run_id") != self.info["id"]:
            raise RunError(f"{path.name} belongs to another run (id {state.get('run_id')}, this run {self.info['id']})")

    def save_checkpoint(self, state: dict, step: int, tag: str = "last") -> Path:
        return self.checkpoints.save({**state, "run_id": self.info["id"]}, step, tag)

    def load_checkpoint(self, tag: str = "last") -> tuple[dict, Path]:
        return self.checkpoints.load(tag, self.check_checkpoint)

    def last_checkpoint_name(self) -> str:
        last = self.checkpoints.paths()
        return last[0].name if last else "none (none written yet)"

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


def already_done(path: str | Path, kind: str, cfg, sections: tuple[str, ...]) -> bool:
    """Whether `path` holds a finished run of `kind` (with the same config on `sections`, else `RunError`)."""
    info = read_info(path, strict=True)
    if info is None or info.get("status") != "done":
        return False
    if info.get("kind") != kind:
        raise RunError(f"{path} holds a {info.get('kind')} run, not a {kind} run; choose another --out")
    check_same_config(Path(path), kind, cfg, sections)
    return True


def drive(run: RunDir, loop: Callable[["StopFlag"], str], save: Callable[[], Path], step: Callable[[], int],
          total: int, max_steps: int | None, error: type[RunError], say: Callable[[str], None],
          finish: Callable[[], None] = lambda: None) -> str:
    """Run `loop(stop)` (which returns ``done``, ``capped`` or ``interrupted``) and record how it ended.

    ``done`` -> `finish()` (e.g. the final weights written), then status done: a run marked done has its outputs.
    ``capped`` -> a checkpoint, status stopped, a line saying so. Ctrl-C or SIGTERM (``interrupted``: the loop
    stopped at a step boundary) -> a checkpoint, status stopped, `error` naming it. A second signal mid-step ->
    status stopped, `error` naming the last checkpoint. `error` raised by the loop (e.g. a non-finite loss) ->
    status failed, re-raised with the last good checkpoint. A lost peer process (`PeerLost`) -> status stopped.
    """
    try:
        with StopFlag() as stop:
            outcome = loop(stop)
            if outcome == "done":
                finish()  # inside: a kill here leaves the run stopped, not done without its outputs
    except KeyboardInterrupt:
        run.set_status("stopped", reason="interrupted")
        raise error(f"interrupted during step {step() + 1}; the last checkpoint is {run.last_checkpoint_name()}; "
                    "continue with --resume") from None
    except PeerLost as e:
        run.set_status("stopped", reason=str(e))
        raise error(f"{e} during step {step() + 1}; the last checkpoint is {run.last_checkpoint_name()}; continue "
                    "with --resume") from None
    except error as e:
        run.set_status("failed", reason=str(e))
        raise error(f"{e}. The run stopped; its last good checkpoint is {run.last_checkpoint_name()}") from None
    except RunError as e:  # a record could not be written (a full disk, a folder made read-only): resumable
        run.set_status("stopped", reason=str(e))
        raise error(f"{e}. The run stopped; its last good checkpoint is {run.last_checkpoint_name()}") from None
    if outcome == "done":
        run.set_status("done", step=step())
        return outcome
    path = save() if run.main else None
    why = "interrupted" if outcome == "interrupted" else f"stopped at the step cap ({max_steps} steps)"
    run.set_status("stopped", reason=why, step=step())
    msg = f"{why} at step {step()} of {total}; saved {path.name if path else 'nothing'}; continue with --resume"
    if outcome == "interrupted":
        raise error(msg)
    if run.main:
        say(msg)
    return outcome


def resume_and_drive(job, run: RunDir, resume: bool, main: bool, loop: Callable[["StopFlag"], str],
                     step: Callable[[], int], max_steps: int | None, error: type[RunError], say: Callable[[str], None],
                     tensorboard: bool, finish: Callable[[], None] = lambda: None) -> str:
    """The common course of a search or a training run (`job`: its `resume`, `start_tracking`, `save` and
    `total_steps`): continue from the newest good checkpoint when `resume` and one exists (the main process says
    from where), start the run's tracking, then `drive` its `loop`. Returns how it ended."""
    if resume and any(run.checkpoints.paths()):
        msg = job.resume()
        if main:
            say(msg)
    job.start_tracking(tensorboard)
    return drive(run, loop, job.save, step, job.total_steps(), max_steps, error, say, finish=finish)


def check_same_config(path: Path, kind: str, cfg, sections: tuple[str, ...]) -> None:
    """Refuse (`RunError`, naming the differing fields) a config that differs from the one the run in
    `path` was started with, on `sections` except ``runtime``."""
    stored = RunConfig.load(Path(path) / "config.json")
    diff = stored.differences(cfg, tuple(s for s in sections if s not in RUNTIME_SECTIONS))
    if diff:
        raise RunError(
            f"the {kind} run in {path} was started with another config ({'; '.join(diff)}); resume with "
            "the same profile and overrides (or none: the stored config is used), or start a new run "
            "with another --out"
        )


def check_same_inputs(path: Path, stored: dict[str, str], now: dict[str, str]) -> None:
    """Refuse to resume a run whose inputs (data, latency table, architecture) changed since it started."""
    diff = [k for k in now if k in stored and stored[k] != now[k]]
    if diff:
        raise RunError(f"the run in {path} started from other inputs: its {', '.join(diff)} changed since (digests "
                       f"{', '.join(f'{stored[k][:12]} -> {now[k][:12]}' for k in diff)}); restore them, or start "
                       "a new run with another --out")



def read_info(path: str | Path, strict: bool = False) -> dict | None:
    """The run.json of a folder, or None when there is none; a damaged one is None too, or with `strict` a
    `RunError` naming the file and the fix."""
    f = Path(path) / "run.json"
    try:
        info = json.loads(f.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if strict:
            raise RunError(f"{f} is damaged ({type(e).__name__}); restore it, or start the run over with "
                           "--restart") from None
        return None
    if isinstance(info, dict) and info.get("format") == RUN_FORMAT:
        return info
    if strict:
        raise RunError(f"{f} is not a run record of the kit; restore it, or start the run over with --restart")
    return None


def run_status(path: str | Path) -> str:
    """``new`` (no run), ``done``, or ``partial`` (started: running elsewhere, stopped or failed); a damaged
    run.json is a `RunError` naming it."""
    info = read_info(path, strict=True)
    if info is None:
        return "new"
    return "done" if info.get("status") == "done" else "partial"


def continuing(path: str | Path) -> dict[str, bool]:
    """How a study carries on with a run folder it started before: ``{"resume": True}`` when a usable
    checkpoint is there, ``{"restart": True}`` when the run left records but died before its first usable
    checkpoint (at most part of one epoch is lost), ``{}`` for a new or finished run."""
    path = Path(path)
    if run_status(path) != "partial":
        return {}
    ckpts = Checkpoints(path / "checkpoints", f"fasterseg-{read_info(path)['kind']}-checkpoint")
    return {"resume": True} if any(ckpts.usable(p) for p in ckpts.paths()) else {"restart": True}


# -- readers ---------------------------------------------------------------------------------------------
def load_history(run: str | Path) -> dict[str, pd.DataFrame]:
    """Every history table of a run folder, by name (search: steps, arch, epochs, lambda; training:
    steps, epochs)."""
    h = Path(run) / "history"
    if not h.is_dir():
        raise RunError(f"{run} holds no run history (no history/ folder)")
    return {p.stem: read_csv(p) for p in sorted(h.glob("*.csv"))}


def read_csv(path: Path) -> pd.DataFrame:
    """A history table; `RunError` naming the file when it is damaged."""
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # pandas' parser errors are ValueErrors
        raise RunError(f"{path} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__}); restore it "
                       "from a copy, or start the run over with --restart") from None
    if "step" not in df.columns:  # every history table of the kit has one
        raise RunError(f"{path} is damaged (no step column); restore it from a copy, or start the run over with "
                       "--restart")
    return df
