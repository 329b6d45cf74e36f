"""The verdict at the top of a study report, in plain words, from paired differences.

For each method, labeled amount and unlabeled amount: the difference in test accuracy to
supervised training on the same labels (seed by seed: seeds share splits) with its 95%
t-interval; and, for each method that trains on unlabeled images, whether more of them
helps (paired differences between unlabeled amounts, same labels and seed). With fewer
than three paired seeds the verdict is "not conclusive" and no order is asserted.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import asdict, dataclass

from fewlabels.study.results import Group, count, label_order, methods_of
from fewlabels.study.sections import Results, Section, Table
from fewlabels.study.stats import (
    HALF_POINT,
    MIN_SEEDS,
    ONE_POINT,
    Interval,
    comparison,
    helps,
    interval_text,
    not_conclusive,
    paired,
    points,
    t_interval,
)


@dataclass
class Verdict:
    """One line of the verdict: ``kind`` vs_supervised (``method`` against supervised at
    ``unlabeled``) or more_unlabeled (``method`` from ``unlabeled`` to ``unlabeled_to``).
    ``mean``, ``low`` and ``high``: the paired difference and its 95% interval (fractions
    of accuracy); ``verdict``: its word; ``text``: the line in plain words."""

    kind: str
    labels: str
    method: str
    unlabeled: str
    unlabeled_to: str
    seeds: int
    mean: float
    low: float
    high: float
    verdict: str
    text: str


VERDICT_COLUMNS = list(Verdict.__dataclass_fields__)


def labels_words(g: Group) -> str:
    """``5/class`` -> ``5 labels per class``; a fraction or a count of labels as is."""
    lab = g.labels
    words = f"{lab.split('/')[0]} labels per class" if lab.endswith("/class") else lab
    if lab.endswith("%"):
        words = f"{lab} of the labels"
    return f"{words} ({count(g.n_labeled)} labeled images)"


def by_seed(g: Group) -> dict[int, float]:
    """A group's test accuracy at each seed that has one."""
    return {r.seed: float(r.accuracy) for r in g.rows if r.accuracy is not None}


def _baseline(groups: list[Group], g: Group) -> Group | None:
    """Supervised training on the same labels (and selection strategy) as ``g``."""
    return next(
        (
            b
            for b in groups
            if b.role == "grid"
            and b.base_method == "supervised"
            and not b.synthetic
            and b.labels == g.labels
            and b.strategy == g.strategy
            and b is not g
        ),
        None,
    )


def _where(g: Group) -> str:
    unl = f", {count(g.n_unlabeled)} unlabeled images" if g.uses_unlabeled else ""
    return labels_words(g) + unl


def _vs_supervised(g: Group, base: Group) -> Verdict | None:
    diffs = paired(by_seed(g), by_seed(base))
    if not diffs:
        return None
    iv = t_interval(diffs)
    word = comparison(iv)
    head = f"{_where(g)}: "
    if word == "beats":
        text = f"{g.method} beats supervised by {100 * iv.mean:.1f} points ({interval_text(iv)})"
    elif word == "below":
        text = (
            f"{g.method} is below supervised by {-100 * iv.mean:.1f} points ({interval_text(iv)})"
        )
    elif word == "no clear difference":
        text = (
            f"no clear difference between {g.method} and supervised ({points(iv.mean)} "
            f"points, {interval_text(iv)})"
        )
    else:
        text = (
            f"{g.method} vs supervised: {not_conclusive(iv.n)}; mean difference "
            f"{points(iv.mean)} points"
        )
    return _row("vs_supervised", g, "", iv, word, head + text)


def _more_unlabeled(a: Group, b: Group) -> Verdict | None:
    diffs = paired(by_seed(b), by_seed(a))
    if not diffs:
        return None
    iv = t_interval(diffs)
    word = helps(iv)
    step = f"{count(a.n_unlabeled)} -> {count(b.n_unlabeled)} unlabeled images"
    head = f"{labels_words(a)}, {a.method}: more unlabeled data helps ({step}): "
    change = f"{points(iv.mean)} points"
    if word == "not conclusive":
        text = f"{not_conclusive(iv.n)}; mean change {change}"
    elif word == "no" and iv.high >= 0:
        text = (
            f"no, no further gain ({change}, {interval_text(iv)}: under "
            f"{100 * HALF_POINT:g} point, within +-{100 * ONE_POINT:g} point)"
        )
    elif word == "no":
        text = f"no, it lowers accuracy ({change}, {interval_text(iv)})"
    else:
        text = f"{word} ({change}, {interval_text(iv)})"
    return _row("more_unlabeled", a, b.unlabeled, iv, word, head + text)


