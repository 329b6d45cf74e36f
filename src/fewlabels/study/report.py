"""The study report, made from the store alone: results.csv, report.md, report.html + PNGs.

The HTML is self-contained: inline CSS, relative ``<img>`` paths to the PNGs beside it,
no scripts and nothing fetched from the network. The plain-words summary is computed
from the numbers: the winner at each labeled amount, and the point where more unlabeled
data stops helping (a gain below the seed-to-seed spread).
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fewlabels.core.atomic import atomic_savefig, atomic_write_text
from fewlabels.core.errors import ConfigError
from fewlabels.study.backend import check_location, find_store, open_store

CSV_COLUMNS = [
    "cell",
    "method",
    "pipeline",
    "role",
    "labels",
    "labels_per_class",
    "labeled_fraction",
    "unlabeled",
    "n_labeled",
    "n_unlabeled",
    "seed",
    "status",
    "accuracy",
    "macro_f1",
    "steps",
    "train_seconds",
    "wall_seconds",
    "img_per_s",
    "error",
    "run_key",
    "strategy",
    "synthetic",
]


@dataclass
class Report:
    """Paths of what ``write_report`` wrote."""

    html: Path
    markdown: Path
    csv: Path
    figures: list[Path] = field(default_factory=list)


def _rows(cells: list[dict], runs: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per cell: its settings, the status of its pipeline and its final metrics."""
    out = []
    for c in cells:
        jobs = [runs[k] for k in c["job_keys"] if k in runs]
        final = runs.get(c["run_key"], {})
        statuses = [j["status"] for j in jobs]
        bad = next((j for j in jobs if j["status"] == "failed"), None)
        status = (
            "failed" if bad else next((s for s in ("running", "pending") if s in statuses), "done")
        )
        m = final.get("metrics") or {}
        train_s = sum(float((j.get("metrics") or {}).get("train_seconds") or 0) for j in jobs)
        curve: list[dict] = []
        offset = 0.0
        for j in jobs:  # a pipeline's curves one after the other on one clock
            for r in j.get("curve") or []:
                if r.get("val_acc") is not None and r.get("time_s") is not None:
                    curve.append({"time_s": offset + float(r["time_s"]), "val_acc": r["val_acc"]})
            offset += float((j.get("metrics") or {}).get("train_seconds") or 0)
        out.append(
            {
                "cell": c["id"],
                "method": c["method"],
                "pipeline": c["pipeline"],
                "role": c["role"],
                "labels": _labels(c),
                "labels_per_class": c["labels_per_class"],
                "labeled_fraction": c["labeled_fraction"],
                "unlabeled": c["unlabeled"],
                "n_labeled": c["n_labeled"],
                "n_unlabeled": c["n_unlabeled"],
                "uses_unlabeled": c["uses_unlabeled"],
                "strategy": c.get("strategy"),
                "synthetic": c.get("synthetic") or 0.0,
                "seed": c["seed"],
                "status": status,
                "accuracy": m.get("accuracy") if status == "done" else None,
                "macro_f1": m.get("macro_f1") if status == "done" else None,
                "steps": m.get("steps"),
                "train_seconds": round(train_s, 2) if jobs else None,
                "wall_seconds": round(sum(float(j.get("seconds") or 0) for j in jobs), 2),
                "img_per_s": m.get("img_per_s"),
                "error": (bad or {}).get("error") or "",
                "run_key": c["run_key"],
                "confusion": m.get("confusion"),
                "class_names": m.get("class_names"),
                "curve": curve,
                "job_keys": c["job_keys"],
            }
        )
    return out


def _labels(c: dict) -> str:
    if c.get("labels_per_class") is not None:
        return f"{c['labels_per_class']}/class"
    if c.get("labeled_fraction") is not None:
        return f"{100 * c['labeled_fraction']:g}%"
    return "all"


