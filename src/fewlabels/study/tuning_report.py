"""The report's account of how each method was tuned (``tune: N``): the trials, the space
searched and, for each cell, the settings chosen on the validation split."""

from __future__ import annotations

import csv
import io
from typing import Any

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
    for t in tuning_rows(res.rows):
        body.append(
            [
                t["method"],
                t["labels"],
                t["unlabeled"],
                str(t["seed"]),
                t["trials_done"],
                "-" if t["chosen_trial"] is None else f"{t['chosen_trial']}: {t['chosen']}",
                pct(t["val_acc_chosen"]),
                pct(t["val_acc_resolved"]),
                pct(t["test_acc_chosen"]),
                pct(t["test_acc_resolved"]),
                f"{t['train_seconds']:.1f}",
            ]
        )
    header = ["method", "labels", "unlabeled", "seed", "trials done", "chosen trial"]
    header += [
        "val acc (chosen)",
        "val acc (resolved)",
        "test acc (chosen)",
        "test acc (resolved)",
        "train s (all trials)",
    ]
    title = f"How each method was tuned ({n} trials per cell, chosen on validation accuracy)"
    sec.tables.append(Table(title, header, body))
    return sec


TUNING_COLUMNS = [
    "method",
    "labels",
    "unlabeled",
    "seed",
    "trials_done",
    "chosen_trial",
    "chosen",
    "val_acc_chosen",
    "val_acc_resolved",
    "test_acc_chosen",
    "test_acc_resolved",
    "train_seconds",
]


def tuning_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """One dict per tuned cell: the trial chosen on validation and, beside it, the resolved
    settings (trial 0) on validation and on test, so what tuning bought can be read off."""
    out = []
    for r in rows:
        if not r.trials:
            continue
        done = [t for t in r.trials if t["status"] == "done"]
        first = next((t for t in r.trials if t["index"] == 0), None) or {}
        out.append(
            {
                "method": r.method,
                "labels": r.labels,
                "unlabeled": r.unlabeled if r.uses_unlabeled else "-",
                "seed": r.seed,
                "trials_done": f"{len(done)}/{len(r.trials)}",
                "chosen_trial": r.trial,
                "chosen": _chosen(r),
                "val_acc_chosen": r.val_acc,
                "val_acc_resolved": first.get("val_acc"),
                "test_acc_chosen": r.accuracy,
                "test_acc_resolved": first.get("accuracy"),
                "train_seconds": sum(t.get("seconds") or 0.0 for t in r.trials),
            }
        )
    return out


def tuning_csv(rows: list[Row]) -> str:
    """``tuning_rows`` as CSV (accuracies as fractions; empty where not finished)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=TUNING_COLUMNS)
    w.writeheader()
    for t in tuning_rows(rows):
        w.writerow({k: "" if v is None else v for k, v in t.items()})
    return buf.getvalue()
