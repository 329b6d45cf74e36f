"""The results store in one SQLite file (WAL): the default, for workers on one machine.

The store's contract (register, claim, heartbeat, finish, read) is ``sqlstore.SqlStore``;
this is its SQLite back end. A claim runs inside a ``BEGIN IMMEDIATE`` transaction, which
takes the database's write lock at once, so claims happen one at a time.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
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
            self.conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None
        try:
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA busy_timeout = 60000")
            self.conn.execute("PRAGMA journal_mode = WAL")
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