def _stat(values: list[float]) -> tuple[float, float]:
    """Mean and seed-to-seed standard deviation (sample std; 0 for one seed)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@dataclass
class Group:
    """A cell over its seeds."""

    method: str
    labels: str
    unlabeled: str
    n_labeled: float
    n_unlabeled: float
    uses_unlabeled: bool
    role: str
    accs: list[float]
    f1s: list[float]
    rows: list[dict]

    @property
    def mean(self) -> float:
        return _stat(self.accs)[0]

    @property
    def std(self) -> float:
        return _stat(self.accs)[1]


def _groups(rows: list[dict]) -> list[Group]:
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["method"], r["labels"], r["unlabeled"])].append(r)
    out = []
    for (method, labels, unl), rs in by.items():
        done = [r for r in rs if r["accuracy"] is not None]
        if not done:
            continue
        out.append(
            Group(
                method,
                labels,
                unl,
                float(np.mean([r["n_labeled"] for r in rs])),
                float(np.mean([r["n_unlabeled"] for r in rs])),
                bool(rs[0]["uses_unlabeled"]),
                rs[0]["role"],
                [r["accuracy"] for r in done],
                [r["macro_f1"] for r in done],
                done,
            )
        )
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _pm(g: Group) -> str:
    return f"{100 * g.mean:.1f} ± {100 * g.std:.1f}" if len(g.accs) > 1 else f"{100 * g.mean:.1f}"


def _n(x: float) -> str:
    return f"{round(x):,}"


# -- figures ---------------------------------------------------------------------------------
def _label_order(groups: list[Group]) -> list[str]:
    grid = [g for g in groups if g.role == "grid"]
    return [lab for lab, _ in sorted({(g.labels, g.n_labeled) for g in grid}, key=lambda t: t[1])]


def _methods(groups: list[Group]) -> list[str]:
    seen: list[str] = []
    for g in groups:
        if g.role == "grid" and g.method not in seen:
            seen.append(g.method)
    return seen


def _colors(methods: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _panels(n: int) -> tuple[Any, list[Any]]:
    cols = min(3, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


def _upper(groups: list[Group]) -> Group | None:
    return next((g for g in groups if g.role == "upper_bound"), None)


def plot_vs_unlabeled(groups: list[Group], path: Path) -> Path:
    """Accuracy vs unlabeled amount: a panel per labeled amount, a line per method."""
    labels, methods = _label_order(groups), _methods(groups)
    colors, upper = _colors(methods), _upper(groups)
    fig, axes = _panels(len(labels))
    for ax, lab in zip(axes, labels, strict=True):
        for m in methods:
            gs = sorted(
                (g for g in groups if g.method == m and g.labels == lab and g.role == "grid"),
                key=lambda g: g.n_unlabeled,
            )
            if not gs:
                continue
            if not gs[0].uses_unlabeled:  # a baseline that ignores unlabeled data: a band
                g = gs[0]
                ax.axhline(100 * g.mean, color=colors[m], ls="--", label=f"{m} (no unlabeled)")
                ax.axhspan(
                    100 * (g.mean - g.std), 100 * (g.mean + g.std), color=colors[m], alpha=0.12
                )
                continue
            x = [max(g.n_unlabeled, 1) for g in gs]
            ax.errorbar(
                x,
                [100 * g.mean for g in gs],
                yerr=[100 * g.std for g in gs],
                marker="o",
                capsize=3,
                color=colors[m],
                label=m,
            )
        if upper is not None:
            ax.axhline(100 * upper.mean, color="black", ls=":", label="all labels")
        ax.set_xscale("log")
        ax.set_title(f"{lab} labeled")
        ax.set_xlabel("unlabeled images")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    if axes:
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def _most_unlabeled(groups: list[Group], method: str, lab: str) -> Group | None:
    gs = [g for g in groups if g.method == method and g.labels == lab and g.role == "grid"]
    return max(gs, key=lambda g: g.n_unlabeled) if gs else None


def plot_vs_labeled(groups: list[Group], path: Path) -> Path:
    """Accuracy vs labeled amount per method (each at its largest unlabeled amount)."""
    labels, methods = _label_order(groups), _methods(groups)
    colors, upper = _colors(methods), _upper(groups)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in methods:
        gs = [g for g in (_most_unlabeled(groups, m, lab) for lab in labels) if g is not None]
        if not gs:
            continue
        sup = m == "supervised"
        ax.errorbar(
            [g.n_labeled for g in gs],
            [100 * g.mean for g in gs],
            yerr=[100 * g.std for g in gs],
            marker="o",
            capsize=3,
            color="black" if sup else colors[m],
            lw=2.5 if sup else 1.5,
            label=f"{m} (baseline)" if sup else m,
        )
    if upper is not None:
        ax.axhline(100 * upper.mean, color="black", ls=":", label=f"all labels ({_pm(upper)}%)")
    ax.set_xscale("log")
    ax.set_xlabel("labeled images")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs labeled amount (most unlabeled data)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_time_to_accuracy(groups: list[Group], path: Path) -> Path:
    """Validation accuracy vs training seconds: a panel per labeled amount, a line per method."""
    labels, methods = _label_order(groups), _methods(groups)
    colors = _colors(methods)
    fig, axes = _panels(len(labels))
    for ax, lab in zip(axes, labels, strict=True):
        for m in methods:
            g = _most_unlabeled(groups, m, lab)
            if g is None:
                continue
            label: str | None = m  # on the method's first drawn line only
            for r in g.rows:
                if r["curve"]:
                    ax.plot(
                        [p["time_s"] for p in r["curve"]],
                        [100 * p["val_acc"] for p in r["curve"]],
                        color=colors[m],
                        alpha=0.85,
                        marker=".",
                        label=label,
                    )
                    label = None
        ax.set_title(f"{lab} labeled")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes:  # the first panel with a line
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
            break
    return _save(fig, path)


def plot_vs_budget(groups: list[Group], path: Path) -> Path:
    """Accuracy vs labeling budget: a panel per method, a line per selection strategy."""
    sel = [g for g in groups if g.role == "grid" and g.rows[0].get("strategy")]
    bases: list[str] = []
    for g in sel:
        base = g.method.removesuffix(f" [{g.rows[0]['strategy']}]")
        if base not in bases:
            bases.append(base)
    strategies = list(dict.fromkeys(g.rows[0]["strategy"] for g in sel))
    colors = _colors(strategies)
    fig, axes = _panels(len(bases))
    for ax, base in zip(axes, bases, strict=True):
        for st in strategies:
            gs = [g for g in sel if g.method == f"{base} [{st}]"]
            by_lab: dict[float, Group] = {}
            for g in gs:  # the largest unlabeled amount at each budget
                if g.n_labeled not in by_lab or g.n_unlabeled > by_lab[g.n_labeled].n_unlabeled:
                    by_lab[g.n_labeled] = g
            pts = [by_lab[k] for k in sorted(by_lab)]
            if pts:
                ax.errorbar(
                    [g.n_labeled for g in pts],
                    [100 * g.mean for g in pts],
                    yerr=[100 * g.std for g in pts],
                    marker="o",
                    capsize=3,
                    color=colors[st],
                    label=st,
                )
        ax.set_xscale("log")
        ax.set_title(base)
        ax.set_xlabel("labeling budget (labels in all)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="selection", title_fontsize=7)
    return _save(fig, path)


def plot_compute(table: list[list[str]], means: list[tuple[str, float]], path: Path) -> Path:
    """Mean training seconds per cell, per method."""
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * max(1, len(means))))
    ax.barh([m for m, _ in means], [s for _, s in means], color="tab:blue")
    ax.set_xlabel("training seconds per cell (mean)")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def _time_to(curve: list[dict], acc: float) -> float | None:
    return next((p["time_s"] for p in curve if p["val_acc"] >= acc), None)


def _tsne(
    best: dict, other: dict | None, runs: dict[str, dict], study_dir: Path, points: int, path: Path
) -> Path:
    """t-SNE of the test-set features of the best model (and the supervised baseline)."""
    import torch
    from sklearn.manifold import TSNE

    from fewlabels.data import load_dataset
    from fewlabels.evaluate.inference import load_model

    panels = [r for r in (best, other) if r is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, r in zip(axes[0], panels, strict=True):
        model = None
        for key in reversed(r["job_keys"]):
            folder = study_dir / "runs" / key
            for name in ("model.pt", "checkpoint.pt"):
                if (folder / name).exists():
                    try:
                        model = load_model(folder / name)
                        break
                    except Exception:  # an encoder-only file: try the next
                        continue
            if model is not None:
                break
        if model is None:
            raise ConfigError(f"no model file for {r['cell']}")
        cfg = runs[r["job_keys"][-1]]["spec"].get("config") or runs[r["job_keys"][-1]]["spec"].get(
            "probe", {}
        )
        ds = load_dataset(cfg.get("test") or cfg["data"])
        test = ds.test if ds.test is not None else ds.train
        gen = np.random.default_rng(0)
        idx = np.sort(gen.permutation(len(test))[: min(points, len(test))])
        x = test.images[torch.from_numpy(idx)].float().div(255)
        with torch.no_grad():
            feats = model.network.features(x.contiguous(memory_format=torch.channels_last))
        emb = TSNE(
            2, perplexity=min(30.0, max(5.0, len(idx) / 10)), init="pca", random_state=0
        ).fit_transform(feats.float().numpy())
        y = test.labels[torch.from_numpy(idx)].numpy()
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10" if y.max() < 10 else "tab20", s=6)
        ax.set_title(
            f"{r['method']}, {r['labels']}, seed {r['seed']}: {_pct(r['accuracy'])}", fontsize=9
        )
        ax.set_xticks([])
        ax.set_yticks([])
        if test.num_classes <= 20:
            ax.legend(*sc.legend_elements(), fontsize=6, loc="best", markerscale=0.7)
    return _save(fig, path)


# -- tables and summary ----------------------------------------------------------------------
def _summary(groups: list[Group], rows: list[dict]) -> list[str]:
    out: list[str] = []
    labels = _label_order(groups)
    for lab in labels:
        gs = [g for g in groups if g.labels == lab and g.role == "grid"]
        best_per_method = {}
        for g in gs:
            if g.method not in best_per_method or g.mean > best_per_method[g.method].mean:
                best_per_method[g.method] = g
        ranked = sorted(best_per_method.values(), key=lambda g: -g.mean)
        if not ranked:
            continue
        win = ranked[0]
        unl = f" with {_n(win.n_unlabeled)} unlabeled images" if win.uses_unlabeled else ""
        text = f"At {lab} labeled ({_n(win.n_labeled)} images), {win.method} wins: {_pm(win)}%{unl}"
        sup = best_per_method.get("supervised")
        if sup is not None and sup is not win:
            text += f", {100 * (win.mean - sup.mean):+.1f} points over supervised ({_pm(sup)}%)"
        if len(ranked) > 1:
            second = ranked[1]
            spread = max(win.std, second.std)
            if win.mean - second.mean < spread:
                text += (
                    f"; but {second.method} ({_pm(second)}%) is within the seed-to-seed "
                    "spread, so the order of these two is not settled"
                )
        out.append(text + ".")
    for lab in labels:
        for m in _methods(groups):
            gs = sorted(
                (
                    g
                    for g in groups
                    if g.method == m and g.labels == lab and g.role == "grid" and g.uses_unlabeled
                ),
                key=lambda g: g.n_unlabeled,
            )
            if len(gs) < 2:
                continue
            stop = None
            for a, b in itertools.pairwise(gs):
                gain, spread = b.mean - a.mean, max(a.std, b.std)
                if gain < spread or gain <= 0:
                    stop = (a, b, gain, spread)
                    break
            if stop is None:
                out.append(
                    f"{m} at {lab}: each step up in unlabeled data, to {_n(gs[-1].n_unlabeled)} "
                    f"images, gained more than the seed-to-seed spread ({_pm(gs[0])}% -> "
                    f"{_pm(gs[-1])}%)."
                )
            else:
                a, b, gain, spread = stop
                out.append(
                    f"{m} at {lab}: adding unlabeled data stops helping beyond "
                    f"{_n(a.n_unlabeled)} images (going to {_n(b.n_unlabeled)} changes accuracy "
                    f"by {100 * gain:+.1f} points, within the seed-to-seed spread of "
                    f"{100 * spread:.1f})."
                )
    upper = _upper(groups)
    if upper is not None:
        out.append(
            f"Supervised training on all {_n(upper.n_labeled)} labels reaches {_pm(upper)}%."
        )
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        out.append(f"{len(failed)} cell(s) failed; see the table of failures.")
    unfinished = [r for r in rows if r["status"] in ("pending", "running")]
    if unfinished:
        out.append(f"{len(unfinished)} cell(s) have not finished yet; rerun the study to resume.")
    return out


def _tables(groups: list[Group], rows: list[dict], accuracies: list[float]) -> list[tuple]:
    """(title, header, rows) of every table in the report."""
    tables = []
    acc_rows = []
    for g in sorted(groups, key=lambda g: (g.role != "grid", g.n_labeled, g.method, g.n_unlabeled)):
        f1 = _stat(g.f1s)[0]
        acc_rows.append(
            [
                g.method,
                g.labels,
                _n(g.n_labeled),
                g.unlabeled if g.uses_unlabeled else "-",
                _n(g.n_unlabeled) if g.uses_unlabeled else "-",
                str(len(g.accs)),
                _pm(g),
                f"{100 * f1:.1f}",
            ]
        )
    tables.append(
        (
            "Test accuracy (mean ± std over seeds, %)",
            [
                "method",
                "labels",
                "labeled",
                "unlabeled",
                "unlabeled images",
                "seeds",
                "accuracy",
                "macro-F1",
            ],
            acc_rows,
        )
    )
    tta_rows = []
    for lab in _label_order(groups):
        for m in _methods(groups):
            g = _most_unlabeled(groups, m, lab)
            if g is None:
                continue
            cells = []
            for a in accuracies:
                ts = [t for t in (_time_to(r["curve"], a) for r in g.rows) if t is not None]
                cells.append(
                    f"{np.median(ts):.1f} s ({len(ts)}/{len(g.rows)})" if ts else "not reached"
                )
            tta_rows.append([m, lab, *cells])
    tables.append(
        (
            "Training seconds to reach a validation accuracy (median over seeds that "
            "reached it; most unlabeled data)",
            ["method", "labels", *[f"{100 * a:g}%" for a in accuracies]],
            tta_rows,
        )
    )
    comp: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] == "done":
            comp[r["method"]].append(r)
    comp_rows = []
    for m, rs in comp.items():
        ips = [r["img_per_s"] for r in rs if r["img_per_s"]]
        comp_rows.append(
            [
                m,
                str(len(rs)),
                f"{np.mean([r['train_seconds'] for r in rs]):.1f}",
                f"{np.mean([r['wall_seconds'] for r in rs]):.1f}",
                f"{np.mean(ips):.0f}" if ips else "-",
            ]
        )
    tables.append(
        (
            "Compute per cell (a pipeline's runs added up; images/s through the "
            "backbone of its last run)",
            ["method", "cells", "train s", "wall s", "images/s"],
            comp_rows,
        )
    )
    fails = [[r["cell"], r["error"] or r["status"]] for r in rows if r["status"] != "done"]
    if fails:
        tables.append(("Cells without a result", ["cell", "status / error"], fails))
    return tables


def _md_table(title: str, header: list[str], body: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _html_table(title: str, header: list[str], body: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in body)
    return f"<h3>{e(title)}</h3>\n<table><tr>{head}</tr>{rows}</table>\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
ul.summary li{margin:.3em 0}.note{color:#777;font-size:.9em}
"""


