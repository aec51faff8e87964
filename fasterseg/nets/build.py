"""Networks as the kit builds, loads and runs them: the one place for each of these steps.

- `model_spec` / `build_model`: a network from a description: an architecture JSON file, a published name
  (``fasterseg_student``) or a peer (``peer:fast_scnn``); `kaiming_init` initialises it as the original does.
- `load_trained`: a training run's network with its best (or last) weights; `load_network` also takes an
  architecture or a name (freshly initialised).
- `fold_bn` / `inference_copy`: the deployed form: batch norm folded into the convolutions, logits only,
  optionally nearest resizing.
- `predict_logits` / `predict_image`: whole images of any size, padded (with black, as the evaluation pads the
  raw image) to multiples of 32 and cropped back, optionally averaged with the mirrored image.

A run folder describes its network in ``model.json`` (`model_spec`) and holds ``model_best.pt`` /
``model_last.pt`` (state dicts, read with ``weights_only=True``).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fasterseg.data.transforms import MEAN, STD, normalize
from fasterseg.nets import published
from fasterseg.nets.arch import Architecture
from fasterseg.nets.network import DerivedNet, upsample_logits
from fasterseg.nets.ops import ConvBN, Skip, kaiming_init
from fasterseg.nets.peers import PEERS
from fasterseg.runs import RunError

#: what a padded pixel holds once normalised: black, as `data.transforms.pad_to_multiple` pads the raw image
PAD_VALUE = tuple(float(-m / s) for m, s in zip(MEAN, STD))


# -- what a network is --------------------------------------------------------------------------------------
def model_spec(model: str | Path | dict, num_classes: int) -> dict:
    """The JSON description of a network: ``peer:<name>`` (`fasterseg.nets.peers`), a published name, or an
    architecture JSON file. Raises `ArchitectureError`/`ValueError` with a one-line message."""
    if isinstance(model, dict):
        return model
    text = str(model)
    if text.startswith("peer:"):
        name = text[5:]
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; choose one of {', '.join('peer:' + p for p in PEERS)}")
        return {"kind": "peer", "name": name, "num_classes": num_classes}
    arch = published.resolve(text)
    if arch.num_classes != num_classes:
        raise ValueError(f"{text} predicts {arch.num_classes} classes but data.num_classes={num_classes}")
    return {"kind": "arch", "arch": json.loads(arch.to_json()), "num_classes": num_classes}


def build_model(spec: dict, num_classes: int | None = None, aux: bool = True) -> nn.Module:
    """The network of a `model_spec`; with its auxiliary training heads `forward(x, aux=True)` returns
    (logits, aux16, aux32), all at the input size (``aux=False``: the inference network only)."""
    num_classes = num_classes or spec["num_classes"]
    if spec["kind"] == "peer":
        return PEERS[spec["name"]](num_classes, aux=aux)
    return DerivedNet(Architecture.from_dict(spec["arch"]), aux=aux)


# -- a run's network ------------------------------------------------------------------------------------
def model_weights_path(run: str | Path, which: str = "best") -> Path:
    """``<run>/model_<which>.pt``: the state dict a finished training writes (best | last)."""
    return Path(run) / f"model_{which}.pt"


def read_spec(run: str | Path) -> dict:
    """The ``model.json`` of a training run; `RunError` naming the file when it is missing or damaged."""
    f = Path(run) / "model.json"
    if not f.exists():
        raise RunError(f"{run} holds no trained model (no model.json); train one with fasterseg train")
    try:
        spec = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{f} is damaged ({e}); restore it or train again into another --out") from None
    if not isinstance(spec, dict) or spec.get("kind") not in ("arch", "peer") or "num_classes" not in spec:
        raise RunError(f"{f} is not a model description of the kit (kind arch or peer, with num_classes)")
    return spec


def load_state(path: str | Path) -> dict:
    """A state dict saved with `torch.save`, read with ``weights_only=True`` (no code runs); `RunError` otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"no weights file {path}") from None
    except Exception as e:  # noqa: BLE001 - a pickle that needs code, a truncated file: refuse, never run it
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            first = "it holds Python objects, not only tensors (only plain state dicts are read)"
        raise RunError(f"cannot read weights {path}: {first}") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise RunError(f"{path} is not a state dict of tensors")
    return state


