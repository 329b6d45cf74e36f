"""The report's sections: each a small function from the study's results to a typed
``Section`` (plain-words summary lines, tables, figures, notes), rendered by
``study.render`` to HTML and Markdown.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.evaluate.plots import plot_confusion
from fewlabels.study import figures as F
from fewlabels.study.results import (
    Group,
    Row,
    best_group,
    count,
    label_order,
    methods_of,
    most_unlabeled,
    pm,
    stat,
    summed_confusion,
    time_to,
    upper_bound,
)
from fewlabels.study.tsne import plot_tsne, saved_embeddings


@dataclass
class Table:
    """A titled table of text cells."""

    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Picture:
    """A PNG in the study folder and its caption."""

    caption: str
    path: Path


@dataclass
class Section:
    """A part of the report: summary lines, tables, figures and notes (why a figure is
    missing)."""

    name: str
    summary: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Picture] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Results:
    """What every section reads: the study's rows, groups and runs, and where figures go."""

    rows: list[Row]
    groups: list[Group]
    runs: dict[str, dict[str, Any]]
    study_dir: Path
    fig_dir: Path
    options: dict[str, Any] = field(default_factory=dict)


# -- summary -------------------------------------------------------------------------------
def summary_section(res: Results) -> Section:
    """The means at each labeled amount (the verdict says which differences hold), the
    upper bound, and what failed or is unfinished."""
    groups, rows = res.groups, res.rows
    lines = [s for lab in label_order(groups) if (s := _means(groups, lab))]
    upper = upper_bound(groups)
    if upper is not None:
        lines.append(
            f"Supervised training on all {count(upper.n_labeled)} labels reaches {pm(upper)}%."
        )
    failed = sum(r.status == "failed" for r in rows)
    if failed:
        lines.append(f"{failed} cell(s) failed; see the table of failures.")
    unfinished = sum(r.status in ("pending", "running") for r in rows)
    if unfinished:
        lines.append(f"{unfinished} cell(s) have not finished yet; rerun the study to resume.")
    return Section("summary", summary=lines)


def _means(groups: list[Group], lab: str) -> str | None:
    """Each method's mean test accuracy at ``lab`` (its most unlabeled data), in the
    study's order: no ranking here, the verdict says which differences hold."""
    gs = [g for m in methods_of(groups) if (g := most_unlabeled(groups, m, lab)) is not None]
    if not gs:
        return None
    seeds = sorted({len(g.accs) for g in gs})
    n = "/".join(map(str, seeds))
    parts = [
        f"{g.method} {pm(g)}%"
        + (f" with {count(g.n_unlabeled)} unlabeled images" if g.uses_unlabeled else "")
        for g in gs
    ]
    return (
        f"At {lab} labeled ({count(gs[0].n_labeled)} images), mean test accuracy over "
        f"{n} seed(s): " + "; ".join(parts) + "."
    )


# -- tables --------------------------------------------------------------------------------
def tables_section(res: Results) -> Section:
    """Accuracy, time to accuracy, compute, and the cells without a result."""
    accuracies = [float(a) for a in res.options.get("accuracies", [0.5, 0.7, 0.9])]
    tables = [
        accuracy_table(res.groups),
        time_to_accuracy_table(res.groups, accuracies),
        compute_table(res.rows),
    ]
    fails = [[r.cell, r.error or r.status] for r in res.rows if r.status != "done"]
    if fails:
        tables.append(Table("Cells without a result", ["cell", "status / error"], fails))
    return Section("tables", tables=tables)


def accuracy_table(groups: list[Group]) -> Table:
    """Test accuracy per group, mean ± std over seeds."""
    body = []
    for g in sorted(groups, key=lambda g: (g.role != "grid", g.n_labeled, g.method, g.n_unlabeled)):
        body.append(
            [
                g.method,
                g.labels,
                count(g.n_labeled),
                g.unlabeled if g.uses_unlabeled else "-",
                count(g.n_unlabeled) if g.uses_unlabeled else "-",
                str(len(g.accs)),
                pm(g),
                f"{100 * stat(g.f1s)[0]:.1f}",
            ]
        )
    header = ["method", "labels", "labeled", "unlabeled", "unlabeled images", "seeds"]
    return Table(
        "Test accuracy (mean ± std over seeds, %)", [*header, "accuracy", "macro-F1"], body
    )


def time_to_accuracy_table(groups: list[Group], accuracies: list[float]) -> Table:
    """Median training seconds to each validation accuracy (most unlabeled data)."""
    body = []
    for lab in label_order(groups):
        for m in methods_of(groups):
            g = most_unlabeled(groups, m, lab)
            if g is None:
                continue
            cells = []
            for a in accuracies:
                ts = [t for t in (time_to(r.curve, a) for r in g.rows) if t is not None]
                n = f"({len(ts)}/{len(g.rows)})"
                cells.append(f"{np.median(ts):.1f} s {n}" if ts else "not reached")
            body.append([m, lab, *cells])
    return Table(
        "Training seconds to reach a validation accuracy (median over seeds that "
        "reached it; most unlabeled data)",
        ["method", "labels", *[f"{100 * a:g}%" for a in accuracies]],
        body,
    )


