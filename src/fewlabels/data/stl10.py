"""STL-10, binary version: column-major 3x96x96 uint8 images, labels 1..10."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.data.cache import Decoded, Part, Scan, file_stat
from fewlabels.errors import DataError

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
    present = [f for f in _FILES if (base / f).is_file()]
    if "train_X.bin" not in present and "test_X.bin" not in present:
        raise DataError(f"no STL-10 files (train_X.bin, train_y.bin, test_X.bin, ...) in {base}")
    return Scan(base, [file_stat(base / f, f) for f in present], set(present))


def _images(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size % IMAGE_BYTES:
        raise DataError(
            f"truncated STL-10 file {path}: {size} bytes is not a multiple of {IMAGE_BYTES}"
        )
    n = size // IMAGE_BYTES
    if n == 0:
        return np.zeros((0, 3, SIDE, SIDE), np.uint8)
    # memmap, not a read: the 100,000-image unlabeled file is copied once, into the cache
    x = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, SIDE, SIDE))
    return x.transpose(0, 1, 3, 2)  # stored column-major: (C, W, H) -> (C, H, W)


def _labels(path: Path, n: int, xname: str, num_classes: int) -> np.ndarray:
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if len(y) != n:
        raise DataError(f"{path} has {len(y)} labels for the {n} images in {xname}")
    if len(y) and (int(y.min()) < 1 or int(y.max()) > num_classes):
        raise DataError(
            f"{path} holds labels {int(y.min())}..{int(y.max())}; STL-10 labels are "
            f"1..{num_classes}"
        )
    return y - 1


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read the labeled splits and, when present, the unlabeled one (all memmapped)."""
    present: set[str] = sc.plan
    names = list(STL10_NAMES)
    if "class_names.txt" in present:
        names = [ln.strip() for ln in (sc.root / "class_names.txt").read_text().splitlines()]
        names = [ln for ln in names if ln]
        if not names:
            raise DataError(f"{sc.root / 'class_names.txt'} lists no class names")

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
