"""A study's results as typed rows (one per cell) and groups (a cell over its seeds), read
from the store, with the number formats every report section shares."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Row:
    """One cell: its settings, the status of its pipeline and its final metrics.

    ``base_method`` is the method entry's name; ``method`` adds the generated-image ratio
    (``synthetic``) and the selection strategy (``strategy``) for display.
    """

    cell: str
    method: str
    base_method: str
    pipeline: str
    role: str
    labels: str
    labels_per_class: int | None
    labeled_fraction: float | None
    unlabeled: str
    n_labeled: int
    n_unlabeled: int
    uses_unlabeled: bool
    seed: int
    status: str = "done"
    strategy: str | None = None
    synthetic: float = 0.0
    then: str | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    steps: int | None = None
    train_seconds: float | None = None
    wall_seconds: float = 0.0
    img_per_s: float | None = None
    error: str = ""
    run_key: str = ""
    confusion: list[list[int]] | None = None
    class_names: list[str] | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    job_keys: list[str] = field(default_factory=list)
    # the validation accuracy at the end of the run (what tuning chooses by)
    val_acc: float | None = None
    # with ``tune``: the chosen trial, its settings, and every trial's outcome
    trial: int | None = None
    trial_settings: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)


def _labels(c: dict[str, Any]) -> str:
    if c.get("labels"):
        return str(c["labels"])
    if c.get("budget_labels") is not None:
        return f"{c['budget_labels']} labels"
    if c.get("labels_per_class") is not None:
        return f"{c['labels_per_class']}/class"
    if c.get("labeled_fraction") is not None:
        return f"{100 * c['labeled_fraction']:g}%"
    return "all"


def _status(jobs: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """A pipeline's status (failed, running, pending or done) and its failed run."""
    bad = next((j for j in jobs if j["status"] == "failed"), None)
    if bad is not None:
        return "failed", bad
    statuses = [j["status"] for j in jobs]
    return next((s for s in ("running", "pending") if s in statuses), "done"), None


