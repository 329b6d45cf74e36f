"""STL-10, binary version: column-major 3x96x96 uint8 images, labels 1..10."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.core.errors import DataError
from fewlabels.data.cache import Decoded, Part, Scan, file_stat

STL10_NAMES = [
    "airplane", "bird", "car", "cat", "deer",
    "dog", "horse", "monkey", "ship", "truck",
]  # fmt: skip
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
_FILES = (
    "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin",
    "class_names.txt",
)  # fmt: skip


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """Find the STL-10 files in ``path`` or ``path/stl10_binary``."""
    base = path / "stl10_binary" if (path / "stl10_binary").is_dir() else path
    if not base.is_dir():
        raise DataError(f"{path} is not a folder; stl10:PATH wants the folder of .bin files")
    present = [f for f in _FILES if (base / f).exists()]  # a FIFO: refused below
    if "train_X.bin" not in present and "test_X.bin" not in present:
        raise DataError(f"no STL-10 files (train_X.bin, train_y.bin, test_X.bin, ...) in {base}")
    return Scan(base, [file_stat(base / f, f) for f in present], set(present))


def image_count(size: int, name: str | Path) -> int:
    """How many 3x96x96 images a file of ``size`` bytes holds; a partial image is an error."""
    if size == 0:
        raise DataError(f"STL-10 file {name} is empty (0 bytes)")
    if size % IMAGE_BYTES:
        n, extra = divmod(size, IMAGE_BYTES)
        raise DataError(
            f"STL-10 file {name} is truncated or has extra bytes: {size} bytes is not a "
            f"multiple of {IMAGE_BYTES} ({n} images + {extra} bytes)"
        )
    return size // IMAGE_BYTES


def parse_labels(data: bytes, name: str | Path, n: int, xname: str, num_classes: int) -> np.ndarray:
    """0-based labels from an STL-10 labels file (one byte per image, 1..num_classes)."""
    y = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    if len(y) != n:
        raise DataError(f"{name} has {len(y)} labels for the {n} images in {xname}")
    if len(y) and (int(y.min()) < 1 or int(y.max()) > num_classes):
        raise DataError(
            f"{name} holds labels {int(y.min())}..{int(y.max())}; STL-10 labels are "
            f"1..{num_classes}"
        )
    return y - 1


def parse_class_names(data: bytes, name: str | Path) -> list[str]:
    """``class_names.txt``: one name a line, at least one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text (bad byte at offset {e.start})") from None
    names = [ln.strip() for ln in text.splitlines()]
    names = [ln for ln in names if ln]
    if not names:
        raise DataError(f"{name} lists no class names")
    return names


def _images(path: Path) -> np.ndarray:
    n = image_count(path.stat().st_size, path)
    # memmap, not a read: the 100,000-image unlabeled file is copied once, into the cache
    x = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, SIDE, SIDE))
    return x.transpose(0, 1, 3, 2)  # stored column-major: (C, W, H) -> (C, H, W)


def _labels(path: Path, n: int, xname: str, num_classes: int) -> np.ndarray:
    return parse_labels(path.read_bytes(), path, n, xname, num_classes)


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read the labeled splits and, when present, the unlabeled one (all memmapped)."""
    present: set[str] = sc.plan
    names = list(STL10_NAMES)
    if "class_names.txt" in present:
        path = sc.root / "class_names.txt"
        names = parse_class_names(path.read_bytes(), path)

    def labeled(split: str) -> Part | None:
        xf, yf = f"{split}_X.bin", f"{split}_y.bin"
        if xf not in present:
            return None
        if yf not in present:
            raise DataError(f"{sc.root / xf} has no labels file {yf} beside it")
        x = _images(sc.root / xf)
        y = _labels(sc.root / yf, len(x), xf, len(names))
        return Part(x, y, id_ranges=[(split, len(x))])

    train = labeled("train")
    test = labeled("test")
    if train is None:
        train = Part(np.zeros((0, 3, SIDE, SIDE), np.uint8), np.zeros(0, np.int64), id_ranges=[])
    unlabeled = None
    if "unlabeled_X.bin" in present:
        x = _images(sc.root / "unlabeled_X.bin")
        unlabeled = Part(x, np.full(len(x), -1, np.int64), id_ranges=[("unlabeled", len(x))])
    return Decoded("stl10", names, train, test, unlabeled)
