"""Graphviz drawings: the derived network's path diagram and the supernet's node grid.

Both are laid out on a grid (x: layer, y: scale 1/8 at the top, 1/32 at the bottom) with pinned node
positions (``neato -n``), like the paper's figure of the discovered network. Functions return a
`graphviz.Digraph`; render it with ``.pipe(format="png")`` or let Jupyter display it.
"""
from __future__ import annotations

import graphviz
import numpy as np

from fasterseg.nets.arch import Architecture
from fasterseg.nets.network import shared_prefix
from fasterseg.nets.ops import OPS, PRIMITIVES
from fasterseg.nets.space import SCALE_INDEX

SHORT = {"skip": "skip", "conv": "conv", "zoomed_conv": "zconv", "conv_2x": "conv×2", "zoomed_conv_2x": "zconv×2",
         "dwsep": "dw-sep", "ir_e3": "IR t=3", "ir_e6": "IR t=6"}
#: blues: the paper's dense convolutions, oranges: zoomed, greens: the depthwise (CPU-shaped) operators
OP_COLORS = {"skip": "#bbbbbb", "conv": "#9ecae1", "zoomed_conv": "#fdd0a2", "conv_2x": "#3182bd",
             "zoomed_conv_2x": "#e6550d", "dwsep": "#c7e9c0", "ir_e3": "#74c476", "ir_e6": "#238b45"}
assert set(SHORT) == set(OP_COLORS) == set(OPS), "every operator needs a short name and a colour"
BRANCH_COLORS = {32: "#d62728", 16: "#1f77b4", 8: "#2ca02c"}
DX, DY = 1.25, 1.1  # inches between grid positions


def _pos(x: float, scale: int, offset: float = 0.0) -> str:
    return f"{x * DX:.3f},{-(SCALE_INDEX[scale] + offset) * DY:.3f}!"


def arch_graph(arch: Architecture, title: str | None = None) -> graphviz.Digraph:
    """The multi-resolution path diagram of a derived network: stem -> cells per scale -> head.

    Each cell shows its operator and output channels; shared cells are grey, each branch has its colour.
    """
    removed = sum(1 for d in arch.decisions if d.get("kind") == "skip_removed")
    title = (title or arch.name) + (f"  ({removed} skip cell{'s' if removed != 1 else ''} removed by derivation, not "
                                    "drawn)" if removed else "")
    g = graphviz.Digraph(
        engine="neato",
        graph_attr={
            "splines": "line",
            "outputorder": "edgesfirst",
            "label": title,
            "labelloc": "t",
            "fontsize": "14",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fontsize": "10",
            "fontname": "Helvetica",
            "width": "0.9",
            "height": "0.45",
            "fixedsize": "true",
        },
    )
    g.attr("edge", arrowsize="0.6")
    for s in (8, 16, 32):
        g.node(f"row{s}", f"1/{s}", shape="plaintext", style="", pos=_pos(-1.1, s), fontsize="12")
    c_stem = arch.channels(8, arch.stem_width)
    kind = "" if arch.stem == "original" else f"\n({arch.stem})"
    g.node("stem", f"stem{kind}\n{c_stem} ch", pos=_pos(-0.1, 8), fillcolor="#dddddd",
           height="0.45" if not kind else "0.62")
    br = arch.branches
    n_shared = shared_prefix(br[0], br[1]) if len(br) == 2 else 0
    offsets = {0: -0.18, 1: 0.18} if len(br) == 2 else {0: 0.0}
    lasts, down_cells = [], set()
    for k, b in enumerate(br):
        prev = "stem"
        for i, (op, s, w, o) in enumerate(zip(b.ops, b.path, b.widths, b.out_scales())):
            shared = i < n_shared
            name = f"s{i}" if shared else f"b{k}_{i}"
            if not (shared and k > 0):
                label = f"{SHORT[op]}\n{arch.channels(o, w)} ch" + (" ↓" if o > s else "")
                g.node(
                    name,
                    label,
                    pos=_pos(i + 1, s, 0 if shared else offsets[k]),
                    fillcolor=OP_COLORS[op],
                    color="#555555" if shared else BRANCH_COLORS[b.ends_at],
                    penwidth="1" if shared else "2.2",
                    fontcolor="white" if op in ("conv_2x", "zoomed_conv_2x") else "black",
                )
                # out of a down-going cell from its right side: a line from its centre would run behind the
                # cell stacked below it and seem to leave from there
                port = {"tailport": "e"} if prev in down_cells else {}
                g.edge(prev, name, color="#555555" if shared else BRANCH_COLORS[b.ends_at], **port)
                if o > s:
                    down_cells.add(name)
            prev = name
        lasts.append((prev, b))
    x_head = max(len(b.ops) for b in br) + 1.3
    up = "" if arch.decision == "bilinear8" else f"\n→ {arch.decision}"
    g.node("head", f"refine\n+ fusion\n+ head{up}", pos=_pos(x_head, 8), fillcolor="#dddddd",
           height="0.7" if not up else "0.85", width="0.9" if not up else "1.15")
    for name, b in lasts:
        g.edge(
            name,
            "head",
            color=BRANCH_COLORS[b.ends_at],
            label=f"1/{b.ends_at}",
            fontsize="9",
            fontcolor=BRANCH_COLORS[b.ends_at],
        )
    used = {o for b in br for o in b.ops}  # the key names only the operators this network has
    ops = "".join(f'<TD BGCOLOR="{c}" WIDTH="14"> </TD><TD ALIGN="LEFT">{SHORT[o]}  </TD>'
                  for o, c in OP_COLORS.items() if o != "skip" and o in used)
    outlines = "".join(f'<TD COLSPAN="2" ALIGN="LEFT"><FONT COLOR="{BRANCH_COLORS[b.ends_at]}">▬ 1/{b.ends_at} branch'
                       "</FONT>  </TD>" for b in br)
    cells = f"{n_shared} shared cell" + ("s" if n_shared > 1 else "")
    shared_txt = f'<TD COLSPAN="4" ALIGN="LEFT"><FONT COLOR="#555555">▬ {cells}</FONT></TD>' \
        if n_shared else ""
    legend = (f'<<TABLE BORDER="0" CELLSPACING="2"><TR><TD ALIGN="LEFT">fill (operator):  </TD>{ops}</TR>'
              f'<TR><TD ALIGN="LEFT">outline (branch):  </TD>{outlines}{shared_txt}</TR>'
              '<TR><TD COLSPAN="9" ALIGN="LEFT">↓: the cell goes down one scale; skip cells are removed</TD></TR>'
              "</TABLE>>")
    g.node("legend", legend, shape="plaintext", style="", pos=_pos(x_head / 2, 32, 0.95), width="7", height="0.9",
           fontsize="10")
    return g


