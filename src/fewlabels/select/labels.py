"""The labeled set of a data spec as a labels file, and merging returned labels into it.

A labels file is a CSV with a header and (at least) the columns ``id`` and ``label``: the
stable id of a training image of the data spec (``data_batch_1:17``, ``unlabeled/a.png``)
and its class name. ``fewlabels select`` writes a request in the same shape (with an
empty ``label`` column and extra columns); ``fewlabels data add-labels`` checks the filled
file and appends its rows to the labels file; ``--labels FILE`` makes the file's images
the labeled set of a training run.

Unknown ids, unknown class names, an id listed twice, an id already labeled differently,
a file with no labels: each is a one-line ``DataError`` naming the file and row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from fewlabels.core.checkpoint import atomic_write_bytes
from fewlabels.core.errors import DataError
from fewlabels.data.labels import Universe, apply_labels, parse_labels, read_label_rows

__all__ = [
    "Merge",
    "Universe",
    "apply_labels",
    "merge_labels",
    "parse_labels",
    "read_label_rows",
    "write_labels",
]


def write_labels(path: str | Path, universe: Universe, labels: dict[int, int]) -> None:
    """Write ``{row: class}`` as an ``id,label`` CSV (rows in universe order), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label"])
    for row in sorted(labels):
        w.writerow([universe.ids[row], universe.class_names[labels[row]]])
    atomic_write_bytes(Path(path), buf.getvalue().encode())


@dataclass
class Merge:
    """What ``merge_labels`` did."""

    added: int
    already: int
    blank: int
    total: int
    counts: list[int]


def merge_labels(returned: str | Path, labels_file: str | Path, universe: Universe) -> Merge:
    """Append the labeled rows of ``returned`` to ``labels_file`` (created when missing).

    An id already in the labels file with the same label is skipped; with another label
    it is an error (fix one of the files). A returned file without any label is an error.
    """
    new, blank = parse_labels(returned, universe, allow_blank=True)
    if not new:
        raise DataError(f"{returned} holds no labels yet: fill its 'label' column first")
    old: dict[int, int] = {}
    if Path(labels_file).exists():
        old, _ = parse_labels(labels_file, universe)
    already = 0
    for row, k in new.items():
        if row in old:
            if old[row] != k:
                names = universe.class_names
                raise DataError(
                    f"{returned}: id {universe.ids[row]!r} is labeled {names[k]!r} but "
                    f"{labels_file} already labels it {names[old[row]]!r}"
                )
            already += 1
    merged = {**old, **new}
    write_labels(labels_file, universe, merged)
    counts = [0] * len(universe.class_names)
    for k in merged.values():
        counts[k] += 1
    return Merge(len(new) - already, already, blank, len(merged), counts)
