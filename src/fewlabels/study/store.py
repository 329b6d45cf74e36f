"""The results store: one SQLite file (WAL) holding every run's spec, status and results.

Runs are keyed by the hash of their full spec. A worker claims a run inside a
``BEGIN IMMEDIATE`` transaction (``UPDATE ... WHERE status = 'pending'``), so two workers
never get the same run; a claim whose worker process has died, or whose heartbeat has
stopped, goes back to pending. Statuses: pending, running, done, failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fewlabels.errors import ConfigError, FewlabelsError, WriteError

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


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


class Store:
    """A study's store; open one per process (connections are not shared)."""

    def __init__(self, path: str | Path, *, stale_s: float = 120.0) -> None:
        self.path = Path(path)
        self.stale_s = stale_s
        self.host = socket.gethostname()
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

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the database's write lock at once."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None

    # -- study -------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def register(self, plan: Any) -> None:
        """Record a study's cells and runs; runs already known keep their status and results.

        A store holding a different study (another ``name``) is refused. Failed runs go
        back to pending, so a rerun retries them.
        """
        with self.tx() as c:
            other = self.get_meta("study_name")
            if other is not None and other != plan.name:
                raise ConfigError(
                    f"{self.path.parent} holds study {other!r}, not {plan.name!r}; "
                    "use another --out folder"
                )
            self._set_meta("study_name", plan.name)
            self._set_meta("study_source", plan.source)
            self._set_meta("study_text", plan.text)
            self._set_meta("report", json.dumps(plan.spec.report.model_dump()))
            c.execute("UPDATE runs SET wanted = 0")
            now = time.time()
            for i, job in enumerate(plan.jobs.values()):
                c.execute(
                    "INSERT OR IGNORE INTO runs (key, kind, label, spec, deps, ord, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.key,
                        job.kind,
                        job.label,
                        json.dumps(job.spec, sort_keys=True),
                        json.dumps(list(job.deps)),
                        i,
                        now,
                    ),
                )
                c.execute("UPDATE runs SET wanted = 1, ord = ? WHERE key = ?", (i, job.key))
            c.execute("UPDATE runs SET status = 'pending', error = NULL WHERE status = 'failed'")
            # claims left by an earlier attempt of this very process (e.g. stopped by a full
            # disk): no worker of it is running them now
            c.execute(
                "UPDATE runs SET status = 'pending', worker = NULL WHERE status = 'running' "
                "AND host = ? AND pid = ?",
                (self.host, os.getpid()),
            )
            c.execute("DELETE FROM cells")
            for i, cell in enumerate(plan.cells):
                c.execute(
                    "INSERT INTO cells VALUES (?, ?, ?, ?, ?)",
                    (
                        cell.id,
                        i,
                        json.dumps(cell.info()),
                        cell.run_key,
                        json.dumps(cell.job_keys),
                    ),
                )

    # -- work --------------------------------------------------------------------------
    def claim(self, worker: str) -> sqlite3.Row | None:
        """Atomically take the next runnable run, or None (see ``remaining``)."""
        now = time.time()
        with self.tx() as c:
            for r in c.execute(
                "SELECT key, pid, host, heartbeat FROM runs WHERE status = 'running'"
            ).fetchall():
                dead = r["host"] == self.host and not _pid_alive(r["pid"])
                if dead or (r["heartbeat"] or 0) < now - self.stale_s:
                    c.execute(
                        "UPDATE runs SET status = 'pending', worker = NULL WHERE key = ? "
                        "AND status = 'running'",
                        (r["key"],),
                    )
            status = dict(c.execute("SELECT key, status FROM runs").fetchall())
            pending = c.execute(
                "SELECT key, deps FROM runs WHERE status = 'pending' AND wanted = 1 ORDER BY ord"
            ).fetchall()
            for r in pending:
                deps = json.loads(r["deps"])
                failed = [d for d in deps if status.get(d) == "failed"]
                if failed:
                    c.execute(
                        "UPDATE runs SET status = 'failed', error = ?, finished = ? WHERE key = ?",
                        (f"the run it starts from ({failed[0]}) failed", now, r["key"]),
                    )
                    continue
                if all(status.get(d) == "done" for d in deps):
                    cur = c.execute(
                        "UPDATE runs SET status = 'running', worker = ?, pid = ?, host = ?, "
                        "heartbeat = ?, started = ?, attempts = attempts + 1 "
                        "WHERE key = ? AND status = 'pending'",
                        (worker, os.getpid(), self.host, now, now, r["key"]),
                    )
                    if cur.rowcount == 1:
                        return c.execute("SELECT * FROM runs WHERE key = ?", (r["key"],)).fetchone()
        return None

    def heartbeat(self, key: str, worker: str) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE runs SET heartbeat = ? WHERE key = ? AND worker = ? AND status = 'running'",
                (time.time(), key, worker),
            )

    def finish(
        self,
        key: str,
        worker: str,
        *,
        metrics: dict[str, Any] | None = None,
        curve: list[dict[str, Any]] | None = None,
        seconds: float = 0.0,
        error: str | None = None,
    ) -> bool:
        """Record a run's outcome (done, or failed with ``error``); False if not ours."""
        with self.tx() as c:
            cur = c.execute(
                "UPDATE runs SET status = ?, metrics = ?, curve = ?, seconds = ?, error = ?, "
                "finished = ? WHERE key = ? AND worker = ? AND status = 'running'",
                (
                    "failed" if error is not None else "done",
                    json.dumps(metrics or {}, default=float),
                    json.dumps(curve or [], default=float),
                    seconds,
                    error,
                    time.time(),
                    key,
                    worker,
                ),
            )
            return cur.rowcount == 1

    def release(self, key: str, worker: str) -> None:
        """Give a claimed run back (pending), e.g. when the disk is full; errors are ignored."""
        with contextlib.suppress(FewlabelsError, sqlite3.Error), self.tx() as c:
            c.execute(
                "UPDATE runs SET status = 'pending', worker = NULL WHERE key = ? AND worker = ? "
                "AND status = 'running'",
                (key, worker),
            )

    def counts(self) -> dict[str, int]:
        """Wanted runs by status."""
        rows = self.conn.execute(
            "SELECT status, COUNT(*) FROM runs WHERE wanted = 1 GROUP BY status"
        ).fetchall()
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        out.update({r[0]: r[1] for r in rows})
        return out

    # -- reading -----------------------------------------------------------------------
    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run, by key, with JSON fields decoded."""
        out = {}
        for r in self.conn.execute("SELECT * FROM runs ORDER BY ord").fetchall():
            d = dict(r)
            for k in ("spec", "deps", "metrics", "curve"):
                d[k] = json.loads(d[k]) if d[k] else ({} if k != "curve" else [])
            out[d["key"]] = d
        return out

    def cells(self) -> list[dict[str, Any]]:
        """The current study's cells in order: info + run_key + job_keys."""
        out = []
        for r in self.conn.execute("SELECT * FROM cells ORDER BY ord").fetchall():
            d = json.loads(r["info"])
            d["run_key"], d["job_keys"] = r["run_key"], json.loads(r["job_keys"])
            out.append(d)
        return out
