"""Random derived networks of a search space and their end-to-end measurement against a table's prediction:
what `latency validate` checks a table with, and what an interleaved build fits its network factor on."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fasterseg.latency.backends import Backend
from fasterseg.latency.table import LatencyTable
from fasterseg.nets.derive import DeriveRules, derive
from fasterseg.nets.network import DerivedNet
from fasterseg.nets.space import SearchSpace
from fasterseg.nets.supernet import ArchSet
from fasterseg.timing import at_reference_speed, reference_conv


def random_architectures(space: SearchSpace, n: int, stem_head_widths, num_classes: int, seed: int = 0,
                         rules: DeriveRules = DeriveRules()) -> list:
    """`n` derived networks from random architecture parameters (random temperature, skip bias, branch
    pair and stem/head widths; a searched stem's kind from its random logits, the decision forms in turn), so
    operators, widths and paths vary widely."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = i % len(stem_head_widths)
        a = ArchSet(space, search_widths=True)
        with torch.no_grad():
            temp = float(torch.rand((), generator=g)) * 3 + 0.5
            for p in a.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * temp)
        ends = (32, 16) if i % 3 else (32, 8)
        out.append(derive(a, space, *stem_head_widths[k], num_classes, ends=ends, name=f"random{i}", rules=rules,
                          decision=space.decisions[i % len(space.decisions)]))
    return out


def measure_networks(table: LatencyTable, backend: Backend, archs: list, progress: bool = True,
                     desc: str = "measuring networks") -> list[dict]:
    """Each architecture's derived network timed end to end at the table's resolution, beside its prediction: rows
    of name, predicted_ms, measured_ms, spread_ms, cells, ends, stem, decision. For an interleaved table each
    network is timed beside the reference conv and brought to the table's reference speed
    (`timing.at_reference_speed`; also ``measured_ms_raw``, the bare median, and ``reference_ms``)."""
    h, w = table.resolution
    ref_ms = table.reference_ms if backend.device.type == "cpu" else None
    reference = reference_conv() if ref_ms else None
    rows = []
    for arch in tqdm(archs, desc=desc, disable=not progress):
        net = DerivedNet(arch, aux=False)
        row = {"name": arch.name, "predicted_ms": table.predict(arch)}
        if ref_ms:
            t, r = backend.time_beside(net, (1, 3, h, w), reference)
            at = at_reference_speed(t, r, ref_ms)
            row.update(measured_ms=at.median_ms, spread_ms=at.spread_ms, measured_ms_raw=t.median_ms,
                       reference_ms=r.min_ms)
        else:
            t = backend.time(net, (1, 3, h, w))
            row.update(measured_ms=t.median_ms, spread_ms=t.spread_ms)
        row.update(cells=sum(len(b.ops) for b in arch.branches), ends="+".join(str(b.ends_at) for b in arch.branches),
                   stem=arch.stem, decision=arch.decision)
        rows.append(row)
    return rows
