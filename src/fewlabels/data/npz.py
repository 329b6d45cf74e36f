"""NumPy ``.npz`` archives: ``images`` (NHWC, NCHW or NHW) and optional labels and names."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data.cache import Decoded, Part, Scan, file_stat

_IMAGE_KEYS = ("images", "x", "X")
_LABEL_KEYS = ("labels", "y")
MAX_CLASSES = 100_000  # a label above this is a mistake (a marker, a hash), not a class


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """The archive itself is the only file."""
    if not path.exists() or path.is_dir():
        raise DataError(f"{path} is not a file; npz:FILE wants a .npz archive")
    return Scan(path.parent, [file_stat(path, path.name)], path)


def to_nchw(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 (N, C, H, W) from NHWC / NCHW / NHW arrays of uint8, ints 0..255 or floats 0..1."""
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
        elif arr.shape[1] not in (1, 3):
            raise DataError(
                f"{what} has shape {arr.shape}: expected (N, H, W, C) or (N, C, H, W) "
                f"with 1 or 3 channels"
            )
    else:
        raise DataError(
            f"{what} has shape {arr.shape}: expected (N, H, W, C), (N, C, H, W) or (N, H, W)"
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
            raise DataError(f"{what} is float but not within [0, 1]")
        return np.ascontiguousarray(np.rint(arr * 255.0).astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(f"{what} holds integers outside 0..255")
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise DataError(f"{what} has dtype {arr.dtype}; expected uint8 or float in [0, 1]")


def _labels(arr: np.ndarray, n: int, what: str) -> np.ndarray:
    if arr.shape != (n,) or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise DataError(
            f"{what} must be {n} integers, got {arr.dtype} with shape {tuple(arr.shape)}"
        )
    y = arr.astype(np.int64)
    if n and int(y.min()) < -1:
        raise DataError(f"{what} holds {int(y.min())}; labels are >= 0 (or -1 for unlabeled)")
    return y


def _read(path: Path) -> dict[str, np.ndarray]:
    """Every member of the archive; a member that is not a ``.npy`` array is refused."""
    arrays: dict[str, np.ndarray] = {}
    member = ""
    if path.is_file() and not zipfile.is_zipfile(path):  # np.load would try it as a pickle
        raise DataError(f"cannot read {path} as .npz: not a zip archive of .npy arrays")
    try:
        with np.load(path, allow_pickle=False) as z:
            for member in z.files:
                arrays[member] = z[member]
    except MemoryError:  # the .npy header claims a shape no memory holds
        raise DataError(
            f"{path} member {member[:60]!r} claims an array too large for memory in its "
            ".npy header; the archive is corrupt or its header lies"
        ) from None
    except (
        OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError,
        RuntimeError,
    ) as e:  # fmt: skip
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise DataError(f"cannot read {path} as .npz: {msg}") from None
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):
            raise DataError(
                f"{path} member {k[:60]!r} is not a .npy array; an .npz archive holds only "
                ".npy arrays (images, labels, ...)"
            )
    return arrays


def _class_names(arr: np.ndarray, what: str) -> list[str]:
    """Class names from a string (or bytes, UTF-8) array."""
    names = []
    for i, c in enumerate(arr.reshape(-1).tolist()):
        if isinstance(c, bytes):
            try:
                c = c.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{what} name {i} is not UTF-8 text (bad byte at offset {e.start})"
                ) from None
        names.append(str(c))
    return names


def _check_labels(ys: dict[str, np.ndarray], names: list[str] | None, classes: int) -> None:
    """Labels must index the classes: below the number of class names (or ``classes``),
    and, when neither is given, numbering the classes 0..K-1 without a gap."""
    seen = np.zeros(0, np.int64)
    for what, y in ys.items():
        top = int(y.max()) if len(y) else -1
        if top >= MAX_CLASSES:
            raise DataError(f"{what} holds label {top}; at most {MAX_CLASSES} classes are read")
        if names is not None and top >= len(names):
            raise DataError(
                f"{what} holds label {top} but there are {len(names)} class names "
                f"(labels are 0..{len(names) - 1}, or -1 for unlabeled)"
            )
        if names is None and classes and top >= classes:
            raise DataError(
                f"{what} holds label {top} but classes={classes} (labels 0..{classes - 1})"
            )
        seen = np.union1d(seen, y[y >= 0])
    if names is None and not classes and len(seen) and len(seen) != int(seen[-1]) + 1:
        gap = int(np.setdiff1d(np.arange(int(seen[-1]) + 1), seen)[0])
        where = " and ".join(ys)
        raise DataError(
            f"{where} hold label {int(seen[-1])} but no image has label {gap}: labels must "
            "number the classes 0..K-1 (give class_names, or classes=N, for classes without "
            "images)"
        )


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read the archive (never unpickling objects)."""
    path: Path = sc.plan
    arrays = _read(path)
    key = next((k for k in _IMAGE_KEYS if k in arrays), None)
    if key is None:
        raise DataError(f"{path} has no 'images' array (found: {', '.join(arrays) or 'none'})")
    train_x = to_nchw(arrays[key], f"{path.name}[{key}]")
    lkey = next((k for k in _LABEL_KEYS if k in arrays), None)
    train_y = (
        _labels(arrays[lkey], len(train_x), f"{path.name}[{lkey}]")
        if lkey is not None
        else np.full(len(train_x), -1, np.int64)
    )
    test = None
    if "test_images" in arrays:
        test_x = to_nchw(arrays["test_images"], f"{path.name}[test_images]")
        if "test_labels" not in arrays:
            raise DataError(f"{path} has test_images but no test_labels")
        test_y = _labels(arrays["test_labels"], len(test_x), f"{path.name}[test_labels]")
        test = Part(test_x, test_y, id_ranges=[("test", len(test_x))])
    unlabeled = None
    if "unlabeled_images" in arrays:
        ux = to_nchw(arrays["unlabeled_images"], f"{path.name}[unlabeled_images]")
        unlabeled = Part(ux, np.full(len(ux), -1, np.int64), id_ranges=[("unlabeled", len(ux))])

    for what, part in (("test_images", test), ("unlabeled_images", unlabeled)):
        if part is not None and part.images.shape[1:] != train_x.shape[1:]:
            raise DataError(
                f"{path.name}[{what}] holds {part.images.shape[1:]} images but the training "
                f"images are {train_x.shape[1:]} (C, H, W)"
            )
    given = (
        _class_names(arrays["class_names"], f"{path.name}[class_names]")
        if "class_names" in arrays
        else None
    )
    ys = {f"{path.name}[{lkey}]": train_y} if lkey is not None else {}
    if test is not None:
        ys[f"{path.name}[test_labels]"] = test.labels
    classes = int(options.get("classes", 0))
    if classes > MAX_CLASSES:
        raise ConfigError(f"npz option classes={classes}: at most {MAX_CLASSES} classes are read")
    _check_labels(ys, given, classes)
    if given is not None:
        names = given
    else:
        top = max([int(y.max()) for y in ys.values() if len(y)] + [-1])
        names = [str(i) for i in range(max(top + 1, classes))]
    return Decoded(
        f"npz:{path.stem}",
        names,
        Part(train_x, train_y, id_ranges=[("train", len(train_x))]),
        test,
        unlabeled,
    )
