"""Labels files of a data spec: its training images by id, and a labels CSV applied to them.

A labels file is a CSV with a header and (at least) the columns ``id`` and ``label``: the
stable id of a training image of the data spec (``data_batch_1:17``, ``unlabeled/a.png``)
and its class name. ``apply_labels`` makes the file's images the labeled set (the
``labels`` setting of a run); ``fewlabels.select.labels`` writes and merges such files.

Unknown ids, unknown class names, an id listed twice, a file with no labels, a field too
large to be an id or label: each is a one-line ``DataError`` naming the file and row.

Ids round-trip exactly: an id is looked up as written first and, only when no image has
that id, without its surrounding spaces (a spreadsheet may add them), so an image named
`` a.png`` keeps its leading space from ``select`` to ``add-labels``. Class names are
compared in Unicode normal form NFC (``café`` typed as e + combining accent is ``café``).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fewlabels.core.errors import DataError
from fewlabels.data.imageset import UNLABELED, Dataset, ImageSet


@dataclass
class Universe:
    """Every training image of a data spec (the train part, then the unlabeled part), by id."""

    dataset: Dataset

    def __post_init__(self) -> None:
        parts = [self.dataset.train] + (
            [self.dataset.unlabeled] if self.dataset.unlabeled is not None else []
        )
        ids: list[str] = []
        for p in parts:
            if p.ids is None:
                raise DataError(f"{self.dataset.name} gives its images no ids to label them by")
            ids += p.ids
        self.ids = ids
        self.row = {i: r for r, i in enumerate(ids)}
        if len(self.row) != len(ids):
            raise DataError(f"{self.dataset.name} has two images with the same id")
        self.n_train = len(self.dataset.train)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    def source_labels(self) -> torch.Tensor:
        """The labels the source itself gives (``-1`` for unlabeled), by universe row."""
        parts = [self.dataset.train.labels]
        if self.dataset.unlabeled is not None:
            parts.append(torch.full((len(self.dataset.unlabeled),), UNLABELED, dtype=torch.long))
        return torch.cat(parts)

    def images(self, rows: Sequence[int] | None = None) -> torch.Tensor:
        """uint8 images of ``rows`` (all when None), without copying a whole part needlessly."""
        tr, un = self.dataset.train, self.dataset.unlabeled
        if rows is None:
            return tr.images if un is None or not len(un) else torch.cat([tr.images, un.images])
        r = torch.as_tensor(list(rows), dtype=torch.long)
        out = torch.empty((len(r), *tr.images.shape[1:]), dtype=torch.uint8)
        in_train = r < self.n_train
        out[in_train] = tr.images[r[in_train]]
        if un is not None and bool((~in_train).any()):
            out[~in_train] = un.images[r[~in_train] - self.n_train]
        return out


def read_label_rows(path: str | Path, *, need_label: bool = True) -> list[dict[str, str]]:
    """The rows of a CSV with an ``id`` (and ``label``) column; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"labels file {path} is not UTF-8 text (bad byte at offset {e.start})"
        ) from None
    if not text.strip():
        raise DataError(f"labels file {path} is empty")
    reader = csv.DictReader(io.StringIO(text))
    try:
        reader.fieldnames  # noqa: B018 (reads the header)
    except csv.Error as e:
        raise DataError(f"{path} line 1: not a valid CSV header ({e})") from None
    cols = [c.strip().lower() for c in reader.fieldnames or []]
    want = ["id", "label"] if need_label else ["id"]
    missing = [c for c in want if c not in cols]
    if missing:
        raise DataError(
            f"{path} has no {' or '.join(repr(c) for c in missing)} column "
            f"(header: {', '.join(reader.fieldnames or [])}); expected id,label"
        )
    rows = []
    try:
        for r in reader:
            rows.append({str(k).strip().lower(): _field(k, v) for k, v in r.items() if k})
    except csv.Error as e:  # e.g. a field over the csv module's 128 KB limit
        line = reader.line_num + 1  # the line being read; line_num counts finished ones
        raise DataError(f"{path} line {line}: not a valid CSV row ({e})") from None
    if not rows:
        raise DataError(f"labels file {path} has a header but no rows")
    return rows


def _field(key: str, value: str | None) -> str:
    """A cell as read: ids and labels keep their surrounding spaces (see ``_lookup``),
    other cells lose them."""
    value = value or ""
    return value if str(key).strip().lower() in ("id", "label") else value.strip()


def _lookup(text: str, table: dict[str, int]) -> int | None:
    """``table[text]`` as written, else ``table`` of ``text`` without surrounding spaces."""
    found = table.get(text)
    return table.get(text.strip()) if found is None else found


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def parse_labels(
    path: str | Path, universe: Universe, *, allow_blank: bool = False
) -> tuple[dict[int, int], int]:
    """``{universe row: class index}`` of a labels CSV, and how many rows had no label.

    Rows with an empty label are refused unless ``allow_blank`` (a returned request may
    leave images the labellers could not name).
    """
    names = {_nfc(c): k for k, c in enumerate(universe.class_names)}
    lower = {c.lower(): k for c, k in names.items()}
    out: dict[int, int] = {}
    blank = 0
    for n, r in enumerate(read_label_rows(path), start=2):  # line 1 is the header
        image_id, label = r.get("id", ""), _nfc(r.get("label", ""))
        if not image_id.strip():
            raise DataError(f"{path} line {n}: empty id")
        row = _lookup(image_id, universe.row)
        if row is None:
            raise DataError(
                f"{path} line {n}: unknown id {image_id!r}: not a training image of "
                f"{universe.dataset.name}"
            )
        if row in out:
            raise DataError(f"{path} line {n}: id {image_id!r} is listed twice")
        if not label.strip():
            if not allow_blank:
                raise DataError(f"{path} line {n}: id {image_id!r} has no label")
            blank += 1
            out[row] = UNLABELED
            continue
        k = _lookup(label, names)
        k = _lookup(label.lower(), lower) if k is None else k
        if k is None:
            shown = ", ".join(universe.class_names[:10])
            more = ", ..." if len(universe.class_names) > 10 else ""
            raise DataError(
                f"{path} line {n}: unknown class {label.strip()!r}; the classes are {shown}{more}"
            )
        out[row] = k
    return {r: k for r, k in out.items() if k != UNLABELED}, blank


def apply_labels(
    dataset: Dataset, labels_file: str | Path | None, *, source_labels: bool = True
) -> Dataset:
    """``dataset`` with the labels file's images labeled (and moved into ``train``).

    ``source_labels=False`` first hides every label the source gives, so the labels file
    is the whole labeled set. Images of the unlabeled part that the file labels move to
    the training part; the rest of the unlabeled part stays as it is.
    """
    if labels_file is None and source_labels:
        return dataset
    uni = Universe(dataset)
    given, _ = parse_labels(labels_file, uni) if labels_file is not None else ({}, 0)
    train = dataset.train
    y = train.labels.clone() if source_labels else torch.full_like(train.labels, UNLABELED)
    for row, k in given.items():
        if row < uni.n_train:
            y[row] = k
    train = ImageSet(train.images, y, list(train.class_names), train.ids)
    unl = dataset.unlabeled
    moved = sorted(r - uni.n_train for r in given if r >= uni.n_train)
    if unl is not None and moved:
        extra = unl.subset(moved)
        extra.labels = torch.tensor([given[r + uni.n_train] for r in moved], dtype=torch.long)
        keep = sorted(set(range(len(unl))) - set(moved))
        train = ImageSet.concat([train, extra])
        unl = unl.subset(keep)
    return replace(dataset, train=train, unlabeled=unl)
