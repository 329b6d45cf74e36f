"""Studies: a YAML grid of cells -> runs in a SQLite store -> one report."""

from __future__ import annotations

from fewlabels.study.report import Report, write_report
from fewlabels.study.runner import StudyOutcome, run_study
from fewlabels.study.spec import Cell, Job, StudyPlan, StudySpec, load_study
from fewlabels.study.store import Store

__all__ = [
    "Cell",
    "Job",
    "Report",
    "Store",
    "StudyOutcome",
    "StudyPlan",
    "StudySpec",
    "load_study",
    "run_study",
    "write_report",
]
