"""Plots of search runs, drawn from the run's history files (never from a live model)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import MaxNLocator


SCALE_NAMES = {8: "1/8", 16: "1/16", 32: "1/32"}


def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres `v` (halfway between neighbours; a lone centre spans ±0.5)."""
    v = np.asarray(v, float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _heat(ax, g: pd.DataFrame, **kw):
    """A heat-map of `g` (index: layer, columns: step) on the real step axis: the steps need not be evenly logged."""
    return ax.pcolormesh(_edges(g.columns.to_numpy()), _edges(g.index.to_numpy()), g.to_numpy(), shading="flat", **kw)


def plot_alpha_evolution(arch: pd.DataFrame, arch_set: str = "student", axes=None):
    """Heat-maps of alpha: one panel per (scale, operator), x = step, y = layer, colour = probability."""
    df = arch[(arch["arch_set"] == arch_set) & (arch["kind"] == "alpha")]
    scales = sorted(df["scale"].unique())
    ops = list(dict.fromkeys(df["choice"]))  # the space's operators, in alpha's order
    if axes is None:
        _, axes = plt.subplots(len(scales), len(ops), figsize=(2.2 * len(ops), 1.9 * len(scales)),
                               sharex=True, squeeze=False, layout="constrained")

    uniform = 1 / len(ops)
    dev = max(1e-4, float((df["prob"] - uniform).abs().max()))  # colours span the data's deviation from uniform
    norm = TwoSlopeNorm(vcenter=uniform, vmin=uniform - dev, vmax=uniform + dev)
    for r, s in enumerate(scales):
        for c, op in enumerate(ops):
            g = df[(df["scale"] == s) & (df["choice"] == op)].pivot_table(index="layer", columns="step", values="prob")
            ax = axes[r, c]
            im = _heat(ax, g, cmap="RdBu_r", norm=norm)
            if r == 0:
                ax.set_title(op, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{SCALE_NAMES[s]}\nlayer", fontsize=8)
            if r == len(scales) - 1:
                ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=8)
    cb = axes[0, 0].figure.colorbar(im, ax=axes, shrink=0.8)
    cb.set_label(f"alpha probability ({arch_set}); white = uniform (1/{len(ops)}), range = the data's",
                 fontsize=9)
    return axes


def plot_beta_gamma_evolution(arch: pd.DataFrame, arch_set: str = "student", axes=None):
    """One row per scale (1/8, 1/16, 1/32). Left: beta's probability of coming from the scale above ("down") per
    layer over steps (1/8 has a single input: no beta). Right: the change of gamma's expected width ratio
    (sum of p * width) per layer since the first logged step, each scale on its own colour range."""
    df = arch[arch["arch_set"] == arch_set]
    if axes is None:
        _, axes = plt.subplots(3, 2, figsize=(10, 6.6), squeeze=False, layout="constrained")
    b = df[(df["kind"] == "beta") & (df["choice"] == "down")]
    dev = max(1e-4, float((b["prob"] - 0.5).abs().max())) if len(b) else 0.5
    im = None
    for ax, s in zip(axes[:, 0], (8, 16, 32)):
        g = b[b["scale"] == s]
        if g.empty:
            ax.text(0.5, 0.5, f"{SCALE_NAMES[s]}: one input per node, no beta", ha="center", va="center",
                    fontsize=9, transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        im = _heat(ax, g.pivot_table(index="layer", columns="step", values="prob"), cmap="coolwarm",
                   vmin=0.5 - dev, vmax=0.5 + dev)
        ax.set_title(f"beta p(from down), {SCALE_NAMES[s]}", fontsize=9)
        ax.set_ylabel("layer", fontsize=9)
    if im is not None:
        axes[0, 0].figure.colorbar(im, ax=list(axes[1:, 0]), location="bottom", shrink=0.8, aspect=30).set_label(
            "beta: p(from down) (0.5 = undecided; range = the data's)", fontsize=8)
    gm = df[df["kind"] == "gamma"].copy()
    gm["wp"] = gm["choice"].map(_ratio) * gm["prob"]
    ew = gm.groupby(["scale", "layer", "step"])["wp"].sum().reset_index()
    # change of the expected width since the first logged step: the values barely move, so show the change
    ew["change"] = ew["wp"] - ew.groupby(["scale", "layer"])["wp"].transform("first")
    for ax, s in zip(axes[:, 1], (8, 16, 32)):
        g = ew[ew["scale"] == s]
        d = max(1e-4, float(g["change"].abs().max())) if len(g) else 1.0  # each scale its own range
        im = _heat(ax, g.pivot_table(index="layer", columns="step", values="change"), cmap="PuOr_r", vmin=-d, vmax=d)
        ax.set_title(f"gamma: change of the expected width ratio, {SCALE_NAMES[s]}", fontsize=9)
        ax.figure.colorbar(im, ax=ax, shrink=0.9).set_label("Δ width ratio", fontsize=8)
    for ax in axes.flat:
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=9)
    return axes


def _ratio(label: str) -> float:
    if "/" in label:
        a, b = label.split("/")
        return float(a) / float(b)
    return float(label)


def plotly_alpha_slider(arch: pd.DataFrame, arch_set: str = "student"):
    """Interactive plotly heat-map of alpha (nodes x operators) with a slider over logged steps."""
    import plotly.graph_objects as go

    df = arch[(arch["arch_set"] == arch_set) & (arch["kind"] == "alpha")].copy()
    df["node"] = df["scale"].map(SCALE_NAMES) + " L" + df["layer"].astype(str)
    steps = sorted(df["step"].unique())
    nodes = list(dict.fromkeys(df.sort_values(["scale", "layer"])["node"]))
    ops = list(dict.fromkeys(df["choice"]))  # the space's operators, in alpha's order

    def z(step):
        g = df[df["step"] == step].pivot_table(index="node", columns="choice", values="prob")
        return g.reindex(index=nodes, columns=ops).round(4).to_numpy()

    uniform = 1 / len(ops)
    dev = max(1e-4, float((df["prob"] - uniform).abs().max()))  # the data's range around uniform, not 0-1
    frames = [go.Frame(data=[go.Heatmap(z=z(s), x=ops, y=nodes, zmin=uniform - dev, zmax=uniform + dev,
                                        zmid=uniform, colorscale="RdBu_r",
                                        colorbar={"title": {"text": "p (white = uniform)"}},
                                        hovertemplate="node %{y} (scale, layer)<br>operator %{x}<br>"
                                                      f"p = %{{z:.4f}} at step {s} (uniform: {uniform:.3f})"
                                                      "<extra></extra>")],
                       name=str(s)) for s in steps]
    fig = go.Figure(data=frames[-1].data, frames=frames)
    fig.update_layout(
        title={"text": f"alpha of the {arch_set} per node<br><sup>drag the slider through the search; hover a cell"
                       "</sup>", "x": 0.02},
        margin={"t": 80}, height=140 + 14 * len(nodes),
        sliders=[{"active": len(steps) - 1, "currentvalue": {"prefix": "step "},
                  "steps": [{"label": str(s), "method": "animate",
                             "args": [[str(s)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]}
                            for s in steps]}])
    return fig


def plot_latency_lambda(steps: pd.DataFrame, epochs: pd.DataFrame, arch_set: str = "student",
                        band_fps: tuple[float, float] | None = None, changes: pd.DataFrame | None = None, axes=None):
    """Two panels over the steps: (top) the expected latency (ms, all parameters live) per step and the derived
    network's predicted latency (ms) per epoch, with the adaptive-λ band `band_fps` (FPS_min, FPS_max) drawn as
    the latency range 1000/FPS_max … 1000/FPS_min ms when given; (bottom) λ per step, and each adaptive change
    of `changes` (the run's ``lambda.csv``) as a marker at its new value (▲ doubled, ▼ halved). Returns the two
    axes."""
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(6.4, 4.2), sharex=True, height_ratios=(2.2, 1), layout="constrained")
    ax, ax2 = axes
    s = steps.dropna(subset=[f"latency_full_ms_{arch_set}"])
    ax.plot(s["step"], s[f"latency_full_ms_{arch_set}"], lw=1, label="expected latency (supernet)")
    e = epochs[(epochs["arch_set"] == arch_set) & (epochs["phase"] == "search")]
    ax.plot(e["step"], e["latency_ms"], "o-", ms=4, label="derived network (LUT sum), per epoch")
    if band_fps and band_fps[0] > 0 and band_fps[1] > 0:
        lo, hi = 1000 / band_fps[1], 1000 / band_fps[0]
        ax.axhspan(lo, hi, color="tab:green", alpha=0.15, lw=0,
                   label=f"λ band: {band_fps[0]:g}–{band_fps[1]:g} FPS = {lo:.2f}–{hi:.2f} ms")
    ax.set_ylabel("latency (ms)", fontsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax2.step(s["step"], s[f"lam_{arch_set}"], where="post", color="tab:red", lw=1.2, label="λ during the steps")
    if changes is not None and len(changes):
        c = changes[changes["arch_set"] == arch_set]
        up, down = c[c["new"] > c["old"]], c[c["new"] < c["old"]]
        if len(up):
            ax2.plot(up["step"], up["new"], "^", color="tab:red", ms=7, label="λ doubled (for the next epoch)")
        if len(down):
            ax2.plot(down["step"], down["new"], "v", color="tab:blue", ms=7, label="λ halved (for the next epoch)")
        ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax2.set_ylabel("λ", fontsize=8)
    ax2.set_xlabel("step", fontsize=8)
    for a in axes:
        a.grid(alpha=0.3)
        a.tick_params(labelsize=8)
    return axes


def plot_collapse(runs: dict[str, pd.DataFrame], axes=None):
    """Coarse vs decoupled, per search epoch of the student: share of skip (parameter-free) and
    zoomed operators on the derived paths, where the 1/32 branch first goes down, predicted latency,
    validation mIoU of the chosen branch pair. `runs`: {name: epochs frame}. A quantity that is the same
    in every epoch of every run gets no panel; a line under the panels names it and its value. `axes`: one per
    quantity that changes. Returns the axes."""
    styles = {"coarse": dict(color="tab:red", marker="o"), "decoupled": dict(color="tab:blue", marker="s"),
              "scaled": dict(color="tab:green", marker="^")}
    panels = [("skip_share", "skip share of path positions"), ("zoomed_share", "zoomed-operator share"),
              ("first_down_32", "1/32 branch: first down (layer)"), ("latency_ms", "predicted latency (ms)"),
              ("miou", "val mIoU (%)")]
    frames = {}
    for name, ep in runs.items():
        e = ep[(ep["arch_set"] == "student") & (ep["phase"] == "search")].copy()
        e["miou"] = [100 * r[f"miou_{r['ends']}"] for _, r in e.iterrows()]
        frames[name] = e
    values = {col: pd.concat([f[col] for f in frames.values()]) for col, _ in panels}
    constant = [(col, title) for col, title in panels if values[col].nunique(dropna=False) == 1]
    shown = [p for p in panels if p not in constant] or panels[:1]
    if axes is None:  # a caller's own axes: one per quantity that changes
        _, axes = plt.subplots(1, len(shown), figsize=(2.7 * len(shown), 3.0), layout="constrained", squeeze=False)
        axes = axes.ravel()
    for name, e in frames.items():
        for ax, (col, title) in zip(axes, shown):
            ax.plot(e["epoch"] + 1, e[col], label=name, ms=4, **styles.get(name, {}))
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("search epoch", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    if constant:
        axes[0].figure.supxlabel("the same in every epoch of both runs, not drawn: " + "; ".join(
            f"{title.split(' (')[0]} = {values[col].iloc[0]:g}" for col, title in constant), fontsize=8)
    axes[0].legend(fontsize=8)
    return axes


def op_mass(arch: pd.DataFrame, arch_set: str = "student") -> pd.DataFrame:
    """Per logged step: the mean alpha probability of skip, of the zoomed operators, and alpha's
    normalised entropy, over all nodes of `arch_set` (columns skip, zoomed, entropy)."""
    df = arch[(arch["arch_set"] == arch_set) & (arch["kind"] == "alpha")]
    n_nodes = df.groupby("step")[["scale", "layer"]].apply(lambda g: len(g.drop_duplicates()))
    skip = df[df["choice"] == "skip"].groupby("step")["prob"].sum() / n_nodes
    zoom = df[df["choice"].isin(["zoomed_conv", "zoomed_conv_2x"])].groupby("step")["prob"].sum() / n_nodes
    p = df["prob"].clip(lower=1e-12)
    ent = (-(p * np.log(p))).groupby(df["step"]).sum() / n_nodes / np.log(df["choice"].nunique())
    return pd.DataFrame({"skip": skip, "zoomed": zoom, "entropy": ent})


def plot_op_mass(runs: dict[str, pd.DataFrame], axes=None):
    """Cheap-operator mass and alpha entropy per step for several runs. `runs`: {name: arch frame}."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 2.8), layout="constrained")
    styles = {"coarse": "tab:red", "decoupled": "tab:blue"}
    for name, arch in runs.items():
        m = op_mass(arch)
        for ax, col, title in zip(axes, ("skip", "zoomed"), ("mean p(skip)", "mean p(zoomed ops)")):
            ax.plot(m.index, m[col], label=name, color=styles.get(name))
            ax.set_title(title, fontsize=8)
        axes[2].plot(m.index, m["entropy"], label=name, color=styles.get(name))
        axes[2].set_title("alpha entropy (1 = uniform)", fontsize=8)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].axhline(0.2, color="grey", lw=0.6, ls=":")
    axes[1].axhline(0.4, color="grey", lw=0.6, ls=":")
    axes[0].legend(fontsize=8)
    return axes
