"""CIFAR-10 and CIFAR-100, Python version (``cifar-10-batches-py``, ``cifar-100-python``).

Each batch is a pickle of a dict (``b"data"``: uint8 (N, 3072), ``b"labels"`` or
``b"fine_labels"``/``b"coarse_labels"``). The pickles are read by an unpickler that
builds numpy arrays and plain values only: any other global (a function, a class) is
refused before anything is called. ``scan``/``decode`` here serve ``cifar10:`` and
``cifar100:``: a folder holding the binary version goes to ``fewlabels.data.cifar``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core.multiarray import _reconstruct

from fewlabels.core.errors import DataError
from fewlabels.data import cifar
from fewlabels.data.cache import Decoded, Part, Scan, file_stat

# the globals a pickled numpy array needs; nothing else may be loaded
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


@dataclass(frozen=True)
class _PyLayout:
    train: tuple[str, ...]
    test: str
    meta: str


_PY_LAYOUTS = {
    "cifar10": _PyLayout(
        tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"
    ),
    "cifar100": _PyLayout(("train",), "test", "meta"),
}


@dataclass(frozen=True)
class _PyPlan:
    train: list[str]
    test: str | None


class _Unpickler(pickle.Unpickler):
    """Builds numpy arrays, bytes, str, numbers, lists and dicts; refuses any other global."""

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise DataError(
                f"{self.source} was refused: it is not a plain CIFAR pickle (it would load "
                f"{module[:60]}.{name[:60]}, which could run code)"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source} was refused: it is not a plain CIFAR pickle")


def load_pickle(path: Path) -> dict[Any, Any]:
    """Read one CIFAR pickle with the restricted unpickler; a dict, or a one-line DataError."""
    try:
        with open(path, "rb") as f:
            obj = _Unpickler(f, path).load()
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    except MemoryError:
        raise DataError(f"{path} is not a readable CIFAR pickle (too large or corrupt)") from None
    except Exception as e:  # pickle raises many types for damaged input; all mean unreadable
        detail = " ".join(str(e).split())[:80] or type(e).__name__
        raise DataError(
            f"{path} is not a readable CIFAR pickle (truncated or corrupt: {detail})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch (a dict)")
    return obj


def _get(obj: dict[Any, Any], key: str) -> Any:
    return obj[key.encode()] if key.encode() in obj else obj.get(key)


def batch_arrays(
    obj: dict[Any, Any], path: Path, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels of an unpickled batch; checked, with errors naming it."""
    data = _get(obj, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {what}, not a uint8 (N, 3072) array")
    if data.shape[1] != cifar.IMAGE_BYTES:
        raise DataError(f"{path}: 'data' rows hold {data.shape[1]} bytes, not {cifar.IMAGE_BYTES}")
    raw = _get(obj, label_key)
    if raw is None:
        raise DataError(f"{path} has no {label_key!r} list")
    try:
        labels = np.asarray(raw)
        ok = labels.ndim == 1 and (np.issubdtype(labels.dtype, np.integer) or len(labels) == 0)
    except (ValueError, TypeError):
        ok = False
    if not ok or len(labels) != len(data):
        raise DataError(f"{path}: {label_key!r} must be {len(data)} integers")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        k = int(bad[0])
        raise DataError(
            f"label {int(labels[k])} of record {k} in {path} is out of range for "
            f"{num_classes} classes (0..{num_classes - 1})"
        )
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels


def _python_base(kind: str, path: Path) -> Path | None:
    """The folder of Python-version batches, or None when ``path`` holds the binary version."""
    lay, py = cifar._LAYOUTS[kind], _PY_LAYOUTS[kind]
    base = path / lay.pickle_folder if (path / lay.pickle_folder).is_dir() else path
    if (path / lay.folder).is_dir() or any((path / f).is_file() for f in (*lay.train, lay.test)):
        return None
    if base.name == lay.pickle_folder or any((base / f).is_file() for f in (*py.train, py.test)):
        return base
    return None


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """Find the batch files of a CIFAR download, Python version or binary version."""
    base = _python_base(kind, path) if path.is_dir() else None
    if base is None:
        return cifar.scan(kind, path, options)
    py = _PY_LAYOUTS[kind]
    train = [f for f in py.train if (base / f).is_file()]
    test = py.test if (base / py.test).is_file() else None
    if not train and test is None:
        raise DataError(f"no {kind} batch files ({py.train[0]}, ..., {py.test}) in {base}")
    files = [
        file_stat(base / f, f)
        for f in [*train, *([test] if test else []), py.meta]
        if (base / f).is_file()
    ]
    return Scan(base, files, _PyPlan(train, test))


def _names(kind: str, base: Path, options: dict[str, Any]) -> list[str]:
    py = _PY_LAYOUTS[kind]
    coarse = kind == "cifar100" and options.get("label", "fine") == "coarse"
    n = 10 if kind == "cifar10" else 20 if coarse else 100
    if not (base / py.meta).is_file():
        return list(cifar.CIFAR10_NAMES) if kind == "cifar10" else [str(i) for i in range(n)]
    key = (
        "label_names"
        if kind == "cifar10"
        else "coarse_label_names"
        if coarse
        else "fine_label_names"
    )
    raw = _get(load_pickle(base / py.meta), key)
    if (
        not isinstance(raw, list)
        or len(raw) != n
        or not all(isinstance(s, bytes | str) for s in raw)
    ):
        raise DataError(f"{base / py.meta}: {key!r} is not a list of {n} class names")
    try:
        return [s.decode("utf-8") if isinstance(s, bytes) else s for s in raw]
    except UnicodeDecodeError:
        raise DataError(f"{base / py.meta}: {key!r} holds names that are not UTF-8") from None


def _part(base: Path, files: list[str], label_key: str, n: int) -> Part:
    xs, ys = [], []
    for f in files:
        x, y = batch_arrays(load_pickle(base / f), base / f, label_key, n)
        xs.append(x)
        ys.append(y)
    ranges = [(f, len(y)) for f, y in zip(files, ys, strict=True)]
    return Part(np.concatenate(xs), np.concatenate(ys), id_ranges=ranges)


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read every batch ``scan`` found (``strict`` has no effect here)."""
    plan = sc.plan
    if not isinstance(plan, _PyPlan):
        return cifar.decode(kind, sc, options, strict)
    names = _names(kind, sc.root, options)
    label_key = "labels" if kind == "cifar10" else f"{options.get('label', 'fine')}_labels"
    if plan.train:
        train = _part(sc.root, plan.train, label_key, len(names))
    else:
        train = Part(np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64), id_ranges=[])
    test = _part(sc.root, [plan.test], label_key, len(names)) if plan.test else None
    return Decoded(kind, names, train, test)