def compute_means(rows: list[Row]) -> dict[str, list[Row]]:
    """The finished rows of each method."""
    out: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.status == "done":
            out[r.method].append(r)
    return out


def compute_table(rows: list[Row]) -> Table:
    """Training and wall seconds per cell, and images per second, per method."""
    body = []
    for m, rs in compute_means(rows).items():
        ips = [r.img_per_s for r in rs if r.img_per_s]
        body.append(
            [
                m,
                str(len(rs)),
                f"{np.mean([r.train_seconds or 0.0 for r in rs]):.1f}",
                f"{np.mean([r.wall_seconds for r in rs]):.1f}",
                f"{np.mean(ips):.0f}" if ips else "-",
            ]
        )
    return Table(
        "Compute per cell (a pipeline's runs added up; images/s through the "
        "backbone of its last run)",
        ["method", "cells", "train s", "wall s", "images/s"],
        body,
    )


# -- figures -------------------------------------------------------------------------------
def figures_section(res: Results) -> Section:
    """The accuracy figures, time to accuracy, compute, the best method's confusion matrix
    (summed over seeds) and the t-SNE of its best seed."""
    sec = Section("figures")
    groups, d = res.groups, res.fig_dir
    add = sec.figures.append
    if any(g.role == "grid" and g.strategy for g in groups):
        caption = "Accuracy vs labeling budget per selection strategy (mean ± std over seeds)"
        add(Picture(caption, F.plot_vs_budget(groups, d / "acc_vs_budget.png")))
    if any(g.role == "grid" for g in groups):
        caption = (
            "Accuracy vs amount of unlabeled data (mean ± std over seeds; dashed: "
            "methods that use no unlabeled data; dotted: all labels)"
        )
        add(Picture(caption, F.plot_vs_unlabeled(groups, d / "acc_vs_unlabeled.png")))
        caption = (
            "Accuracy vs labeled amount, with the supervised baseline and the "
            "all-labels upper bound"
        )
        add(Picture(caption, F.plot_vs_labeled(groups, d / "acc_vs_labeled.png")))
        if any(r.curve for g in groups for r in g.rows):
            caption = (
                "Time to accuracy: validation accuracy vs training seconds (every "
                "seed; a pipeline's runs one after the other)"
            )
            add(Picture(caption, F.plot_time_to_accuracy(groups, d / "time_to_accuracy.png")))
        else:
            sec.notes.append("No time-to-accuracy figure: no run has a validation curve.")
    means = [
        (m, float(np.mean([r.train_seconds or 0.0 for r in rs])))
        for m, rs in compute_means(res.rows).items()
    ]
    if means:
        add(Picture("Training seconds per cell", F.plot_compute(means, d / "compute.png")))
    best = best_group(groups)
    if best is not None:
        _best_model_figures(res, best, sec)
    return sec


def _best_model_figures(res: Results, group: Group, sec: Section) -> None:
    summed = summed_confusion(group)
    if summed is not None:
        mat, names, n = summed
        title = f"{group.method}: {pm(group)}% over {n} seed(s)"
        path = plot_confusion(mat, names, res.fig_dir / "confusion.png", title=title)
        caption = (
            f"Confusion matrix of the best method at the fewest labels ({group.method}, "
            f"{group.labels}, unlabeled={group.unlabeled}), summed over {n} seed(s)"
        )
        sec.figures.append(Picture(caption, path))
    best = max(group.rows, key=lambda r: r.accuracy or 0.0)
    if not res.options.get("tsne", True):
        return
    base = next(
        (
            r
            for r in res.rows
            if r.method == "supervised"
            and r.role == "grid"
            and r.labels == best.labels
            and r.seed == best.seed
            and r.status == "done"
            and r is not best
        ),
        None,
    )
    _tsne_figure(res, [best] if base is None else [best, base], sec)


def _tsne_figure(res: Results, rows: list[Row], sec: Section) -> None:
    """The t-SNE panels of ``rows`` (the best model, then the supervised baseline) from the
    embeddings their runs saved; a row whose runs saved none is a note instead."""
    points = int(res.options.get("tsne_points", 1000))
    try:
        found = [(r, saved_embeddings(r, res.study_dir)) for r in rows]
        panels = [(r, saved) for r, saved in found if saved is not None]
        path = plot_tsne(panels, points, res.fig_dir / "tsne.png") if panels else None
    except Exception as e:  # the picture is optional; say why it is missing
        sec.notes.append(f"t-SNE panel unavailable: {' '.join(str(e).split())[:200]}")
        return
    for r, saved in found:
        if saved is None:
            sec.notes.append(
                f"No t-SNE panel of {r.method} ({r.labels}, seed {r.seed}): its runs saved "
                "no embeddings."
            )
    if path is not None:
        caption = "t-SNE of validation features: " + " and ".join(
            "the best model at the fewest labels" if r is rows[0] else "the supervised baseline"
            for r, _ in panels
        )
        sec.figures.append(Picture(caption, path))
