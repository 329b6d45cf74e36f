"""One writer per run folder, and the checks an output path passes before anything is written.

``RunLock`` holds an advisory lock (``fcntl.flock``) on ``OUT/.lock`` while a command writes
into ``OUT``; the operating system drops it when the process ends, however it ends. A
second writer gets one line: ``OUT is in use by another fewlabels process (pid N)``. The lock
file holds the pid and the command of its holder, so a later command can tell whose run
the folder holds (``folder_owner``) and refuse to overwrite another command's files.

``check_out_folder`` and ``check_out_file`` refuse, before any work, an empty path, a path
that is (or runs through) an existing file, and a folder on a read-only file system or
without write permission.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from fewlabels.core.errors import ConfigError, FewlabelsError

try:  # POSIX; elsewhere the lock is a no-op (the folder checks still hold)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "RunInUseError",
    "RunLock",
    "check_not_in_use",
    "check_out_file",
    "check_out_folder",
    "check_owner",
    "folder_owner",
]

LOCK_NAME = ".lock"
# commands that write the same kind of run folder (and may resume each other's runs)
_SAME_KIND = {"pretrain": "train"}
# folder -> [fd, count] of the locks this process holds (a lock is re-entrant per process)
_HELD: dict[str, list[int]] = {}


class RunInUseError(FewlabelsError):
    """Another process is writing into the run folder."""


def _nearest_existing(p: Path) -> Path:
    q = p
    while not os.path.lexists(q) and q != q.parent:
        q = q.parent
    return q


def _check_writable(p: Path, setting: str) -> None:
    """Refuse ``p`` when the nearest existing folder on its way is a file, or cannot be
    written (read-only file system, no permission)."""
    q = _nearest_existing(p)
    if not q.is_dir():
        raise ConfigError(f"{setting} {p} cannot be created: {q} is a file, not a folder")
    try:
        read_only = bool(os.statvfs(q).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise ConfigError(f"{setting} {p} cannot be written: {q} is on a read-only file system")
    if not os.access(q, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting} {p} cannot be written: no permission to write in {q}")


def check_out_folder(out: str | Path | None, *, setting: str = "out") -> Path:
    """``out`` as a Path, refused (one line naming ``setting``) when it is empty, an
    existing file, under a file, or not writable. Writes nothing."""
    if out is None or not str(out).strip():
        raise ConfigError(f"{setting} is empty; give a folder for the results")
    p = Path(out)
    if os.path.lexists(p) and not p.is_dir():
        raise ConfigError(f"{setting} {p} is a file, not a folder; give a folder for the results")
    _check_writable(p, setting)
    return p


def check_out_file(path: str | Path, *, setting: str = "out") -> Path:
    """``path`` of a file to write, refused when it is empty, an existing folder, under a
    file, or in a folder that cannot be written. Writes nothing."""
    if not str(path).strip():
        raise ConfigError(f"{setting} is empty; give a file name")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{setting} {p} is a folder; give a file name")
    q = _nearest_existing(p.parent)
    if not q.is_dir():
        raise ConfigError(f"{setting} {p} cannot be created: {q} is a file, not a folder")
    _check_writable(p.parent, setting)
    return p


def _lock_record(out: Path) -> dict[str, Any]:
    try:
        rec = json.loads((out / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def folder_owner(out: str | Path) -> str | None:
    """The command whose results ``out`` holds (``train``, ``probe``, ``evaluate``,
    ``study``), or None for a missing or empty folder, or one fewlabels did not write."""
    p = Path(out)
    if not p.is_dir():
        return None
    command = _lock_record(p).get("command")
    if isinstance(command, str):
        return _SAME_KIND.get(command, command)
    if (p / "study.sqlite").exists() or (p / "study.yaml").exists():
        return "study"
    try:
        cfg = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        cfg = None
    if isinstance(cfg, dict):
        return "probe" if "protocol" in cfg else "train"
    try:
        metrics = json.loads((p / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = None
    if isinstance(metrics, dict) and "protocol" in metrics:
        return "probe"
    if (p / "model.pt").exists() or (p / "checkpoint.pt").exists():
        return "train"
    if metrics is not None:
        return "evaluate"
    return None


def check_owner(out: str | Path, command: str) -> None:
    """Refuse ``out`` when it holds another command's run: ``command`` would overwrite its
    files (``evaluate`` into a training run replaced its ``metrics.json``)."""
    owner = folder_owner(out)
    if owner is not None and owner != _SAME_KIND.get(command, command):
        raise ConfigError(
            f"{out} holds a {owner} run; {command} would overwrite its files: "
            f"give {command} another out folder"
        )


def _holder_pid(out: Path) -> str:
    pid = _lock_record(out).get("pid")
    return str(pid) if isinstance(pid, int) else "unknown"


def _in_use(out: Path) -> RunInUseError:
    return RunInUseError(
        f"{out} is in use by another fewlabels process (pid {_holder_pid(out)}); "
        "wait for it to finish, or use another out folder"
    )


def check_not_in_use(out: str | Path | None) -> None:
    """Refuse ``out`` when another process holds its lock (writes nothing)."""
    if out is None or fcntl is None:
        return
    p = Path(out)
    if str(p.resolve()) in _HELD or not (p / LOCK_NAME).is_file():
        return
    try:
        fd = os.open(p / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(p) from None
    except OSError:
        return
    finally:
        os.close(fd)


class RunLock:
    """The lock on one run folder: ``acquire`` creates the folder and takes the lock (or
    refuses), ``release`` lets it go; re-entrant within a process."""

    def __init__(self, out: str | Path | None, command: str) -> None:
        self.out = Path(out) if out is not None else None
        self.command = command
        self.key: str | None = None

    def acquire(self) -> None:
        """Create the folder and take its lock; ``RunInUseError`` when another holds it."""
        if self.out is None or self.key is not None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        key = str(self.out.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            self.key = key
            return
        if fcntl is None:  # pragma: no cover - no advisory locks here
            return
        fd = os.open(self.out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(self.out) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode())
        _HELD[key] = [fd, 1]
        self.key = key

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race with a waiting writer)."""
        if self.key is None:
            return
        key, self.key = self.key, None
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            with contextlib.suppress(OSError):
                os.close(held[0])  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
