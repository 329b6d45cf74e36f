"""The results store in one SQLite file (WAL): the default, for workers on one machine.

The store's contract (register, claim, heartbeat, finish, read) is ``sqlstore.SqlStore``;
this is its SQLite back end. A claim runs inside a ``BEGIN IMMEDIATE`` transaction, which
takes the database's write lock at once, so claims happen one at a time.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fewlabels.core.errors import ConfigError, FewlabelsError, WriteError
from fewlabels.study.sqlstore import SqlStore, _pid_alive, process_host

__all__ = ["SCHEMA_VERSION", "STORE_NAME", "Store", "_pid_alive", "store_error"]

SCHEMA_VERSION = 1
STORE_NAME = "study.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    spec TEXT NOT NULL,
    deps TEXT NOT NULL,
    ord INTEGER NOT NULL,
    wanted INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'pending',
    worker TEXT, pid INTEGER, host TEXT, heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL, started REAL, finished REAL,
    seconds REAL, metrics TEXT, curve TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    id TEXT PRIMARY KEY,
    ord INTEGER NOT NULL,
    info TEXT NOT NULL,
    run_key TEXT NOT NULL,
    job_keys TEXT NOT NULL
);
"""


_BUSY_S = 60.0  # how long a store operation waits for another process's lock


def _is_busy(e: BaseException) -> bool:
    """Whether ``e`` is SQLite's "database is locked" (or busy), raw or as ``store_error``
    made it (``study store PATH: MESSAGE``, where the path must not count)."""
    if isinstance(e, sqlite3.Error):
        text = str(e)
    elif type(e) is FewlabelsError:
        text = str(e).rsplit(": ", 1)[-1]
    else:
        return False
    return "is locked" in text or "busy" in text


def _retry_busy(
    op: Callable[[], object], errors: tuple[type[BaseException], ...] | type = sqlite3.Error
) -> None:
    """Run ``op``, again after a short, growing, jittered pause while SQLite answers busy.

    Switching a new database to WAL needs an exclusive lock, and SQLite reports busy at
    once (without waiting out the busy timeout) when another connection is opening the
    same new file; so does a schema read racing that switch. Gives up after ``_BUSY_S``.
    """
    deadline = time.monotonic() + _BUSY_S
    pause = 0.002
    while True:
        try:
            op()
            return
        except errors as e:
            if not _is_busy(e) or time.monotonic() > deadline:
                raise
        time.sleep(pause * (0.5 + random.random()))
        pause = min(0.25, pause * 2)


def store_error(path: Path, e: sqlite3.Error) -> FewlabelsError:
    """A one-line error for a failed store operation (disk full, not a database, ...)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    if "full" in msg:
        err = WriteError(
            f"could not write the study store {path}: disk full ({msg}); "
            "the last committed state is kept"
        )
        err.errno = 28
        return err
    if "not a database" in msg or "malformed" in msg:
        return ConfigError(f"{path} is not a readable study store ({msg})")
    return FewlabelsError(f"study store {path}: {msg}")


class Store(SqlStore):
    """A study's store in an SQLite file; open one per process (connections are not
    shared)."""

    _errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, stale_s: float = 120.0) -> None:
        self.path = Path(path)
        self.stale_s = stale_s
        self.host = process_host()
        try:
            self.conn = sqlite3.connect(self.path, timeout=_BUSY_S, isolation_level=None)
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_S * 1000)}")  # before all else
            self.conn.row_factory = sqlite3.Row
            _retry_busy(lambda: self.conn.execute("PRAGMA journal_mode = WAL").fetchall())
            self.conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as e:
            self.conn.close()
            raise store_error(self.path, e) from None
        try:
            self._init_schema()
        except BaseException:
            self.conn.close()
            raise

    def _init_schema(self) -> None:
        _retry_busy(self._create_schema, FewlabelsError)

    def _create_schema(self) -> None:
        with self.tx():
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            v = self.get_meta("schema_version")
            if v is None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self._set_meta("schema_version", str(SCHEMA_VERSION))
            elif not v.isdigit() or int(v) > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path} was written by a newer fewlabels (store schema {v}, this "
                    f"version reads up to {SCHEMA_VERSION}); upgrade fewlabels to read it"
                )

    def _error(self, e: BaseException) -> FewlabelsError:
        assert isinstance(e, sqlite3.Error)
        return store_error(self.path, e)

    def _where(self) -> str:
        return str(self.path.parent)

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction that takes the database's write lock at once."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn.cursor()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None
