"""Import trained weights from the original FasterSeg release into a run folder of the kit.

The original trains ``Network_Multi_Path_Infer`` and saves its ``state_dict()`` (``weights0.pt`` teacher,
``weights1.pt`` student). Its module names differ from the kit's `DerivedNet`; the structure is the same, so the
map is a renaming (`original_key`):

- ``stem.conv.cb.{conv,bn}`` -> ``stem.0.conv.{0,1}``; ``stem.block{1,2}.cb{1,2}.{conv,bn}`` ->
  ``stem.{1,2}.{conv,bn}{1,2}``;
- ``branch_cells.<b>.<i>.<op>`` -> ``cells.<i>-<b>._op._op.<op>`` (``cb``/``cbs.0`` -> ``conv1``/``bn1``,
  ``cb2``/``cbs.1`` -> ``conv2``/``bn2``; a factorized reduce keeps ``conv1``, ``conv2``, ``bn``);
- ``refine.<b>.{arm32,ref32,arm16,ref16}`` -> ``arms32.0``, ``refines32.0``, ``arms32.1``, ``refines32.1`` (the 1/32
  branch) or ``arms16``, ``refines16`` (the 1/16 branch), ``cb.{conv,bn}`` -> ``conv.{0,1}``;
- ``ffm.cb.{conv,bn}`` -> ``ffm.conv_1x1.{conv,bn}``;
- ``head``, ``head16``, ``head32`` -> ``heads8``, ``heads16``, ``heads32`` (``conv.cb`` -> ``conv_3x3``, ``cls`` ->
  ``conv_1x1``).

Branch b is the architecture's b-th branch (the original orders them the same way: the 1/32 branch first). The
original's feature-fusion attention (``ffm.channel_attention``) is built but never used in its forward pass: its
tensors are the only ones left out. Every other tensor must be there with the kit's shape, or the file is refused
naming the mismatching tensors. The file is read with ``torch.load(weights_only=True)``: no code in it runs.
"""
from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import torch

from fasterseg.nets import published
from fasterseg.nets.build import load_state, model_spec
from fasterseg.nets.network import DerivedNet
from fasterseg.paths import check_writable, display_path
from fasterseg.runs import RUN_FORMAT, RunError, atomic_write

UNUSED = re.compile(r"^ffm\.channel_attention\.")
_OP_PARTS = [(r"^cb\.(conv|bn)\.", r"\g<1>1."), (r"^cb([12])\.(conv|bn)\.", r"\2\1."),
             (r"^cbs\.0\.(conv|bn)\.", r"\g<1>1."), (r"^cbs\.1\.(conv|bn)\.", r"\g<1>2."),
             (r"^conv\.", "conv1."), (r"^(conv1|conv2|bn)\.", r"\1.")]


class WeightsImportError(RunError):
    """A weights file that does not fit the architecture; the message names the tensors."""


def _op_part(rest: str) -> str:
    for pat, rep in _OP_PARTS:
        if re.match(pat, rest):
            return re.sub(pat, rep, rest, count=1)
    raise KeyError(rest)


def _conv_norm(rest: str) -> str:
    """A kit `ConvBNReLU`'s ``cb.conv.*``/``cb.bn.*`` as the original's ``ConvNorm`` (``conv.0``/``conv.1``)."""
    return re.sub(r"^cb\.conv\.", "conv.0.", re.sub(r"^cb\.bn\.", "conv.1.", rest))