def supernet_graph(probs: dict[str, np.ndarray], layers: int, title: str = "supernet",
                   ops: tuple[str, ...] = PRIMITIVES) -> graphviz.Digraph:
    """The supernet's node grid (layers x scales). Node colour: argmax operator (label: its probability);
    edge width: beta's probability of that input (same-scale edges at 1/8 always carry weight 1).

    `probs`: softmax probabilities keyed ``alpha_0 .. beta_2`` (e.g. ``ArchSet.probabilities()``); `ops`: the
    space's operators, in alpha's order (`SearchSpace.ops`).
    """
    g = graphviz.Digraph(
        engine="neato",
        graph_attr={"splines": "line", "outputorder": "edgesfirst", "label": title, "labelloc": "t"},
        node_attr={
            "shape": "circle",
            "style": "filled",
            "fontsize": "8",
            "fontname": "Helvetica",
            "width": "0.42",
            "fixedsize": "true",
        },
    )
    for s in (8, 16, 32):
        g.node(f"row{s}", f"1/{s}", shape="plaintext", style="", pos=_pos(-0.9, s), fontsize="12")
    g.node("stem", "stem", pos=_pos(-0.1, 8), fillcolor="#dddddd", shape="box", width="0.6")
    for l in range(layers):
        for si, s in enumerate((8, 16, 32)):
            if si > l:
                continue
            a = probs[f"alpha_{si}"][l - si]
            op = ops[int(np.argmax(a))]
            g.node(
                f"n{l}_{si}",
                f"{a.max():.2f}",
                pos=_pos(l + 1, s),
                fillcolor=OP_COLORS[op],
                tooltip=f"layer {l}, 1/{s}: {op}",
            )
            if l == 0:
                g.edge("stem", f"n{l}_{si}", penwidth="2")
                continue
            if si == 0:
                g.edge(f"n{l - 1}_0", f"n{l}_0", penwidth="2", color="#444444")
            elif l == si:
                g.edge(f"n{l - 1}_{si - 1}", f"n{l}_{si}", penwidth="2", color="#444444")
            else:
                b = probs[f"beta_{si}"][l - si - 1]
                g.edge(f"n{l - 1}_{si - 1}", f"n{l}_{si}", penwidth=f"{0.3 + 4 * b[0]:.2f}", color="#d62728")
                g.edge(f"n{l - 1}_{si}", f"n{l}_{si}", penwidth=f"{0.3 + 4 * b[1]:.2f}", color="#444444")
    legend = "   ".join(f"<font color='{OP_COLORS[o]}'>■</font> {SHORT[o]}" for o in ops)
    g.node(
        "legend",
        f"<node colour = most likely operator: {legend}<br/>edge width = path probability (red: from down)>",
        shape="plaintext",
        style="",
        pos=_pos((layers + 1) / 2, 32, 0.9),
        width="7",
        fontsize="10",
    )
    return g
