"""A CSV file listing images: ``csv:FILE[,root=DIR][,size=N]``.

The header row names the columns: ``path`` (or ``image`` / ``file``) and ``label`` (or
``class``); other columns are ignored. Paths are relative to ``root`` (default: the CSV's
folder). An empty label marks an unlabeled image. The class names are the sorted distinct
non-empty labels. Images are decoded exactly as ``folder:`` decodes them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from fewlabels.core.errors import DataError
from fewlabels.data import folder
from fewlabels.data.cache import Decoded, Scan, file_stat
from fewlabels.data.imageset import UNLABELED

PATH_COLUMNS = ("path", "image", "file")
LABEL_COLUMNS = ("label", "class")
MAX_FIELD = 128 * 1024  # bytes (characters) in one field
MAX_FILE = 1 << 30


def _text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise DataError(f"{path} is {size} bytes; a CSV of image paths is at most 1 GiB")
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}, row {line}: not UTF-8 text (bad byte at offset {e.start})"
        ) from None


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    cols = [h.strip().lower() for h in header]
    for n in names:
        if n in cols:
            return cols.index(n)
    found = ", ".join(repr(h[:40]) for h in header[:8]) or "none"
    raise DataError(
        f"{path}, row 1: no {names[0]!r} column (also accepted: "
        f"{', '.join(repr(n) for n in names[1:])}); the header holds {found}"
    )


def read_rows(text: str, path: Path) -> list[tuple[int, str, str]]:
    """(row number, image path, label) for every non-blank row after the header.

    Row numbers count lines from 1 (the header); a missing column, a short row or a
    field over 128 KB is a one-line ``DataError`` naming the file and the row.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, str, str]] = []
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty; expected a header row such as 'path,label'")
        pcol = _column(header, PATH_COLUMNS, path)
        lcol = _column(header, LABEL_COLUMNS, path)
        start = reader.line_num + 1
        for fields in reader:
            row = start
            start = reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if any(len(f) > MAX_FIELD for f in fields):
                raise DataError(f"{path}, row {row}: a field over 128 KB")
            if len(fields) <= max(pcol, lcol):
                raise DataError(
                    f"{path}, row {row}: {len(fields)} field(s), but the header puts "
                    f"{header[max(pcol, lcol)].strip()!r} in column {max(pcol, lcol) + 1}"
                )
            rows.append((row, fields[pcol].strip(), fields[lcol].strip()))
    except csv.Error as e:
        if "field limit" in str(e):  # the csv module's own limit (128 KB unless changed)
            raise DataError(f"{path}, row {start}: a field over 128 KB") from None
        raise DataError(f"{path}, row {start}: not valid CSV ({e})") from None
    return rows


def make_plan(path: Path, root: Path) -> Any:
    """The CSV's images as ``folder``'s plan: labeled rows train, unlabeled rows unlabeled."""
    rows = read_rows(_text(path), path)
    names = sorted({label for _, _, label in rows if label})
    if not names:
        raise DataError(f"{path} has no labeled rows (every label is empty)")
    index = {c: k for k, c in enumerate(names)}
    plan = folder._Plan("csv", names, source=path.name)
    first: dict[str, int] = {}
    for row, rel, label in rows:
        if not rel:
            raise DataError(f"{path}, row {row}: the image path is empty")
        image = root / rel
        try:
            present = image.is_file()
        except OSError:  # e.g. a name too long for the file system
            present = False
        if not present:
            raise DataError(f"{path}, row {row}: no such image file {image}")
        if rel in first:
            raise DataError(
                f"{path}, row {row}: {rel[:80]} is listed again (first at row {first[rel]})"
            )
        first[rel] = row
        split = "train" if label else "unlabeled"
        plan.items.append(folder._Item(image, rel, index[label] if label else UNLABELED, split))
    return plan


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """Read the CSV and list its images (with sizes and mtimes, for the cache fingerprint)."""
    if not path.is_file():
        raise DataError(f"{path} is not a file; csv:FILE wants a CSV file with path,label columns")
    root = Path(options["root"]) if options.get("root") else path.parent
    plan = make_plan(path, root)
    files = [file_stat(path, f"csv:{path.name}"), (f"root:{root.resolve()}", 0, 0)]
    for it in plan.items:
        try:
            files.append(file_stat(it.path, f"{it.split}:{it.id}:{it.label}"))
        except OSError:
            files.append((f"{it.split}:{it.id}:{it.label}", -1, -1))
    return Scan(root, files, plan)


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Decode the listed images with ``folder``'s decoder (unreadable ones are skipped)."""
    dec = folder.decode(kind, sc, options, strict)
    dec.name = f"csv:{Path(sc.files[0][0]).stem.removeprefix('csv:')}"
    return dec
