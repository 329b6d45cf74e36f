"""A study's cells in experiment trackers: each finished cell becomes one tracked run
(named by the cell, tagged with its method, labels, unlabeled amount and seed), from the
store's rows: its settings, curve and final metrics, and its confusion figure. The study
runner logs each cell as it finishes; ``export_study`` logs a finished study."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.study.backend import check_location, find_store, open_store
from fewlabels.train.loggers import make_loggers, parse_logger_specs, replay

__all__ = ["cell_run_name", "cell_tags", "export_study", "track_cell"]


def cell_tags(cell: Mapping[str, Any], study: str) -> dict[str, Any]:
    """The tags of a cell's tracked run."""
    return {
        "study": study,
        "method": cell.get("method"),
        "labels": cell.get("labels"),
        "unlabeled": cell.get("unlabeled"),
        "seed": cell.get("seed"),
    }


def cell_run_name(cell: Mapping[str, Any]) -> str:
    """A folder-safe run name from the cell's id (``fixmatch_labels=4_unlabeled=rest_seed=0``)."""
    text = str(cell.get("id", cell.get("run_key", "cell")))
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "cell"


def track_cell(
    specs: Sequence[str],
    study_dir: Path,
    cell: Mapping[str, Any],
    run: Mapping[str, Any],
    study: str,
) -> None:
    """Log one finished cell (``run``: its result run's store row) to each tracker."""
    spec = run.get("spec") or {}
    config = spec.get("config") or spec.get("probe") or spec.get("generate") or {}
    metrics = {k: v for k, v in (run.get("metrics") or {}).items() if k != "provenance"}
    prov = (run.get("metrics") or {}).get("provenance") or {}
    config = {**config, "provenance": prov} if prov else dict(config)
    figure = Path(study_dir) / "runs" / str(run["key"]) / "confusion.png"
    loggers = make_loggers(
        specs,
        folder=Path(study_dir),
        name=cell_run_name(cell),
        tags=cell_tags(cell, study),
        experiment=study,
    )
    replay(loggers, config, run.get("curve") or [], metrics, figure if figure.exists() else None)


def export_study(
    study_dir: str | Path, specs: str | Sequence[str], store_url: str | None = None
) -> int:
    """Log every finished cell of the study in ``study_dir`` to the trackers ``specs``
    (``tensorboard``, ``mlflow``, ...; files under the study folder unless a spec names
    where); returns how many cells were logged."""
    study_dir = Path(study_dir)
    names = parse_logger_specs(specs)
    if not names:
        raise ConfigError("name a tracker to export to (tensorboard, mlflow, wandb or csv)")
    url = check_location(store_url) if store_url is not None else find_store(study_dir)
    store = open_store(study_dir, url)
    try:
        cells, runs = store.cells(), store.runs()
        study = store.get_meta("study_name") or study_dir.name
    finally:
        store.close()
    done = 0
    for cell in cells:
        run = runs.get(cell["run_key"])
        if run is not None and run.get("status") == "done":
            track_cell(names, study_dir, cell, run, study)
            done += 1
    return done
