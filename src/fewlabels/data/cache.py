"""On-disk cache of decoded sources: ``.npy`` arrays + ``meta.json`` per fingerprint.

A source is scanned (its files listed with size and mtime), fingerprinted, and decoded only
when no complete cache entry with that fingerprint exists. Entries are written into a
temporary folder and renamed into place, so a crash never leaves a half-written entry;
a corrupt entry is rebuilt without a word. Arrays are loaded with ``mmap_mode="c"``:
pages come from the OS page cache on demand, and the tensors are private and writable.

Entries are written in one streaming pass with plain file writes (``RowWriter``), never
through a writable memory map, so building the cache of a source larger than memory keeps
the process's resident memory to a few batches of images (see ``build``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import secrets
import shutil
import stat
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewlabels.core.errors import DataError
from fewlabels.data import mapped
from fewlabels.data.imagefile import not_regular
from fewlabels.data.imageset import Dataset, ImageSet

CACHE_VERSION = 2  # 2: the change time joins the fingerprint; 16-bit, EXIF, TIFF
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
    """A source's files (relative path, size, mtime_ns, ctime_ns) and whatever its decoder
    needs."""

    root: Path
    files: list[tuple[str, int, int, int]]
    plan: Any = None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$FEWLABELS_CACHE``, else ``~/.cache/fewlabels``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("FEWLABELS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fewlabels"


def file_stat(path: Path, rel: str) -> tuple[str, int, int, int]:
    """(rel, size, mtime_ns, ctime_ns) of ``path``, for the fingerprint.

    The change time moves with the content and with the permissions, so a file made
    readable again (``chmod``, or repaired and given its old mtime back) is decoded again
    rather than staying cached as unreadable. A path that is no regular file (a FIFO,
    which would block the reader forever) is a one-line ``DataError``.
    """
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        why = not_regular(path) or "not a regular file"
        raise DataError(f"{path} is {why}, not a data file; give a regular file")
    return rel, int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns)


def fingerprint(kind: str, root: Path, options: dict[str, Any], scan: Scan) -> str:
    """sha256 of the kind, resolved path, options and every file's (path, size, mtime_ns,
    ctime_ns)."""
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

    def tensor(a: np.ndarray) -> torch.Tensor:
        c = np.ascontiguousarray(a)
        t = torch.from_numpy(c)
        mapped.register(t, c)  # cache files: subsets can be read from disk on demand
        return t

    return _build(dec, fp, tensor)


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


_HEADER_BYTES = 128  # a fixed-size .npy v1.0 header, so the row count can be set at the end


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False})
    text = text[:-1] + f", 'shape': {tuple(int(s) for s in shape)!r}, }}"
    room = _HEADER_BYTES - 10  # magic, version and length come first; a newline ends it
    if len(text) >= room:
        raise ValueError(f"shape {shape} does not fit a {_HEADER_BYTES}-byte .npy header")
    return (
        b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + (text.ljust(room - 1) + "\n").encode()
    )


class RowWriter:
    """Appends rows to a ``.npy`` file with plain writes; ``close`` fixes the row count.

    The file is never memory-mapped while it is written, so its pages sit in the OS page
    cache, not in this process's resident memory.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: Any = np.uint8) -> None:
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.rows = 0
        self._f = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._f.write(_npy_header((0, *self.row_shape), self.dtype))

    def append(self, rows: np.ndarray) -> None:
        """Write rows of shape (k, *row_shape)."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} for a file of {self.row_shape}")
        self._f.write(memoryview(rows.reshape(-1)).cast("B"))
        self.rows += rows.shape[0]

    def widen(self, channels: int) -> None:
        """Turn the 1-channel (N, 1, H, W) rows written so far into ``channels`` copies."""
        if self.row_shape[0] != 1:
            raise ValueError(f"only 1-channel rows can be widened, not {self.row_shape}")
        self._f.flush()
        old, new_shape = self.path.with_suffix(".narrow"), (channels, *self.row_shape[1:])
        self._f.close()
        os.replace(self.path, old)
        n, self.rows = self.rows, 0
        self.row_shape = new_shape
        self._f = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._f.write(_npy_header((0, *new_shape), self.dtype))
        row = int(np.prod(new_shape[1:]))
        step = max(1, _CHUNK_BYTES // max(1, row * channels))
        with open(old, "rb") as f:
            for start in range(0, n, step):
                k = min(step, n - start)
                f.seek(_HEADER_BYTES + start * row)
                x = np.fromfile(f, np.uint8, k * row).reshape(k, 1, *new_shape[1:])
                self.append(np.broadcast_to(x, (k, *new_shape)))
        old.unlink()

    def close(self) -> None:
        """Write the final shape into the header and flush the file."""
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(_npy_header((self.rows, *self.row_shape), self.dtype))
        self._f.close()


def _drop_pages(arr: np.ndarray) -> None:
    """Unmap the pages of the memory map behind ``arr`` (if any) that reading it touched."""
    base: Any = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    m = getattr(base, "_mmap", None)
    if isinstance(m, mmap.mmap) and hasattr(m, "madvise"):
        with contextlib.suppress(OSError, ValueError):
            m.madvise(mmap.MADV_DONTNEED)


def _write_array(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as .npy in chunks with plain writes; a memmap source is read chunk by
    chunk and its pages are dropped as it goes, so neither side grows resident memory."""
    w = RowWriter(path, arr.shape[1:], arr.dtype)
    try:
        if arr.shape[0]:
            row = max(1, arr[0].nbytes)
            step = max(1, _CHUNK_BYTES // row)
            for i in range(0, arr.shape[0], step):
                w.append(arr[i : i + step])
                _drop_pages(arr)
    finally:
        w.close()


def store(root: Path, fp: str, dec: Decoded) -> Decoded:
    """Write ``dec`` under ``root/fp`` atomically and return the entry reloaded (memmapped).

    If the cache folder cannot be written, warn and return ``dec`` unchanged.
    """
    return build(root, fp, lambda _folder: dec)


def build(root: Path, fp: str, decode: Callable[[Path | None], Decoded]) -> Decoded:
    """Decode a source into a new cache entry ``root/fp`` and return it reloaded (memmapped).

    ``decode(folder)`` may stream its arrays straight into ``folder/{part}_images.npy`` and
    ``{part}_labels.npy`` (with ``RowWriter``); arrays it returns in memory are written
    here. The entry is assembled in a temporary folder and renamed into place. If the cache
    cannot be written, warn and return ``decode(None)``: the data, uncached, in memory.
    """
    entry = root / fp
    tmp = root / f".tmp-{fp[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
    dec: Decoded | None = None
    _remove_abandoned(root)
    try:
        tmp.mkdir(parents=True)
        dec = decode(tmp)
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
            for what, arr, dtype in (
                ("images", part.images, np.uint8),
                ("labels", part.labels, np.int64),
            ):
                path = tmp / f"{name}_{what}.npy"
                if not (isinstance(arr, np.memmap) and _same(arr, path)):
                    _write_array(path, np.asarray(arr, dtype=dtype))
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
        if dec is None or _inside(dec, tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            dec = decode(None)
        return dec
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    done = load(root, fp)
    return done if done is not None else dec


def _remove_abandoned(root: Path, idle_s: float = 600.0) -> None:
    """Remove temporary entries (``.tmp-FP-PID-X``) of builds whose process is gone here
    and that nothing has written to for ``idle_s`` (a cache folder may be shared by hosts)."""
    try:
        tmps = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    except OSError:
        return
    for p in tmps:
        try:
            pid = int(p.name.split("-")[2])
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                newest = max([p.stat().st_mtime] + [f.stat().st_mtime for f in p.iterdir()])
            except OSError:
                continue
            if time.time() - newest > idle_s:
                shutil.rmtree(p, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue


def _inside(dec: Decoded, folder: Path) -> bool:
    """Whether any of ``dec``'s arrays are memory maps of files in ``folder``."""
    for name in PARTS:
        part: Part | None = getattr(dec, name)
        for arr in (part.images, part.labels) if part is not None else ():
            if isinstance(arr, np.memmap) and _same(arr, folder / Path(str(arr.filename)).name):
                return True
    return False


def _same(arr: np.memmap, path: Path) -> bool:
    return arr.filename is not None and Path(str(arr.filename)).resolve() == path.resolve()
