"""The checks a run with a run folder makes at its start, before it writes anything.

- the out folder: not empty, not a file, writable, not another command's run, not in use
  by another process (``fewlabels.core.runlock``);
- the data: a checkpoint is resumed only on the data it was trained on. The data's
  content fingerprint (images, labels and class names of every part) is recorded in
  ``config.json`` and in the checkpoint; when it differs, the run is refused with one line
  saying what changed, unless it is told to start afresh (``fresh``), which removes the
  old checkpoint, curve, results and saved embeddings first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fewlabels.core.errors import CheckpointError
from fewlabels.core.runlock import check_not_in_use, check_out_folder, check_owner
from fewlabels.data import Dataset

__all__ = [
    "check_run_folder",
    "check_same_data",
    "data_fingerprint",
    "fresh_start",
    "stored_fingerprint",
]

# what ``fresh`` removes: the state a resume would read, and the results of the old data
FRESH_REMOVES = ("checkpoint.pt", "curve.jsonl", "metrics.json", "model.pt", "confusion.png")


def data_fingerprint(ds: Dataset) -> str:
    """A sha256 of the data's content: every part's images, labels and class names (for
    in-memory data it equals ``Dataset.from_sets``'s fingerprint). File times do not count:
    touching or copying the files keeps it; adding, removing or changing an image does not."""
    h = hashlib.sha256(b"dataset-v1")
    for part in (ds.train, ds.test, ds.unlabeled):
        h.update(part.fingerprint().encode() if part is not None else b"-")
    return h.hexdigest()


def check_run_folder(out: str | Path | None, command: str = "train") -> None:
    """Refuse a bad run folder before any work: empty path, a file, read-only, another
    command's run, or in use by another process."""
    if out is None:
        return
    path = check_out_folder(out)
    check_owner(path, command)
    check_not_in_use(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def stored_fingerprint(out: str | Path) -> str | None:
    """The data fingerprint the run in ``out`` recorded (None: none recorded)."""
    fp = _read_json(Path(out) / "config.json").get("data_fingerprint")
    return fp if isinstance(fp, str) else None


def check_same_data(out: str | Path | None, fingerprint: str, labeled: int) -> None:
    """Refuse to resume ``out``'s checkpoint on data other than the data it was trained on.

    ``labeled``: this run's number of labeled images, shown beside the checkpoint's."""
    if out is None or not (Path(out) / "checkpoint.pt").exists():
        return
    old = stored_fingerprint(out)
    if old is None or old == fingerprint:
        return  # a run folder of an older fewlabels recorded none: nothing to compare
    sizes = _read_json(Path(out) / "split.json").get("sizes") or {}
    there = sizes.get("labeled", "?") if isinstance(sizes, dict) else "?"
    raise CheckpointError(
        f"{out}: the data changed since the checkpoint (data_fingerprint {old[:12]} there, "
        f"{fingerprint[:12]} now; {there} labeled there, {labeled} now); start afresh with "
        "`fresh` or use a new `out` folder"
    )


def fresh_start(out: str | Path | None) -> None:
    """Remove the old run's checkpoint, curve, results and saved embeddings from ``out``
    (call once every input is checked and the folder's lock is held)."""
    if out is None:
        return
    for name in FRESH_REMOVES:
        (Path(out) / name).unlink(missing_ok=True)
    for path in (Path(out) / "embeddings").glob("step_*.npz"):
        path.unlink(missing_ok=True)
