"""Run-folder artifacts shared by every trainer: the ``curve.jsonl`` learning curve.

A curve is one JSON object per line, appended as training goes. A process killed while
appending can leave its last line cut short; ``read_curve`` ends the curve there, so a
resumed run rewrites the readable rows (``write_curve``, atomically) and appends on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fewlabels.core.atomic import atomic_write_text, write_error

__all__ = ["CURVE_NAME", "append_curve", "read_curve", "write_curve"]

CURVE_NAME = "curve.jsonl"


def read_curve(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a curve file ([] if there is none); a torn last line ends the curve."""
    p = Path(path)
    if not p.exists():
        return []
    rows: list[dict[str, Any]] = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash ends the readable curve
    return rows


def write_curve(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Replace the curve file with ``rows`` atomically (creating its folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in rows))


def append_curve(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row to the curve file; a failed write (disk full) is a one-line
    ``WriteError`` (a row cut short ends the readable curve; the checkpoint is untouched)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as e:
        raise write_error(path, e) from None