def original_key(key: str, ends: list[int]) -> str:
    """The original's name of the kit's state-dict `key` for an architecture whose branches end at `ends`."""
    m = re.match(r"^stem\.conv\.(.*)$", key)
    if m:
        return "stem.0." + _conv_norm(m.group(1))
    m = re.match(r"^stem\.block([12])\.(.*)$", key)
    if m:
        return f"stem.{m.group(1)}." + _op_part(m.group(2))
    m = re.match(r"^branch_cells\.(\d+)\.(\d+)\.(.*)$", key)
    if m:
        return f"cells.{m.group(2)}-{m.group(1)}._op._op." + _op_part(m.group(3))
    m = re.match(r"^refine\.(\d+)\.(arm32|ref32|arm16|ref16)\.(.*)$", key)
    if m:
        b, part, rest = int(m.group(1)), m.group(2), _conv_norm(m.group(3))
        if ends[b] == 32:
            return {"arm32": "arms32.0.", "ref32": "refines32.0.", "arm16": "arms32.1.", "ref16": "refines32.1."}[
                part] + rest
        return {"arm16": "arms16.", "ref16": "refines16."}[part] + rest
    m = re.match(r"^ffm\.cb\.(conv|bn)\.(.*)$", key)
    if m:
        return f"ffm.conv_1x1.{m.group(1)}.{m.group(2)}"
    m = re.match(r"^(head|head16|head32)\.(conv\.cb\.(conv|bn)|cls)\.(.*)$", key)
    if m:
        head = {"head": "heads8", "head16": "heads16", "head32": "heads32"}[m.group(1)]
        part = "conv_1x1" if m.group(2) == "cls" else f"conv_3x3.{m.group(3)}"
        return f"{head}.{part}.{m.group(4)}"
    raise KeyError(key)


def map_state(original: dict[str, torch.Tensor], model: DerivedNet) -> dict[str, torch.Tensor]:
    """The kit's state dict for `model` from the original's; `WeightsImportError` naming the tensors that are
    missing, have another shape, or are not the kit's."""
    ends = [b.ends_at for b in model.arch.branches]
    want = model.state_dict()
    out, missing, shapes, used = {}, [], [], set()
    for k, v in want.items():
        try:
            ok = original_key(k, ends)
        except KeyError:
            missing.append(f"{k} (no name in the original)")
            continue
        if ok not in original:
            missing.append(ok)
            continue
        used.add(ok)
        if tuple(original[ok].shape) != tuple(v.shape):
            shapes.append(f"{ok} {tuple(original[ok].shape)} (the architecture needs {tuple(v.shape)})")
            continue
        out[k] = original[ok]
    extra = sorted(k for k in original if k not in used and not UNUSED.match(k))
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) of another shape: " + "; ".join(shapes[:4]))
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing: " + ", ".join(missing[:4]))
    if extra:
        problems.append(f"{len(extra)} tensor(s) this architecture does not have: " + ", ".join(extra[:4]))
    if problems:
        raise WeightsImportError(f"the weights do not fit {model.arch.name}: " + " | ".join(problems)
                                 + ". Is it the file of another network (teacher/student) or architecture?")
    return out


def import_weights(weights: str | Path, arch: str | Path, out: str | Path, num_classes: int = 19,
                   dataset: str = "cityscapes") -> Path:
    """A finished training run in `out` holding the original's `weights` mapped onto architecture `arch` (a published
    name or a JSON file): ``model.json``, ``model_best.pt`` (= ``model_last.pt``), ``config.json`` (data section)
    and ``run.json`` (kind train, done, with the source). `fasterseg evaluate` and `predict` take it as it is."""
    architecture = published.resolve(str(arch))
    out = Path(out)
    check_writable(out)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"--out {out} is not empty; choose a new folder")
    spec = model_spec(str(arch), architecture.num_classes)
    model = DerivedNet(architecture, aux=True)
    state = map_state(load_state(weights), model)
    model.load_state_dict(state)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(spec, indent=1) + "\n")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    for which in ("best", "last"):
        atomic_write(out / f"model_{which}.pt", buf.getvalue())
    (out / "config.json").write_text(json.dumps({"profile": "paper", "data": {
        "dataset": dataset, "num_classes": num_classes}}, indent=2) + "\n")
    info = {"format": RUN_FORMAT, "kind": "train", "id": f"imported-{Path(weights).name}", "status": "done",
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "source": {"imported_from": display_path(weights), "architecture": architecture.name,
                       "note": "weights of the original FasterSeg release (fasterseg.importers.weights)"}}
    atomic_write(out / "run.json", (json.dumps(info, indent=2) + "\n").encode())
    return out