def load_trained(run: str | Path, which: str = "best", aux: bool = False) -> tuple[nn.Module, dict]:
    """The network of a finished training run with its `which` (best | last) weights, in eval mode, and its
    model spec (``aux=False``: the inference network, auxiliary heads left out). ``which="init"``: the run's
    architecture freshly initialised, no weights loaded (for timing in a checkout that holds no weights)."""
    run = Path(run)
    spec = read_spec(run)
    if which == "init":
        return build_model(spec, aux=aux).eval(), spec
    weights = model_weights_path(run, which)
    if not weights.exists():
        raise RunError(f"{run} has no {weights.name}: the training is unfinished; finish it with "
                       f"fasterseg train --resume --out {run}")
    model = build_model(spec, aux=aux)
    state = load_state(weights)
    if not aux:
        keys = set(model.state_dict())
        state = {k: v for k, v in state.items() if k in keys or not _is_aux(k)}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{weights} does not fit the architecture in {run / 'model.json'}: "
                       f"{str(e).splitlines()[0]}") from None
    return model.eval(), spec


def _is_aux(key: str) -> bool:
    """State-dict keys of auxiliary training heads (derived networks: head16/head32; peers: aux*)."""
    first = key.split(".")[0]
    return first in ("head16", "head32") or first.startswith("aux")