def _row(kind: str, g: Group, to: str, iv: Interval, word: str, text: str) -> Verdict:
    return Verdict(
        kind, g.labels, g.method, g.unlabeled, to, iv.n, iv.mean, iv.low, iv.high, word, text
    )


def verdicts(groups: list[Group]) -> list[Verdict]:
    """Every verdict line: at each labeled amount, each method against supervised (at each
    unlabeled amount), then whether more unlabeled data helps each method."""
    out: list[Verdict] = []
    grid = [g for g in groups if g.role == "grid"]
    for lab in label_order(groups):
        for m in methods_of(groups):
            gs = sorted(
                (g for g in grid if g.method == m and g.labels == lab), key=lambda g: g.n_unlabeled
            )
            for g in gs:
                base = _baseline(groups, g)
                if base is not None and (v := _vs_supervised(g, base)):
                    out.append(v)
            used = [g for g in gs if g.uses_unlabeled]
            pairs = list(itertools.pairwise(used))
            if len(used) > 2:
                pairs.append((used[0], used[-1]))
            out += [v for a, b in pairs if (v := _more_unlabeled(a, b))]
    return out


def verdict_csv(rows: list[Verdict]) -> str:
    """The verdict lines as CSV (accuracy differences as fractions)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=VERDICT_COLUMNS)
    w.writeheader()
    for v in rows:
        d = asdict(v)
        for k in ("mean", "low", "high"):  # one seed: no interval (empty)
            d[k] = f"{d[k]:.6g}" if math.isfinite(d[k]) else ""
        w.writerow(d)
    return buf.getvalue()


def enough_seeds(rows: list[Verdict]) -> bool:
    """Whether every verdict line rests on at least ``MIN_SEEDS`` paired seeds."""
    return all(v.seeds >= MIN_SEEDS for v in rows)


def verdict_section(res: Results) -> Section:
    """The verdict in plain words, first in the report: one line per comparison, and the
    two tables (against supervised; more unlabeled data)."""
    rows = verdicts(res.groups)
    sec = Section("verdict", summary=[v.text + "." for v in rows])
    if not rows:
        sec.notes.append(
            "No verdict: it needs a supervised baseline and at least one finished seed of "
            "each method it compares."
        )
        return sec
    how = (
        "Paired by seed (every method sees the same splits at a seed): mean difference in "
        f"test accuracy and its 95% t-interval; fewer than {MIN_SEEDS} seeds decide nothing. "
        "More unlabeled data helps: yes when the interval is above 0; no when it is below 0, "
        f"or when the mean change is under {100 * HALF_POINT:g} point with the interval "
        f"within +-{100 * ONE_POINT:g} point (no further gain); else not determined."
    )
    if not enough_seeds(rows):
        how += f" Some lines rest on fewer than {MIN_SEEDS} seeds: rerun with more grid.seeds."
    sec.notes.append(how)
    header = ["labels", "method", "unlabeled", "seeds", "difference (points)", "95% interval"]
    vs = [v for v in rows if v.kind == "vs_supervised"]
    more = [v for v in rows if v.kind == "more_unlabeled"]
    if vs:
        body = [[v.labels, v.method, v.unlabeled, *_numbers(v), v.verdict] for v in vs]
        sec.tables.append(
            Table("Verdict: each method against supervised", [*header, "verdict"], body)
        )
    if more:
        head = ["labels", "method", "unlabeled", "seeds", "change (points)", "95% interval"]
        body = [
            [v.labels, v.method, f"{v.unlabeled} -> {v.unlabeled_to}", *_numbers(v), v.verdict]
            for v in more
        ]
        sec.tables.append(Table("Verdict: does more unlabeled data help?", [*head, "helps"], body))
    return sec


def _numbers(v: Verdict) -> list[str]:
    if v.seeds < 2:
        return [str(v.seeds), points(v.mean), "-"]
    return [str(v.seeds), points(v.mean), f"{100 * v.low:.1f} to {100 * v.high:.1f}"]