def _curve(jobs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """A pipeline's validation curves one after the other on one clock."""
    curve: list[dict[str, float]] = []
    offset = 0.0
    for j in jobs:
        for r in j.get("curve") or []:
            if r.get("val_acc") is not None and r.get("time_s") is not None:
                curve.append({"time_s": offset + float(r["time_s"]), "val_acc": r["val_acc"]})
        offset += float((j.get("metrics") or {}).get("train_seconds") or 0)
    return curve


def final_val(run: dict[str, Any] | None) -> float | None:
    """A run's validation accuracy at its end: its metrics' ``val_acc`` (a probe's), else
    the last validation point of its curve."""
    if not run:
        return None
    v = (run.get("metrics") or {}).get("val_acc")
    if v is None:
        v = next(
            (
                r["val_acc"]
                for r in reversed(run.get("curve") or [])
                if r.get("val_acc") is not None
            ),
            None,
        )
    return None if v is None else float(v)


def settings_text(settings: dict[str, Any]) -> str:
    """A trial's settings as ``train.lr x0.3 method.lambda_u=2`` (a training setting is a
    factor on its resolved value, ``train.scale``); empty for none."""
    return " ".join(
        f"{k} x{v:g}" if k.startswith("train.") else f"{k}={v:.4g}" if isinstance(v, float)
        else f"{k}={v}"
        for k, v in settings.items()
    )  # fmt: skip


def trial_outcomes(c: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trial of a tuned cell: index, settings, status, validation and test accuracy,
    and the training seconds of its runs."""
    out = []
    for t in c.get("trials") or []:
        jobs = [runs[k] for k in t["job_keys"] if k in runs]
        status, _ = _status(jobs)
        run = runs.get(t["run_key"]) if status == "done" else None
        acc = ((run or {}).get("metrics") or {}).get("accuracy")
        secs = sum(float((j.get("metrics") or {}).get("train_seconds") or 0) for j in jobs)
        out.append(
            {**t, "status": status, "val_acc": final_val(run), "accuracy": acc, "seconds": secs}
        )
    return out


def chosen_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished trial with the best validation accuracy (the earliest of equals: the
    resolved settings come first); None while none has finished."""
    done = [t for t in trials if t["status"] == "done"]
    if not done:
        return None
    return max(done, key=lambda t: (-1.0 if t["val_acc"] is None else t["val_acc"], -t["index"]))


def _tuned(c: dict[str, Any], runs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str, list]:
    """A tuned cell as the cell of its chosen trial; its status over every trial."""
    trials = trial_outcomes(c, runs)
    statuses = {t["status"] for t in trials}
    status = next((s for s in ("running", "pending", "done") if s in statuses), "failed")
    pick = chosen_trial(trials) or (trials[0] if trials else None)
    if pick is None:
        return c, status, trials
    view = {**c, "run_key": pick["run_key"], "job_keys": pick["job_keys"], "chosen": pick}
    return view, status, trials


def row_of(c: dict[str, Any], runs: dict[str, dict[str, Any]]) -> Row:
    """The row of a stored cell (``info`` + ``run_key`` + ``job_keys``) from its runs; a
    tuned cell (``trials``) is the row of its chosen trial."""
    trials: list[dict[str, Any]] = []
    tuned_status = None
    if c.get("trials"):
        c, tuned_status, trials = _tuned(c, runs)
    jobs = [runs[k] for k in c["job_keys"] if k in runs]
    status, bad = _status(jobs)
    if tuned_status is not None:  # a failed trial fails the cell only if no trial is left
        status = tuned_status
    m = runs.get(c["run_key"], {}).get("metrics") or {}
    done = status == "done"
    train_s = sum(float((j.get("metrics") or {}).get("train_seconds") or 0) for j in jobs)
    chosen = c.get("chosen") or {}
    return Row(
        cell=c["id"],
        method=c["method"],
        base_method=c.get("base_method") or c["method"],
        pipeline=c["pipeline"],
        role=c["role"],
        labels=_labels(c),
        labels_per_class=c.get("labels_per_class"),
        labeled_fraction=c.get("labeled_fraction"),
        unlabeled=c["unlabeled"],
        n_labeled=c["n_labeled"],
        n_unlabeled=c["n_unlabeled"],
        uses_unlabeled=c["uses_unlabeled"],
        seed=c["seed"],
        status=status,
        strategy=c.get("strategy"),
        synthetic=float(c.get("synthetic") or 0.0),
        then=c.get("then"),
        accuracy=m.get("accuracy") if done else None,
        macro_f1=m.get("macro_f1") if done else None,
        steps=m.get("steps"),
        train_seconds=round(train_s, 2) if jobs else None,
        wall_seconds=round(sum(float(j.get("seconds") or 0) for j in jobs), 2),
        img_per_s=m.get("img_per_s"),
        error=(bad or {}).get("error") or "",
        run_key=c["run_key"],
        confusion=m.get("confusion"),
        class_names=m.get("class_names"),
        curve=_curve(jobs),
        job_keys=list(c["job_keys"]),
        val_acc=final_val(runs.get(c["run_key"])) if done else None,
        trial=chosen.get("index"),
        trial_settings=dict(chosen.get("settings") or {}),
        trials=trials,
    )


def stat(values: list[float]) -> tuple[float, float]:
    """Mean and seed-to-seed standard deviation (sample std; 0 for one seed)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@dataclass
class Group:
    """A cell over its seeds (the rows that have a result)."""

    method: str
    labels: str
    unlabeled: str
    n_labeled: float
    n_unlabeled: float
    uses_unlabeled: bool
    role: str
    accs: list[float]
    f1s: list[float]
    rows: list[Row]
    base_method: str = ""
    strategy: str | None = None
    synthetic: float = 0.0

    @property
    def mean(self) -> float:
        return stat(self.accs)[0]

    @property
    def std(self) -> float:
        return stat(self.accs)[1]


def group_rows(rows: list[Row]) -> list[Group]:
    """The rows by (method, labeled amount, unlabeled amount); groups without a result
    are left out."""
    by: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        by[(r.method, r.labels, r.unlabeled)].append(r)
    out = []
    for (method, labels, unl), rs in by.items():
        done = [r for r in rs if r.accuracy is not None]
        if not done:
            continue
        out.append(
            Group(
                method,
                labels,
                unl,
                float(np.mean([r.n_labeled for r in rs])),
                float(np.mean([r.n_unlabeled for r in rs])),
                bool(rs[0].uses_unlabeled),
                rs[0].role,
                [float(r.accuracy) for r in done if r.accuracy is not None],
                [float(r.macro_f1 or 0.0) for r in done],
                done,
                base_method=rs[0].base_method,
                strategy=rs[0].strategy,
                synthetic=rs[0].synthetic,
            )
        )
    return out


# -- shared views of the groups -------------------------------------------------------------
def label_order(groups: list[Group]) -> list[str]:
    """The grid's labeled amounts, fewest labeled images first."""
    grid = [g for g in groups if g.role == "grid"]
    return [lab for lab, _ in sorted({(g.labels, g.n_labeled) for g in grid}, key=lambda t: t[1])]


def methods_of(groups: list[Group]) -> list[str]:
    """The grid's methods in the order they first appear."""
    return list(dict.fromkeys(g.method for g in groups if g.role == "grid"))


def upper_bound(groups: list[Group]) -> Group | None:
    """The all-labels group, if the study has one."""
    return next((g for g in groups if g.role == "upper_bound"), None)


def most_unlabeled(groups: list[Group], method: str, lab: str) -> Group | None:
    """``method`` at labeled amount ``lab`` with its largest unlabeled amount."""
    gs = [g for g in groups if g.method == method and g.labels == lab and g.role == "grid"]
    return max(gs, key=lambda g: g.n_unlabeled) if gs else None


def best_group(groups: list[Group]) -> Group | None:
    """The method with the best mean test accuracy at the fewest labels (its most
    accurate unlabeled amount)."""
    labels = label_order(groups)
    gs = [g for g in groups if labels and g.labels == labels[0] and g.role == "grid"]
    return max(gs, key=lambda g: g.mean) if gs else None


def best_row(groups: list[Group]) -> Row | None:
    """The best seed of ``best_group``."""
    g = best_group(groups)
    return None if g is None else max(g.rows, key=lambda r: r.accuracy or 0.0)


def summed_confusion(g: Group) -> tuple[list[list[int]], list[str], int] | None:
    """The confusion matrix of ``g`` summed over its seeds (every seed is scored on the
    same test set), its class names and the number of seeds summed."""
    mats = [r.confusion for r in g.rows if r.confusion]
    if not mats:
        return None
    total = np.sum(np.asarray(mats, dtype=np.int64), axis=0)
    names = next((r.class_names for r in g.rows if r.class_names), None)
    names = names or [str(i) for i in range(len(total))]
    return total.tolist(), list(names), len(mats)


def time_to(curve: list[dict[str, float]], acc: float) -> float | None:
    """Seconds until the validation accuracy first reached ``acc`` (None: never)."""
    return next((p["time_s"] for p in curve if p["val_acc"] >= acc), None)


# -- number formats ---------------------------------------------------------------------------
def pct(x: float | None) -> str:
    """``0.873`` -> ``87.3%``; ``-`` for none."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def pm(g: Group | None) -> str:
    """Mean ± std over seeds in percent (the mean alone for one seed)."""
    if g is None:
        return "-"
    return f"{100 * g.mean:.1f} ± {100 * g.std:.1f}" if len(g.accs) > 1 else f"{100 * g.mean:.1f}"


def count(x: float) -> str:
    """A count with thousands separators."""
    return f"{round(x):,}"
