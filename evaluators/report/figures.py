"""The report's figures, drawn with matplotlib's object API and the Agg canvas.

No ``pyplot``: figures are ``matplotlib.figure.Figure`` objects saved as PNG, so drawing a
report never changes the backend of a notebook or GUI session that imports rprim, and needs
no display. Every function takes plain data (lists, dicts) and returns the Figure, so tests
can read back what was drawn (bar heights, matrix values) and compare it with the tables.

matplotlib is optional (``pip install 'rprim[report]'``); :func:`require` turns its absence
into a one-line error naming the extra.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from rprim.core import RprimError, install_hint

COLORS = {"baseline": "#7f7f7f", "gradstack": "#1f77b4", "midas": "#d62728"}
CYCLE = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def require() -> None:
    """RprimError naming the ``report`` extra unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RprimError("figures need matplotlib, which is not installed; "
                         f"{install_hint('report')}") from None


def _figure(width: float, height: float) -> Any:
    require()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def color(name: str, index: int) -> str:
    """A stable color per method name (baseline grey, GradStack blue, MIDAS red)."""
    for key, c in COLORS.items():
        if key in name.lower():
            return c
    return CYCLE[index % len(CYCLE)]


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (the caller writes into a temp folder published atomically)."""
    fig.savefig(str(path), format="png")
    return Path(path)


def gain_bars(groups: Sequence[str], gains: Mapping[str, Sequence[float]],
              errors: Mapping[str, Sequence[tuple[float, float]]] | None = None,
              baseline: str = "baseline") -> Any:
    """Grouped bars: accuracy gain (points) of each model over ``baseline`` per task group
    (the paper's Figure 1b). ``gains[model][i]`` is the gain on ``groups[i]``; ``errors`` the
    95% interval (lo, hi) of that gain."""
    fig = _figure(max(6.0, 0.75 * len(groups) + 2), 3.8)
    ax = fig.add_subplot()
    models = list(gains)
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        xs = _bar_xs(len(groups), width, j)
        ys = [100 * g if _finite(g) else 0.0 for g in gains[model]]
        ax.bar(xs, ys, width, label=model, color=color(model, j), gid=f"gain:{model}")
        if errors is None:
            continue
        with_err = [(x, g, e) for x, g, e in zip(xs, gains[model], errors[model]) if _finite(g, *e)]
        if with_err:  # groups without an interval (fine-tuning: mean over seeds) get no error bar
            ax.errorbar([x for x, _, _ in with_err], [100 * g for _, g, _ in with_err],
                        yerr=[[100 * (g - e[0]) for _, g, e in with_err], [100 * (e[1] - g) for _, g, e in with_err]],
                        fmt="none", ecolor="black", elinewidth=0.8, capsize=2, alpha=0.6)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel(f"accuracy gain over {baseline} (points)")
    ax.set_title(f"Gain over {baseline} per task group (bars: 95% interval)")
    if models:
        ax.legend(fontsize=8)
    return fig


def _bar_xs(n_groups: int, width: float, j: int) -> list[float]:
    """x positions of model j's bars, side by side within each group's unit-wide slot."""
    return [i - 0.4 + width * (j + 0.5) for i in range(n_groups)]


def _finite(*values: Any) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def accuracy_bars(groups: Sequence[str], acc: Mapping[str, Sequence[float]],
                  ci: Mapping[str, Sequence[tuple[float, float]]],
                  chance: Sequence[float | None] = ()) -> Any:
    """Grouped bars of accuracy per task group with Wilson 95% intervals; chance as ticks."""
    fig = _figure(max(6.0, 0.75 * len(groups) + 2), 3.8)
    ax = fig.add_subplot()
    models = list(acc)
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        xs = _bar_xs(len(groups), width, j)
        ys = [a if _finite(a) else 0.0 for a in acc[model]]
        lo = [max(0.0, a - c[0]) if _finite(a, *c) else 0.0 for a, c in zip(acc[model], ci[model])]
        hi = [max(0.0, c[1] - a) if _finite(a, *c) else 0.0 for a, c in zip(acc[model], ci[model])]
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=model, color=color(model, j),
               error_kw={"elinewidth": 0.8, "alpha": 0.6})
    for i, c in enumerate(chance):
        if c is not None:
            ax.hlines(c, i - 0.45, i + 0.45, colors="black", linestyles="dotted", linewidth=1)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per task group (95% Wilson intervals; dotted: chance)")
    if models:
        ax.legend(fontsize=8)
    return fig


def loss_accuracy(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
                  chance: Mapping[str, float | None] | None = None) -> Any:
    """Accuracy against validation loss across checkpoints (the paper's Figure 4): one panel
    per task group, one line per model; ``panels[group][model]`` = [(val_loss, accuracy)]."""
    names = list(panels)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure(4.0 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    models = sorted({m for p in panels.values() for m in p})
    for i, group in enumerate(names):
        ax = axes[i // cols][i % cols]
        for j, model in enumerate(models):
            pts = sorted(panels[group].get(model, []), reverse=True)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                        label=model, color=color(model, j))
        c = (chance or {}).get(group)
        if c is not None:
            ax.axhline(c, color="black", linestyle="dotted", linewidth=1)
        ax.invert_xaxis()  # training goes left to right: loss falls
        ax.set_title(group, fontsize=10)
        ax.set_xlabel("validation loss")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    if names and models:
        axes[0][0].legend(fontsize=7)
    return fig


def heatmaps(maps: Sequence[tuple[str, Sequence[Sequence[float]]]], title: str = "") -> Any:
    """One heat map per (label, square matrix) side by side (Figure 3: block similarity), all
    on one color scale: 0..1, or from the most negative similarity when there is one."""
    n = max(1, len(maps))
    fig = _figure(min(3.2 * n, 16), 3.4)
    axes = fig.subplots(1, n, squeeze=False)[0]
    low = min([0.0] + [v for _, m in maps for row in m for v in row])
    vmin = math.floor(low * 10) / 10
    image = None
    for ax, (label, m) in zip(axes, maps):
        image = ax.imshow(m, vmin=vmin, vmax=1, cmap="viridis", origin="lower")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("block")
        ax.set_ylabel("block")
        ticks = list(range(len(m)))
        ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=7)
        if len(m) <= 8:  # small maps: print the values
            for i, row in enumerate(m):
                for j, v in enumerate(row):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if v > vmin + 0.6 * (1 - vmin) else "white")
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def linearity(curves: Mapping[str, Sequence[Mapping[str, float]]]) -> Any:
    """Per-layer R^2 and cosine of the best linear map from a layer's input to its residual
    update (the paper's Figure 6), one line per model; ``curves[model]`` = [{layer, r2, cosine}]."""
    fig = _figure(9.0, 3.4)
    ax_r2, ax_cos = fig.subplots(1, 2)
    for j, (model, rows) in enumerate(curves.items()):
        layers = [r["layer"] + 1 for r in rows]
        ax_r2.plot(layers, [r["r2"] for r in rows], marker="o", markersize=3, label=model,
                   color=color(model, j))
        ax_cos.plot(layers, [r["cosine"] for r in rows], marker="o", markersize=3, label=model,
                    color=color(model, j))
    for ax, what in ((ax_r2, "R² of the linear fit"), (ax_cos, "cosine(prediction, update)")):
        ax.set_xlabel("layer")
        ax.set_ylabel(what)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax_r2.set_title("Linearity of each layer's residual update", fontsize=10)
    if curves:
        ax_r2.legend(fontsize=8)
    return fig
