"""Before a study works through its runs: finished runs whose results no longer stand run again.

- A finished run whose run folder (or the file its dependents read: a training's
  ``model.pt``, a probe's ``metrics.json``, a generator's ``samples``) is gone goes back to
  pending with a one-line warning, so it runs again before the runs that depend on it
  (before, the store said done and every dependent probe failed).
- A run whose recorded data fingerprint differs from the data's now (images added,
  removed or changed; the test set grew) starts afresh: its checkpoint, curve and results
  are removed and, when it had finished, it and every finished run that depends on it go
  back to pending, with a one-line warning. Runs with a simulated label request
  (``select``) record the fingerprint of their selected data and are not compared here
  (their own resume check refuses a changed checkpoint).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fewlabels.core.errors import FewlabelsError
from fewlabels.train.probing import ProbeConfig
from fewlabels.train.run import RunConfig
from fewlabels.train.runcheck import data_fingerprint, fresh_start

__all__ = ["reopen_stale_runs"]

Log = Callable[[str], None]
# what a finished run's dependents read from its folder
_PRODUCT = {"train": "model.pt", "probe": "metrics.json", "generate": "samples"}


def _recorded(folder: Path, kind: str) -> str | None:
    name = "config.json" if kind == "train" else "metrics.json"
    try:
        obj = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None
    fp = obj.get("data_fingerprint") if isinstance(obj, dict) else None
    return fp if isinstance(fp, str) else None


def _source(row: dict[str, Any], folder: Path) -> Any | None:
    """The run's data settings (RunConfig / ProbeConfig), or None when not compared."""
    spec = row["spec"]
    try:
        if row["kind"] == "train":
            cfg: Any = RunConfig(**{**spec["config"], "out": str(folder)})
        elif row["kind"] == "probe":
            cfg = ProbeConfig(**spec["probe"], checkpoint=str(folder), out=str(folder))
        else:
            return None
    except (FewlabelsError, ValueError, TypeError, KeyError):
        return None
    return None if cfg.select is not None else cfg


class _Fingerprints:
    """The data fingerprint of each distinct data source, loaded once."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    def of(self, cfg: Any) -> str | None:
        key = json.dumps(
            [cfg.data, cfg.test, str(cfg.labels), cfg.source_labels, cfg.strict], default=str
        )
        if key not in self.seen:
            try:
                self.seen[key] = data_fingerprint(cfg.load())
            except FewlabelsError:  # the run itself reports its data's problem
                self.seen[key] = None
        return self.seen[key]


def _dependents(runs: dict[str, dict[str, Any]], keys: set[str]) -> set[str]:
    """``keys`` and every run that depends on one of them, transitively."""
    out = set(keys)
    grew = True
    while grew:
        grew = False
        for key, row in runs.items():
            if key not in out and any(d in out for d in row.get("deps") or []):
                out.add(key)
                grew = True
    return out


def reopen_stale_runs(store: Any, study_dir: Path, run_dir: Callable[..., Path], log: Log) -> int:
    """Put back to pending the finished runs whose results no longer stand (see the module
    docstring), warning once per run; returns how many were reopened."""
    runs = store.runs()
    fps = _Fingerprints()
    reopen: set[str] = set()
    changed: set[str] = set()
    for key, row in runs.items():
        if not row.get("wanted", 1):
            continue
        folder = run_dir(study_dir, key)
        product = _PRODUCT.get(row["kind"])
        if row["status"] == "done" and product and not (folder / product).exists():
            log(f"warning: run {row['label']}: {folder / product} is missing; it runs again")
            reopen.add(key)
            continue
        old = _recorded(folder, row["kind"])
        cfg = _source(row, folder) if old is not None else None
        now = fps.of(cfg) if cfg is not None else None
        if now is not None and now != old:
            log(
                f"warning: run {row['label']}: the data changed since it ran (data_fingerprint "
                f"{old[:12]} there, {now[:12]} now); it runs again on the data as it is now"
            )
            changed.add(key)
    for key in _dependents(runs, changed):
        folder = run_dir(study_dir, key)
        fresh_start(folder)
        fresh_start(folder / "finetune")
        reopen.add(key)
    done = [k for k in reopen if runs[k]["status"] in ("done", "failed")]
    return store.reopen(sorted(done)) if done else 0