def write_report(study_dir: str | Path, store_url: str | None = None) -> Report:
    """Write results.csv, report.md, report.html and the PNGs from a study's store: the
    folder's SQLite file, or the PostgreSQL database ``store_url`` (by default the one the
    study was run with, as noted in ``store.json``)."""
    study_dir = Path(study_dir)
    url = check_location(store_url) if store_url is not None else find_store(study_dir)
    store = open_store(study_dir, url)
    study_dir.mkdir(parents=True, exist_ok=True)  # a report from PostgreSQL may go anywhere
    try:
        cells, runs = store.cells(), store.runs()
        name = store.get_meta("study_name") or study_dir.name
        source = store.get_meta("study_source") or ""
        opts = json.loads(store.get_meta("report") or "{}")
    finally:
        store.close()
    accuracies = [float(a) for a in opts.get("accuracies", [0.5, 0.7, 0.9])]
    rows = _rows(cells, runs)
    groups = _groups(rows)

    csv_path = study_dir / "results.csv"
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in CSV_COLUMNS})
    atomic_write_text(csv_path, buf.getvalue())

    fig_dir = study_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures: list[tuple[str, Path]] = []
    notes: list[str] = []
    if any(g.role == "grid" and g.rows[0].get("strategy") for g in groups):
        figures.append(
            (
                "Accuracy vs labeling budget per selection strategy (mean ± std over seeds)",
                plot_vs_budget(groups, fig_dir / "acc_vs_budget.png"),
            )
        )
    if any(g.role == "grid" for g in groups):
        figures.append(
            (
                "Accuracy vs amount of unlabeled data (mean ± std over seeds; dashed: "
                "methods that use no unlabeled data; dotted: all labels)",
                plot_vs_unlabeled(groups, fig_dir / "acc_vs_unlabeled.png"),
            )
        )
        figures.append(
            (
                "Accuracy vs labeled amount, with the supervised baseline and the "
                "all-labels upper bound",
                plot_vs_labeled(groups, fig_dir / "acc_vs_labeled.png"),
            )
        )
        if any(r["curve"] for g in groups for r in g.rows):
            figures.append(
                (
                    "Time to accuracy: validation accuracy vs training seconds (every "
                    "seed; a pipeline's runs one after the other)",
                    plot_time_to_accuracy(groups, fig_dir / "time_to_accuracy.png"),
                )
            )
        else:
            notes.append("No time-to-accuracy figure: no run has a validation curve.")
    tables = _tables(groups, rows, accuracies)
    comp = [(r[0], float(r[2])) for r in tables[2][2]]
    if comp:
        figures.append(
            ("Training seconds per cell", plot_compute(tables[2][2], comp, fig_dir / "compute.png"))
        )
    best = _best(groups)
    if best is not None:
        from fewlabels.evaluate.plots import plot_confusion

        if best["confusion"]:
            k = len(best["confusion"])
            names = best.get("class_names") or [str(i) for i in range(k)]
            figures.append(
                (
                    f"Confusion matrix of the best model at the fewest labels ({best['cell']})",
                    plot_confusion(
                        best["confusion"],
                        names,
                        fig_dir / "confusion.png",
                        title=f"{best['method']}: {_pct(best['accuracy'])}",
                    ),
                )
            )
        if opts.get("tsne", True):
            base = next(
                (
                    r
                    for r in rows
                    if r["method"] == "supervised"
                    and r["role"] == "grid"
                    and r["labels"] == best["labels"]
                    and r["seed"] == best["seed"]
                    and r["status"] == "done"
                    and r is not best
                ),
                None,
            )
            try:
                p = _tsne(
                    best,
                    base,
                    runs,
                    study_dir,
                    int(opts.get("tsne_points", 1000)),
                    fig_dir / "tsne.png",
                )
                figures.append(
                    (
                        "t-SNE of test-set features: the best model at the fewest "
                        "labels" + (" and the supervised baseline" if base else ""),
                        p,
                    )
                )
            except Exception as e:  # the picture is optional; say why it is missing
                notes.append(f"t-SNE panel unavailable: {' '.join(str(e).split())[:200]}")
    summary = _summary(groups, rows)
    from fewlabels.study.synthetic import synthetic_section

    syn = synthetic_section(groups, rows, runs, study_dir, fig_dir)
    summary, tables, figures = summary + syn.summary, tables + syn.tables, figures + syn.figures

    md = [
        f"# Study {name}",
        "",
        f"From `{source}`; {len(rows)} cells, {sum(r['status'] == 'done' for r in rows)} done.",
        "",
        "## Summary",
        "",
    ]
    md += [f"- {s}" for s in summary] + [""]
    md += ["## Tables", ""] + [_md_table(*t) for t in tables]
    md += ["## Figures", ""] + [
        f"![{c}]({p.relative_to(study_dir).as_posix()})\n" for c, p in figures
    ]
    md += [f"_{n}_" for n in notes]
    md_path = study_dir / "report.md"
    atomic_write_text(md_path, "\n".join(md) + "\n")

    e = html.escape
    body = [
        f"<h1>Study {e(name)}</h1>",
        f"<p class='note'>From <code>{e(source)}</code>; {len(rows)} cells, "
        f"{sum(r['status'] == 'done' for r in rows)} done. Tables as markdown: "
        "<a href='report.md'>report.md</a>; every cell: <a href='results.csv'>"
        "results.csv</a>.</p>",
        "<h2>Summary</h2>",
        "<ul class='summary'>",
    ]
    body += [f"<li>{e(s)}</li>" for s in summary] + ["</ul>", "<h2>Figures</h2>"]
    for caption, p in figures:
        rel = e(p.relative_to(study_dir).as_posix())
        body.append(
            f"<figure><img src='{rel}' alt='{e(caption)}'><figcaption>{e(caption)}"
            "</figcaption></figure>"
        )
    body += [f"<p class='note'>{e(n)}</p>" for n in notes]
    body += ["<h2>Tables</h2>"] + [_html_table(*t) for t in tables]
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Study {e(name)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    html_path = study_dir / "report.html"
    atomic_write_text(html_path, page)
    return Report(html_path, md_path, csv_path, [p for _, p in figures])


def _best(groups: list[Group]) -> dict | None:
    """The best seed of the best method at the fewest labels."""
    labels = _label_order(groups)
    if not labels:
        return None
    gs = [g for g in groups if g.labels == labels[0] and g.role == "grid"]
    if not gs:
        return None
    g = max(gs, key=lambda g: g.mean)
    return max(g.rows, key=lambda r: r["accuracy"])