def run_dataset(run: Path) -> str | None:
    """The data set a training run was trained on (its stored ``config.json``), or None."""
    try:
        return json.loads((Path(run) / "config.json").read_text())["data"]["dataset"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


def load_network(source: str | Path, which: str = "best", num_classes: int = 19) -> nn.Module:
    """A network ready for `predict_image`, in eval mode: a training run folder (its `which` weights), or an
    architecture JSON file / published name / ``peer:NAME`` (freshly initialised, `num_classes` outputs for a
    peer). The module carries ``spec`` and ``dataset`` (the data set its classes belong to)."""
    p = Path(source)
    if p.is_dir() and (p / "model.json").exists():
        model, spec = load_trained(p, which)
        dataset = run_dataset(p)
    else:
        spec = model_spec(str(source), num_classes if str(source).startswith("peer:") else
                          published.resolve(str(source)).num_classes)
        model = build_model(spec, aux=False)
        kaiming_init(model)
        model.eval()
        dataset = None
    model.spec = spec
    model.dataset = dataset or ("camvid" if spec["num_classes"] == 11 else "cityscapes")
    return model


# -- the deployed form -----------------------------------------------------------------------------------
def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice | None = None) -> nn.Conv2d:
    """`conv` with `bn` (or its channel slice) folded in: w' = w * g / s, b' = (b - mean) * g / s + beta."""
    sl = channels or slice(0, bn.num_features)
    scale = bn.weight[sl] / torch.sqrt(bn.running_var[sl] + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    with torch.no_grad():
        out.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        out.bias.copy_((bias - bn.running_mean[sl]) * scale + bn.bias[sl])
    return out


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every foldable batch norm folded into the convolution before it (the
    kit's `ConvBN` and `Skip` blocks, and conv -> BN pairs inside `nn.Sequential`s); the number folded is stored
    as ``folded_bn`` on the copy."""
    m = copy.deepcopy(model).eval()
    n = 0
    for mod in list(m.modules()):
        if isinstance(mod, ConvBN) and not mod.slim and isinstance(mod.bn, nn.BatchNorm2d):
            mod.conv, mod.bn, n = _fused(mod.conv, mod.bn), nn.Identity(), n + 1
        elif isinstance(mod, Skip) and not mod.identity and not mod.slim and isinstance(mod.bn, nn.BatchNorm2d):
            if mod.stride == 1:
                mod.conv = _fused(mod.conv, mod.bn)
            else:
                c1 = mod.conv1.out_channels
                mod.conv1 = _fused(mod.conv1, mod.bn, slice(0, c1))
                mod.conv2 = _fused(mod.conv2, mod.bn, slice(c1, c1 + mod.conv2.out_channels))
            mod.bn, n = nn.Identity(), n + 1
        elif isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (na, a), (nb, b) in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.num_features == a.out_channels:
                    setattr(mod, na, _fused(a, b))
                    setattr(mod, nb, nn.Identity())
                    n += 1
    m.folded_bn = n
    return m


class LogitsOnly(nn.Module):
    """The final logits only (no auxiliary heads), as exported."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def low_res_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A network's logits at its own output resolution, before the up-sampling to the input's size (1/8 for the
    derived networks, Fast-SCNN and LR-ASPP): (N, classes, h, w)."""
    if isinstance(net, DerivedNet):
        return net.low_res_logits(x)
    if hasattr(net, "_forward"):  # the peers (`peers.PeerNet`)
        return net._forward(x, False)[0]
    raise ValueError(f"{type(net).__name__} has no low-resolution logits to take a class decision from")


class WithDecision(nn.Module):
    """A network's full-resolution logits with the class decision `decision` (`network.upsample_logits`) applied to
    its low-resolution logits, whatever its own: a peer network, e.g., given a derived network's ``nearest8``."""

    def __init__(self, net: nn.Module, decision: str):
        super().__init__()
        self.net, self.decision = net, decision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_logits(low_res_logits(self.net, x), x.shape[-2:], self.decision)


class ClassMap(nn.Module):
    """A network whose output is the class map: (N, 3, H, W) image -> (N, H, W) int64 class ids, the form a
    deployment consumes, with the class decision `decision` (default: a derived network's own, a peer's own
    bilinear up-sampling). ``nearest8`` takes the argmax of the 1/8 logits and repeats each label over its 8x8
    block: exactly the map of up-sampling the logits by nearest neighbour and taking the argmax at full resolution,
    without up-sampling every class channel and without the full-resolution argmax."""

    def __init__(self, net: nn.Module, decision: str | None = None):
        super().__init__()
        self.own = net.arch.decision if isinstance(net, DerivedNet) else None  # a peer's own: its bilinear up-sampling
        self.net, self.decision = net, decision or self.own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.decision == "nearest8" and not net.training:
            labels = low_res_logits(net, x).argmax(1)  # (N, H/8, W/8)
            n, h, w = labels.shape
            if (8 * h, 8 * w) != tuple(x.shape[-2:]):
                raise ValueError(f"nearest8 needs logits at 1/8; {type(net).__name__} gives {h}x{w} for "
                                 f"{tuple(x.shape[-2:])}")
            return labels[:, :, None, :, None].expand(n, h, 8, w, 8).reshape(n, 8 * h, 8 * w)
        out = net(x) if self.decision in (None, self.own) else WithDecision(net, self.decision)(x)
        return (out[0] if isinstance(out, tuple) else out).argmax(1)


def inference_copy(model: nn.Module, interpolation: str = "bilinear") -> nn.Module:
    """The deployed form: a BN-folded eval copy returning logits only; ``nearest`` switches a derived network's
    resizing (the original's TensorRT speed figure used nearest)."""
    m = fold_bn(model)
    if interpolation != "bilinear":
        if not hasattr(m, "interp"):
            raise ValueError(f"export.interpolation={interpolation!r} is only available for derived networks")
        m.interp = interpolation
        for mod in m.modules():
            if hasattr(mod, "interp"):
                mod.interp = interpolation
    return LogitsOnly(m).eval()


def inference_network(run: str | Path, which: str = "best") -> nn.Module:
    """A training run's network in its deployed form (`inference_copy`) with its `which` weights: best | last,
    or ``init`` (the run's architecture freshly initialised, for a checkout that holds no weights: dense fp32
    kernels take the same time whatever the weight values)."""
    return inference_copy(load_trained(run, which)[0])


# -- prediction ------------------------------------------------------------------------------------------
def pad32(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Normalised images (N, 3, H, W) padded bottom/right to multiples of 32 with black pixels (`PAD_VALUE`),
    as the evaluation pads the raw image; returns (padded, H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    if not (ph or pw):
        return x, h, w
    out = F.pad(x, (0, pw, 0, ph))
    fill = torch.tensor(PAD_VALUE, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    mask = torch.zeros(1, 1, h + ph, w + pw, dtype=torch.bool, device=x.device)
    mask[..., h:, :] = True
    mask[..., :, w:] = True
    return torch.where(mask, fill, out), h, w


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Logits (N, C, H, W) of normalised images x (N, 3, H, W), any H and W (padded with black to multiples of 32,
    cropped back); with `flip`, averaged with the prediction of the mirrored image."""
    xp, h, w = pad32(x)
    y = model(xp)
    if flip:
        y = (y + model(xp.flip(-1)).flip(-1)) / 2
    return y[..., :h, :w].float()


def predict_image(model: nn.Module, image: np.ndarray, flip: bool = False) -> np.ndarray:
    """Class map (H, W) uint8 (train ids) of an RGB image (H, W, 3) uint8 of any size."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB image (H, W, 3) of uint8, got shape {image.shape} {image.dtype}")
    device = next(model.parameters()).device
    x = torch.from_numpy(normalize(image))[None].to(device)
    return predict_logits(model, x, flip).argmax(1)[0].cpu().numpy().astype(np.uint8)
