"""Images that stay on disk: rows of the decode cache's ``.npy`` files, read on demand.

``MappedRows`` is a lazy selection of rows from one or more uint8 ``.npy`` files. Taking
rows (``take``, ``[idx]``, ``[a:b]``) reads just those rows with ``os.preadv`` into a fresh
tensor, in file order (sorted, runs of consecutive rows in one read), so a training step
touches only its batch and nothing is mapped into the process: resident memory stays
flat however large the data. Everything else a tensor offers works too, by reading every
row first (``to``, ``numpy``, ``float``, ``torch.cat`` ...), which is what the in-memory
path wants anyway.

Subsets of cached (memory-mapped) images become ``MappedRows`` instead of copies once
they reach ``lazy_min_bytes`` (``ImageSet.subset`` and ``ImageSet.concat`` ask
``lazy_rows``), so splitting 100,000 images costs index arrays, not gigabytes.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# Subsets at least this large (bytes) of mapped images stay on disk; smaller ones are copied.
lazy_min_bytes = 64 << 20

_FILES: dict[int, tuple[weakref.ref, MappedRows]] = {}


def register(tensor: torch.Tensor, array: np.ndarray) -> None:
    """Remember that ``tensor`` (made by ``torch.from_numpy``) is a C-contiguous ``np.memmap``."""
    mm = array
    while mm is not None and not isinstance(mm, np.memmap):
        mm = mm.base  # type: ignore[assignment]
    if mm is None or not array.flags.c_contiguous or array.ndim != 4 or mm.filename is None:
        return
    if array.__array_interface__["data"][0] != mm.__array_interface__["data"][0]:
        return  # a view that starts inside the file: not worth the bookkeeping
    rows = MappedRows([(str(mm.filename), int(mm.offset), int(array.shape[0]))], array.shape[1:])
    key = id(tensor)
    _FILES[key] = (weakref.ref(tensor, lambda _: _FILES.pop(key, None)), rows)


def as_mapped(images: Any) -> MappedRows | None:
    """``images`` as ``MappedRows`` when they live in a cache file, else None."""
    if isinstance(images, MappedRows):
        return images
    hit = _FILES.get(id(images))
    if hit is not None and hit[0]() is images:
        return hit[1]
    return None


def lazy_rows(images: Any, index: torch.Tensor) -> MappedRows | None:
    """The rows ``index`` of mapped ``images`` without reading them, if the subset is large."""
    m = as_mapped(images)
    if m is None or len(index) * m.row_bytes < lazy_min_bytes:
        return None
    return m.subset(index)


def lazy_concat(parts: Sequence[Any]) -> MappedRows | None:
    """Mapped ``parts`` stacked without reading them, if all are mapped and large together."""
    mapped = [as_mapped(p) for p in parts]
    if not mapped or any(m is None for m in mapped):
        return None
    ms: list[MappedRows] = mapped  # type: ignore[assignment]
    if sum(len(m) for m in ms) * ms[0].row_bytes < lazy_min_bytes:
        return None
    return MappedRows.concat(ms)


class MappedRows:
    """A uint8 (N, C, H, W) image array whose rows are read from ``.npy`` files on demand.

    ``files`` lists (path, data offset, rows); ``rows`` selects rows of their concatenation
    (all of them when None).
    """

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(
        self,
        files: list[tuple[str, int, int]],
        row_shape: Sequence[int],
        rows: np.ndarray | None = None,
    ) -> None:
        self.files = list(files)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.row_bytes = int(np.prod(self.row_shape))
        self._starts = np.cumsum([0] + [n for _, _, n in self.files])
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    # -- shape ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1]) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.row_shape))

    def dim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def ndim(self) -> int:
        return self.dim()

    def numel(self) -> int:
        return len(self) * self.row_bytes

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    @property
    def nbytes(self) -> int:
        return self.numel()

    def __repr__(self) -> str:
        return f"MappedRows(shape={tuple(self.shape)}, files={[f for f, _, _ in self.files]})"

    # -- selecting without reading ----------------------------------------------------
    def _physical(self, index: Any) -> np.ndarray:
        idx = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        return idx if self.rows is None else self.rows[idx]

    def subset(self, index: Any) -> MappedRows:
        """The rows ``index`` (in that order), still on disk."""
        return MappedRows(self.files, self.row_shape, self._physical(index))

    @staticmethod
    def concat(parts: Sequence[MappedRows]) -> MappedRows:
        """Stack row selections of the same row shape, still on disk."""
        files: list[tuple[str, int, int]] = []
        rows = []
        for p in parts:
            if p.row_shape != parts[0].row_shape:
                raise ValueError(f"row shapes differ: {parts[0].row_shape} vs {p.row_shape}")
            base = sum(n for _, _, n in files)
            own = np.arange(len(p)) if p.rows is None else p.rows
            rows.append(own + base)
            files.extend(p.files)
        return MappedRows(files, parts[0].row_shape, np.concatenate(rows) if rows else None)

    # -- reading ----------------------------------------------------------------------
    def _fd(self, path: str) -> int:
        if self._pid != os.getpid():  # forked: the parent's descriptors are not ours to share
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            self._fds[path] = fd
        return fd

    def take(self, index: Any) -> torch.Tensor:
        """Read rows ``index`` into a new uint8 tensor, in file order (sorted, coalesced)."""
        phys = self._physical(index)
        out = np.empty((len(phys), *self.row_shape), np.uint8)
        if not len(phys):
            return torch.from_numpy(out)
        order = np.argsort(phys, kind="stable")
        sorted_rows = phys[order]
        buf = np.empty_like(out)
        flat = buf.reshape(len(phys), -1)
        file_of = np.searchsorted(self._starts, sorted_rows, side="right") - 1
        # runs of consecutive rows in one file become one read
        breaks = np.flatnonzero((np.diff(sorted_rows) != 1) | (np.diff(file_of) != 0)) + 1
        for a, b in zip(
            np.concatenate([[0], breaks]), np.concatenate([breaks, [len(phys)]]), strict=True
        ):
            f = int(file_of[a])
            path, offset, _ = self.files[f]
            first = int(sorted_rows[a] - self._starts[f])
            self._read(path, offset + first * self.row_bytes, memoryview(flat[a:b]).cast("B"))
        out[order] = buf
        return torch.from_numpy(out)

    def _read(self, path: str, offset: int, view: memoryview) -> None:
        fd = self._fd(path)
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{path} is shorter than its header says (cache file truncated)")
            done += got

    def materialize(self, chunk_rows: int = 4096) -> torch.Tensor:
        """Every row, read into one tensor (in chunks, in file order)."""
        n = len(self)
        out = torch.empty((n, *self.row_shape), dtype=torch.uint8)
        for a in range(0, n, chunk_rows):
            out[a : a + chunk_rows] = self.take(np.arange(a, min(n, a + chunk_rows)))
        return out

    def __getitem__(self, key: Any) -> torch.Tensor:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            rows = self.take(np.arange(len(self))[key])
        elif isinstance(key, (int, np.integer)) or (
            isinstance(key, torch.Tensor) and key.ndim == 0 and not key.is_floating_point()
        ):
            rows = self.take([int(key)])[0]
        else:
            rows = self.take(key)
        return rows[rest] if rest else rows

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.materialize().to(*args, **kwargs)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.materialize().numpy()
        return a if dtype is None else a.astype(dtype)

    def __getattr__(self, name: str) -> Any:
        # any other tensor method: read every row first (correct, and as costly as it sounds)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        def real(x: Any) -> Any:
            if isinstance(x, MappedRows):
                return x.materialize()
            if isinstance(x, (list, tuple)):
                return type(x)(real(v) for v in x)
            return x

        return func(*real(args), **{k: real(v) for k, v in (kwargs or {}).items()})

    def __del__(self) -> None:
        try:
            if self._pid == os.getpid():
                for fd in self._fds.values():
                    os.close(fd)
        except Exception:  # interpreter shutdown, or a descriptor already closed
            pass


def take_sorted(images: Any, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of host ``images``, read in sorted order (for locality) on the CPU."""
    m = as_mapped(images)
    if m is not None:
        return m.take(index)
    idx = index.cpu()
    order = torch.argsort(idx)
    out = torch.empty((len(idx), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[idx[order]]
    return out
