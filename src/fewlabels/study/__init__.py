"""Studies: a YAML grid of cells -> runs in a store (SQLite or PostgreSQL) -> one report."""

from __future__ import annotations

from fewlabels.study.backend import StudyStore, open_store
from fewlabels.study.pgstore import PgStore
from fewlabels.study.plan import Cell, Job, StudyPlan
from fewlabels.study.report import Report, write_report
from fewlabels.study.runner import StudyOutcome, run_study
from fewlabels.study.schema import StudySpec
from fewlabels.study.spec import load_study, parse_study
from fewlabels.study.store import Store

__all__ = [
    "Cell",
    "Job",
    "PgStore",
    "Report",
    "Store",
    "StudyOutcome",
    "StudyPlan",
    "StudySpec",
    "StudyStore",
    "load_study",
    "open_store",
    "parse_study",
    "run_study",
    "write_report",
]
