"""The study report, made from the store alone: results.csv, verdict.csv, report.md,
report.html + PNGs.

The report is a list of sections (``study.sections``: summary, tables, figures;
``study.synthetic``: generated images), each a function of the study's results, rendered
by ``study.render``. The HTML is self-contained: inline CSS, relative ``<img>`` paths to
the PNGs beside it, no scripts and nothing fetched from the network. The plain-words
verdict, first, is computed from paired differences by seed with 95% t-intervals
(``study.verdict``): each method against supervised at each labeled amount, and whether
more unlabeled data helps; fewer than three seeds are "not conclusive". verdict.csv holds
its lines, and tuning.csv (a study with ``tune``) each tuned cell's chosen and resolved trials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.provenance import provenance, provenance_line
from fewlabels.study.backbone import describe, load_backbone
from fewlabels.study.backend import check_location, find_store, open_store
from fewlabels.study.render import CSV_COLUMNS, Page, render_csv, render_html, render_markdown
from fewlabels.study.results import group_rows, row_of
from fewlabels.study.sections import (
    Results,
    Section,
    figures_section,
    summary_section,
    tables_section,
)
from fewlabels.study.synthetic import synthetic_section
from fewlabels.study.tuning_report import tuning_csv, tuning_section
from fewlabels.study.verdict import verdict_csv, verdict_section, verdicts

__all__ = ["CSV_COLUMNS", "SECTIONS", "Report", "read_results", "write_report"]

# the report's sections, in order
SECTIONS: list[Callable[[Results], Section]] = [
    verdict_section,
    summary_section,
    tuning_section,
    tables_section,
    figures_section,
    synthetic_section,
]


@dataclass
class Report:
    """Paths of what ``write_report`` wrote."""

    html: Path
    markdown: Path
    csv: Path
    figures: list[Path] = field(default_factory=list)
    verdict: Path | None = None
    tuning: Path | None = None  # tuning.csv, for a study with ``tune``


def read_results(study_dir: Path, store_url: str | None) -> tuple[Results, str, str]:
    """The study's results from its store, with its name and source file."""
    url = check_location(store_url) if store_url is not None else find_store(study_dir)
    store = open_store(study_dir, url)
    study_dir.mkdir(parents=True, exist_ok=True)  # a report from PostgreSQL may go anywhere
    try:
        cells, runs = store.cells(), store.runs()
        name = store.get_meta("study_name") or study_dir.name
        source = store.get_meta("study_source") or ""
        options = json.loads(store.get_meta("report") or "{}")
    finally:
        store.close()
    rows = [row_of(c, runs) for c in cells]
    fig_dir = study_dir / "figures"
    return Results(rows, group_rows(rows), runs, study_dir, fig_dir, options), name, source


def footer_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One line per distinct provenance of the study's finished runs (version and commit,
    torch, device and processor, threads, precision), most runs first; then the report's."""
    counts: dict[str, int] = {}
    for run in runs.values():
        prov = (run.get("metrics") or {}).get("provenance")
        if isinstance(prov, dict):
            line = provenance_line(prov)
            counts[line] = counts.get(line, 0) + 1
    total = sum(counts.values())
    ordered = sorted(counts, key=lambda k: -counts[k])
    lines = [f"runs: {k}" if total == counts[k] else f"runs: {k} ({counts[k]} of {total} runs)"
             for k in ordered]  # fmt: skip
    return [*lines, f"report: {provenance_line(provenance())}"]


def write_report(study_dir: str | Path, store_url: str | None = None) -> Report:
    """Write results.csv, report.md, report.html and the PNGs from a study's store: the
    folder's SQLite file, or the PostgreSQL database ``store_url`` (by default the one the
    study was run with, as noted in ``store.json``)."""
    study_dir = Path(study_dir)
    res, name, source = read_results(study_dir, store_url)
    csv_path = study_dir / "results.csv"
    atomic_write_text(csv_path, render_csv(res.rows))
    verdict_path = study_dir / "verdict.csv"
    atomic_write_text(verdict_path, verdict_csv(verdicts(res.groups)))
    tuning_path = study_dir / "tuning.csv" if any(r.trials for r in res.rows) else None
    if tuning_path is not None:
        atomic_write_text(tuning_path, tuning_csv(res.rows))
    res.fig_dir.mkdir(exist_ok=True)
    sections = [make(res) for make in SECTIONS]
    done = sum(r.status == "done" for r in res.rows)
    chosen = load_backbone(study_dir)  # the rules' backbone, if they chose it
    footer = [*([describe(chosen)] if chosen else []), *footer_lines(res.runs)]
    page = Page(name, source, len(res.rows), done, sections, study_dir, footer)
    md_path, html_path = study_dir / "report.md", study_dir / "report.html"
    atomic_write_text(md_path, render_markdown(page))
    atomic_write_text(html_path, render_html(page))
    figures = [f.path for sec in sections for f in sec.figures]
    return Report(html_path, md_path, csv_path, figures, verdict_path, tuning_path)
