"""NumPy ``.npz`` archives: ``images`` (NHWC, NCHW or NHW) and optional labels and names."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.core.errors import DataError
from fewlabels.data.cache import Decoded, Part, Scan, file_stat

_IMAGE_KEYS = ("images", "x", "X")
_LABEL_KEYS = ("labels", "y")


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """The archive itself is the only file."""
    if not path.is_file():
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


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read the archive (never unpickling objects)."""
    path: Path = sc.plan
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
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
    if "class_names" in arrays:
        raw = arrays["class_names"].reshape(-1).tolist()
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in raw]
    else:
        top = max(
            [int(train_y.max()) if len(train_y) else -1]
            + ([int(test.labels.max())] if test is not None and len(test.labels) else [])
        )
        names = [str(i) for i in range(max(top + 1, int(options.get("classes", 0))))]
    return Decoded(
        f"npz:{path.stem}",
        names,
        Part(train_x, train_y, id_ranges=[("train", len(train_x))]),
        test,
        unlabeled,
    )
