"""On-disk cache of decoded sources: ``.npy`` arrays + ``meta.json`` per fingerprint.

A source is scanned (its files listed with size and mtime), fingerprinted, and decoded only
when no complete cache entry with that fingerprint exists. Entries are written into a
temporary folder and renamed into place, so a crash never leaves a half-written entry;
a corrupt entry is rebuilt without a word. Arrays are loaded with ``mmap_mode="c"``:
pages come from the OS page cache on demand, and the tensors are private and writable.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewlabels.data.imageset import Dataset, ImageSet

CACHE_VERSION = 1
PARTS = ("train", "test", "unlabeled")
_CHUNK_BYTES = 64 << 20


@dataclass
class Part:
    """One decoded split: uint8 (N, C, H, W) images (possibly a memmap view) and labels.

    Image ids are either an explicit list (``ids``) or ``(prefix, count)`` ranges that
    expand to ``prefix:0 .. prefix:count-1`` (cheap to store for binary files).
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str] | None = None
    id_ranges: list[tuple[str, int]] | None = None

    def id_list(self) -> list[str] | None:
        if self.ids is not None:
            return list(self.ids)
        if self.id_ranges is not None:
            return [f"{p}:{i}" for p, n in self.id_ranges for i in range(n)]
        return None


@dataclass
class Decoded:
    """What a file source decodes to, before it becomes a ``Dataset``."""

    name: str
    class_names: list[str]
    train: Part
    test: Part | None = None
    unlabeled: Part | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


@dataclass
class Scan:
    """A source's files (relative path, size, mtime_ns) and whatever its decoder needs."""

    root: Path
    files: list[tuple[str, int, int]]
    plan: Any = None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$FEWLABELS_CACHE``, else ``~/.cache/fewlabels``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("FEWLABELS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fewlabels"


def file_stat(path: Path, rel: str) -> tuple[str, int, int]:
    """(rel, size, mtime_ns) of ``path``, for the fingerprint."""
    st = path.stat()
    return rel, int(st.st_size), int(st.st_mtime_ns)


def fingerprint(kind: str, root: Path, options: dict[str, Any], scan: Scan) -> str:
    """sha256 of the kind, resolved path, options and every file's (path, size, mtime_ns)."""
    payload = {
        "version": CACHE_VERSION,
        "kind": kind,
        "path": str(root.resolve()),
        "options": {k: str(v) for k, v in sorted(options.items())},
        "files": [list(f) for f in scan.files],
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def to_dataset(dec: Decoded, fp: str) -> Dataset:
    """Turn decoded arrays (in memory or memmapped) into a ``Dataset`` of tensors."""
    return _build(dec, fp, lambda a: torch.from_numpy(np.ascontiguousarray(a)))


def _build(dec: Decoded, fp: str, tensor: Callable[[np.ndarray], torch.Tensor]) -> Dataset:
    sets: dict[str, ImageSet | None] = {}
    for name in PARTS:
        part: Part | None = getattr(dec, name)
        sets[name] = (
            None
            if part is None
            else ImageSet(
                tensor(part.images), tensor(part.labels), list(dec.class_names), part.id_list()
            )
        )
    train = sets["train"]
    assert train is not None
    return Dataset(dec.name, train, sets["test"], sets["unlabeled"], fp)


def load(root: Path, fp: str) -> Decoded | None:
    """The cached entry for ``fp`` as memmapped arrays, or None if absent or corrupt."""
    return _load_entry(root / fp, fp)


def _load_entry(entry: Path, fp: str) -> Decoded | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != fp:
            return None
        parts: dict[str, Part | None] = {}
        for name in PARTS:
            pm = meta["parts"].get(name)
            if pm is None:
                parts[name] = None
                continue
            images = np.load(entry / f"{name}_images.npy", mmap_mode="c")
            labels = np.load(entry / f"{name}_labels.npy", mmap_mode="c")
            if list(images.shape) != pm["shape"] or labels.shape != (pm["shape"][0],):
                return None
            if images.dtype != np.uint8 or labels.dtype != np.int64:
                return None
            ranges = pm.get("id_ranges")
            parts[name] = Part(
                images,
                labels,
                pm.get("ids"),
                [(str(p), int(n)) for p, n in ranges] if ranges is not None else None,
            )
        train = parts["train"]
        if train is None:
            return None
        return Decoded(
            str(meta["name"]),
            [str(c) for c in meta["class_names"]],
            train,
            parts["test"],
            parts["unlabeled"],
            [(str(a), str(b)) for a, b in meta.get("skipped", [])],
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def _write_array(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as .npy in chunks, so a memmap view is never copied whole into memory."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=arr.dtype, shape=arr.shape)
    if arr.shape[0]:
        row = max(1, arr[0].nbytes)
        step = max(1, _CHUNK_BYTES // row)
        for i in range(0, arr.shape[0], step):
            out[i : i + step] = arr[i : i + step]
    out.flush()
    del out


def store(root: Path, fp: str, dec: Decoded) -> Decoded:
    """Write ``dec`` under ``root/fp`` atomically and return the entry reloaded (memmapped).

    If the cache folder cannot be written, warn and return ``dec`` unchanged.
    """
    entry = root / fp
    tmp = root / f".tmp-{fp[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.mkdir(parents=True)
        meta: dict[str, Any] = {
            "version": CACHE_VERSION,
            "fingerprint": fp,
            "name": dec.name,
            "class_names": list(dec.class_names),
            "skipped": [list(s) for s in dec.skipped],
            "parts": {},
        }
        for name in PARTS:
            part: Part | None = getattr(dec, name)
            if part is None:
                continue
            _write_array(tmp / f"{name}_images.npy", np.asarray(part.images, dtype=np.uint8))
            _write_array(tmp / f"{name}_labels.npy", np.asarray(part.labels, dtype=np.int64))
            meta["parts"][name] = {
                "shape": list(part.images.shape),
                "ids": part.ids,
                "id_ranges": part.id_ranges,
            }
        (tmp / "meta.json").write_text(json.dumps(meta))
        if entry.is_symlink() or entry.is_file():  # a corrupt entry: replace it
            entry.unlink()
        elif entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.rename(tmp, entry)
        except OSError:  # another process won the race; use whichever entry is complete
            done = load(root, fp)
            if done is not None:
                return done
            done = _load_entry(tmp, fp)  # stays mapped after tmp is removed below
            if done is not None:
                return done
            raise
    except OSError as e:
        warnings.warn(
            f"could not write the data cache in {root} ({e}); using the data uncached",
            stacklevel=3,
        )
        return dec
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    done = load(root, fp)
    return done if done is not None else dec
