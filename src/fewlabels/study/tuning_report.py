"""The report's account of how each method was tuned (``tune: N``): the trials, the space
searched and, for each cell, the settings chosen on the validation split."""

from __future__ import annotations

from fewlabels.study.results import Row, pct, settings_text
from fewlabels.study.sections import Results, Section, Table


def _chosen(r: Row) -> str:
    return settings_text(r.trial_settings) or "the resolved settings"


def tuning_section(res: Results) -> Section:
    """One line per method (trials, space, chosen values) and a table per cell."""
    tuned = [r for r in res.rows if r.trials]
    if not tuned:
        return Section(
            "tuning",
            summary=["No tuning: every method ran once per cell with its resolved settings."],
        )
    sec = Section("tuning")
    n = max(len(r.trials) for r in tuned)
    by_method: dict[str, list[Row]] = {}
    for r in tuned:
        by_method.setdefault(r.method, []).append(r)
    for method, rows in by_method.items():
        picks = sorted({_chosen(r) for r in rows if r.trial is not None})
        space = rows[0].trials[0].get("space", "")
        sec.summary.append(
            f"{method} was tuned with {len(rows[0].trials)} trials per cell (the same for "
            f"every method) around its resolved settings, searching {space}; chosen on the "
            f"validation split: {'; '.join(picks) or 'none finished yet'}."
        )
    body = []
    for r in tuned:
        done = [t for t in r.trials if t["status"] == "done"]
        first = next((t for t in r.trials if t["index"] == 0), None)
        body.append(
            [
                r.method,
                r.labels,
                r.unlabeled if r.uses_unlabeled else "-",
                str(r.seed),
                f"{len(done)}/{len(r.trials)}",
                "-" if r.trial is None else f"{r.trial}: {_chosen(r)}",
                pct(r.val_acc),
                pct(first["val_acc"]) if first else "-",
                pct(r.accuracy),
                f"{sum(t.get('seconds') or 0.0 for t in r.trials):.1f}",
            ]
        )
    header = ["method", "labels", "unlabeled", "seed", "trials done", "chosen trial"]
    header += [
        "val acc (chosen)",
        "val acc (resolved)",
        "test acc (chosen)",
        "train s (all trials)",
    ]
    title = f"How each method was tuned ({n} trials per cell, chosen on validation accuracy)"
    sec.tables.append(Table(title, header, body))
    return sec
