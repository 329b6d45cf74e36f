"""Atomic file writes: a temp file beside the target, fsync, rename, fsync of the folder.

A reader (or the next run after a crash) sees either the old file or the new one, never a
mix. A failed write (disk full, read-only folder, ...) removes its temp file and raises a
one-line ``WriteError`` naming the file; the old file is left as it was. Temp files left
by a process that was killed mid-write (``.NAME.tmpPID``) are removed by the next write of
the same file once that process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from pathlib import Path
from typing import Any

from fewlabels.core.errors import WriteError

_CHUNK = 1 << 20


def write_error(path: str | Path, e: OSError) -> WriteError:
    """The one-line error for a failed write of ``path``."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "disk full"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "not allowed"
    else:
        why = "write failed"
    reason = e.strerror or type(e).__name__
    err = WriteError(f"could not write {path}: {why} ({reason}); the previous version is kept")
    err.errno = e.errno
    return err


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _clean_stale(path: Path) -> None:
    """Remove ``.NAME.tmpPID`` files beside ``path`` whose writer process has died."""
    prefix = f".{path.name}.tmp"
    try:
        with os.scandir(path.parent) as it:
            names = [e.name for e in it if e.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    _clean_stale(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view[:_CHUNK])
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """``atomic_write_bytes`` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Render a matplotlib figure to memory, then write it atomically (format from suffix)."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())
    return path
