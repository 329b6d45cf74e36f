"""CIFAR-10 and CIFAR-100, binary version: fixed-size records of label byte(s) + 3x32x32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.core.errors import DataError
from fewlabels.data.cache import Decoded, Part, Scan, file_stat

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class _Layout:
    folder: str  # the sub-folder of an unpacked download
    train: tuple[str, ...]
    test: str
    label_bytes: int
    pickle_folder: str  # the Python version, read by fewlabels.data.cifar_python


_LAYOUTS = {
    "cifar10": _Layout(
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test_batch.bin",
        1,
        "cifar-10-batches-py",
    ),
    "cifar100": _Layout("cifar-100-binary", ("train.bin",), "test.bin", 2, "cifar-100-python"),
}


def _names_file(kind: str, options: dict[str, Any]) -> tuple[str, int]:
    if kind == "cifar10":
        return "batches.meta.txt", 10
    if options.get("label", "fine") == "coarse":
        return "coarse_label_names.txt", 20
    return "fine_label_names.txt", 100


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """Find the batch files of a CIFAR-10 (``kind="cifar10"``) or CIFAR-100 download."""
    lay = _LAYOUTS[kind]
    base = path / lay.folder if (path / lay.folder).is_dir() else path
    if not base.is_dir():
        raise DataError(f"{path} is not a folder; {kind}:PATH wants the folder of batch files")
    train = [f for f in lay.train if (base / f).exists()]  # a FIFO: refused below
    test = lay.test if (base / lay.test).exists() else None
    if not train and test is None:
        wanted = ", ".join(
            lay.train if len(lay.train) < 3 else (lay.train[0], "...", lay.train[-1])
        )
        raise DataError(f"no {kind} batch files ({wanted}, {lay.test}) in {base}")
    names_file, _ = _names_file(kind, options)
    files = [file_stat(base / f, f) for f in [*train, *([test] if test else [])]]
    if (base / names_file).exists():
        files.append(file_stat(base / names_file, names_file))
    return Scan(base, files, {"train": train, "test": test})


def parse_records(
    raw: np.ndarray | bytes, name: str | Path, label_bytes: int, label_at: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split CIFAR binary records (``label_bytes`` label bytes + 3x32x32) into images, labels.

    ``name`` is the file named in errors; any malformed input is a one-line ``DataError``.
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(raw, dtype=np.uint8)
    rec = label_bytes + IMAGE_BYTES
    if raw.size == 0:
        raise DataError(f"CIFAR file {name} is empty (0 bytes)")
    if raw.size % rec:
        n, extra = divmod(raw.size, rec)
        raise DataError(
            f"CIFAR file {name} is truncated or has extra bytes: {raw.size} bytes is not a "
            f"multiple of {rec} ({n} records + {extra} bytes)"
        )
    recs = raw.reshape(-1, rec)
    labels = recs[:, label_at].astype(np.int64)
    if int(labels.max()) >= num_classes:
        k = int(np.argmax(labels >= num_classes))
        raise DataError(
            f"label {int(labels[k])} of record {k} in {name} is out of range for "
            f"{num_classes} classes (0..{num_classes - 1})"
        )
    return recs[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def parse_names(data: bytes, name: str | Path, n: int) -> list[str]:
    """Class names, one a line (blank lines ignored); exactly ``n`` of them."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text (bad byte at offset {e.start})") from None
    found = [ln.strip() for ln in text.splitlines()]
    found = [ln for ln in found if ln]
    if len(found) != n:
        raise DataError(f"{name} lists {len(found)} class names, not {n}")
    return found


def _read(path: Path, label_bytes: int, label_at: int, num_classes: int) -> tuple[Any, Any]:
    return parse_records(
        np.fromfile(path, dtype=np.uint8), path, label_bytes, label_at, num_classes
    )


def _part(base: Path, files: list[str], lay: _Layout, label_at: int, n: int) -> Part:
    imgs, labs = [], []
    for f in files:
        x, y = _read(base / f, lay.label_bytes, label_at, n)
        imgs.append(x)
        labs.append(y)
    if not files:
        return Part(np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64), id_ranges=[])
    ranges = [(Path(f).stem, len(y)) for f, y in zip(files, labs, strict=True)]
    return Part(np.concatenate(imgs), np.concatenate(labs), id_ranges=ranges)


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read every batch file found by ``scan`` (``strict`` has no effect here)."""
    lay = _LAYOUTS[kind]
    names_file, n = _names_file(kind, options)
    label_at = 1 if kind == "cifar100" and options.get("label", "fine") == "fine" else 0
    names = CIFAR10_NAMES if kind == "cifar10" else [str(i) for i in range(n)]
    if (sc.root / names_file).is_file():
        names = parse_names((sc.root / names_file).read_bytes(), sc.root / names_file, n)
    train = _part(sc.root, sc.plan["train"], lay, label_at, n)
    test = _part(sc.root, [sc.plan["test"]], lay, label_at, n) if sc.plan["test"] else None
    return Decoded(kind, list(names), train, test)
