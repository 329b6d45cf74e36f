"""The report's figures, drawn from result groups (no model is loaded here).

Figures are made with ``matplotlib.figure.Figure`` directly, so drawing them sets no
process-wide matplotlib state (no pyplot, no backend switch).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
from matplotlib.figure import Figure

from fewlabels.core.atomic import atomic_savefig
from fewlabels.evaluate.plots import literal, plain_text
from fewlabels.study.results import (
    Group,
    label_order,
    methods_of,
    most_unlabeled,
    pm,
    upper_bound,
)

F = TypeVar("F", bound=Callable[..., Path])


def plain_figure(fn: F) -> F:
    """Draw ``fn``'s figure with LaTeX off: method and strategy names (user strings, shown
    through ``literal``) never become math text or TeX."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Path:
        with plain_text():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def colors(names: list[str]) -> dict[str, Any]:
    """A tab10 colour per name, in order."""
    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(names)}


def panels(n: int) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels, three to a row."""
    cols = min(3, max(1, n))
    rows = math.ceil(n / cols) if n else 1
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save(fig: Figure, path: Path) -> Path:
    """Lay out and write ``fig`` as a PNG (atomically)."""
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=100)


def _errorbar(ax: Any, gs: list[Group], x: list[float], **kwargs: Any) -> None:
    ax.errorbar(
        x,
        [100 * g.mean for g in gs],
        yerr=[100 * g.std for g in gs],
        marker="o",
        capsize=3,
        **kwargs,
    )


def _finish(ax: Any, title: str, xlabel: str, ylabel: str = "test accuracy (%)") -> None:
    ax.set_title(literal(title))
    ax.set_xlabel(literal(xlabel))
    ax.set_ylabel(literal(ylabel))
    ax.grid(alpha=0.3)


@plain_figure
def plot_vs_unlabeled(groups: list[Group], path: Path) -> Path:
    """Accuracy vs unlabeled amount: a panel per labeled amount, a line per method."""
    labels, methods = label_order(groups), methods_of(groups)
    col, upper = colors(methods), upper_bound(groups)
    fig, axes = panels(len(labels))
    for ax, lab in zip(axes, labels, strict=True):
        for m in methods:
            gs = sorted(
                (g for g in groups if g.method == m and g.labels == lab and g.role == "grid"),
                key=lambda g: g.n_unlabeled,
            )
            if gs and not gs[0].uses_unlabeled:  # a baseline without unlabeled data: a band
                g = gs[0]
                ax.axhline(
                    100 * g.mean, color=col[m], ls="--", label=literal(f"{m} (no unlabeled)")
                )
                lo, hi = 100 * (g.mean - g.std), 100 * (g.mean + g.std)
                ax.axhspan(lo, hi, color=col[m], alpha=0.12)
            elif gs:
                _errorbar(
                    ax, gs, [max(g.n_unlabeled, 1) for g in gs], color=col[m], label=literal(m)
                )
        if upper is not None:
            ax.axhline(100 * upper.mean, color="black", ls=":", label="all labels")
        ax.set_xscale("log")
        _finish(ax, f"{lab} labeled", "unlabeled images")
    if axes:
        axes[0].legend(fontsize=7)
    return save(fig, path)


@plain_figure
def plot_vs_labeled(groups: list[Group], path: Path) -> Path:
    """Accuracy vs labeled amount per method (each at its largest unlabeled amount)."""
    labels, methods = label_order(groups), methods_of(groups)
    col, upper = colors(methods), upper_bound(groups)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for m in methods:
        gs = [g for g in (most_unlabeled(groups, m, lab) for lab in labels) if g is not None]
        if not gs:
            continue
        sup = m == "supervised"
        _errorbar(
            ax,
            gs,
            [g.n_labeled for g in gs],
            color="black" if sup else col[m],
            lw=2.5 if sup else 1.5,
            label=literal(f"{m} (baseline)" if sup else m),
        )
    if upper is not None:
        ax.axhline(100 * upper.mean, color="black", ls=":", label=f"all labels ({pm(upper)}%)")
    ax.set_xscale("log")
    _finish(ax, "accuracy vs labeled amount (most unlabeled data)", "labeled images")
    ax.legend(fontsize=7)
    return save(fig, path)


@plain_figure
def plot_time_to_accuracy(groups: list[Group], path: Path) -> Path:
    """Validation accuracy vs training seconds: a panel per labeled amount, a line per method."""
    labels, methods = label_order(groups), methods_of(groups)
    col = colors(methods)
    fig, axes = panels(len(labels))
    for ax, lab in zip(axes, labels, strict=True):
        for m in methods:
            g = most_unlabeled(groups, m, lab)
            label: str | None = literal(m)  # on the method's first drawn line only
            for r in g.rows if g is not None else []:
                if r.curve:
                    t = [p["time_s"] for p in r.curve]
                    acc = [100 * p["val_acc"] for p in r.curve]
                    ax.plot(t, acc, color=col[m], alpha=0.85, marker=".", label=label)
                    label = None
        _finish(ax, f"{lab} labeled", "training seconds", "validation accuracy (%)")
    for ax in axes:  # the first panel with a line
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
            break
    return save(fig, path)


@plain_figure
def plot_vs_budget(groups: list[Group], path: Path) -> Path:
    """Accuracy vs labeling budget: a panel per method, a line per selection strategy."""
    sel = [g for g in groups if g.role == "grid" and g.strategy]
    bases = list(dict.fromkeys(g.base_method for g in sel))
    strategies = list(dict.fromkeys(g.strategy or "" for g in sel))
    col = colors(strategies)
    fig, axes = panels(len(bases))
    for ax, base in zip(axes, bases, strict=True):
        for st in strategies:
            by_lab: dict[float, Group] = {}
            for g in sel:  # the largest unlabeled amount at each budget
                if g.base_method != base or g.strategy != st:
                    continue
                if g.n_labeled not in by_lab or g.n_unlabeled > by_lab[g.n_labeled].n_unlabeled:
                    by_lab[g.n_labeled] = g
            pts = [by_lab[k] for k in sorted(by_lab)]
            if pts:
                _errorbar(ax, pts, [g.n_labeled for g in pts], color=col[st], label=literal(st))
        ax.set_xscale("log")
        _finish(ax, base, "labeling budget (labels in all)")
        ax.legend(fontsize=7, title="selection", title_fontsize=7)
    return save(fig, path)


@plain_figure
def plot_compute(means: list[tuple[str, float]], path: Path) -> Path:
    """Mean training seconds per cell, per method."""
    fig = Figure(figsize=(6.4, 0.5 + 0.45 * max(1, len(means))))
    ax = fig.subplots()
    ax.barh([literal(m) for m, _ in means], [s for _, s in means], color="tab:blue")
    ax.set_xlabel("training seconds per cell (mean)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return save(fig, path)


@plain_figure
def plot_vs_synthetic(families: dict[tuple[str, str, str], list[Group]], path: Path) -> Path:
    """Accuracy vs generated-image ratio: a panel per labeled amount, a line per pipeline
    and unlabeled amount (``families``: (method, labels, unlabeled) -> groups)."""
    names = list(dict.fromkeys(k[0] for k in families))
    labels = list(dict.fromkeys(k[1] for k in families))
    col = colors(names)
    fig, axes = panels(len(labels))
    for ax, lab in zip(axes, labels, strict=True):
        for (name, lab_, unl), gs in families.items():
            if lab_ == lab:
                gs = sorted(gs, key=lambda g: g.synthetic)
                x = [g.synthetic for g in gs]
                _errorbar(ax, gs, x, color=col[name], label=literal(f"{name} (unlabeled {unl})"))
        _finish(ax, f"{lab} labeled", "generated images (x the real pretraining pool)")
        ax.legend(fontsize=7)
    return save(fig, path)
