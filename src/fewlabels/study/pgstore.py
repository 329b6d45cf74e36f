"""The results store on a PostgreSQL server, for study workers on several machines.

The same tables and the same contract as the SQLite store (``study.store.Store``): runs
keyed by the hash of their spec, statuses pending / running / done / failed, one study per
database (or per schema: put ``options=-csearch_path%3DNAME`` in the URL). Differences:

- A claim runs in a transaction that first takes ``LOCK TABLE ... IN SHARE ROW EXCLUSIVE
  MODE``, a lock that excludes itself: claims happen one at a time, as under SQLite's
  ``BEGIN IMMEDIATE``, while readers (counts, reports) go on.
- Heartbeats and the stale-claim test use the server's clock, so workers whose clocks
  disagree still agree on which claims are stale. A claim by a process on the claiming
  machine that no longer exists is taken back at once, as with SQLite.
- Tables are prefixed ``fewlabels_`` so that a shared database shows whose they are.

Needs psycopg 3 (``pip install 'fewlabels[postgres]'``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fewlabels.errors import ConfigError, FewlabelsError, WriteError
from fewlabels.study.store import SCHEMA_VERSION, _pid_alive

URL_SCHEMES = ("postgresql://", "postgres://")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fewlabels_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS fewlabels_runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    spec TEXT NOT NULL,
    deps TEXT NOT NULL,
    ord INTEGER NOT NULL,
    wanted INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'pending',
    worker TEXT, pid INTEGER, host TEXT, heartbeat DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION, started DOUBLE PRECISION, finished DOUBLE PRECISION,
    seconds DOUBLE PRECISION, metrics TEXT, curve TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS fewlabels_cells (
    id TEXT PRIMARY KEY,
    ord INTEGER NOT NULL,
    info TEXT NOT NULL,
    run_key TEXT NOT NULL,
    job_keys TEXT NOT NULL
)
"""
_NOW = "extract(epoch from clock_timestamp())::double precision"


def is_url(location: str | os.PathLike | None) -> bool:
    """Whether ``location`` names a PostgreSQL server rather than a file."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (safe to print and to save in the study folder)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + "@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + netloc[-1]))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "a postgresql:// store needs psycopg 3: pip install 'fewlabels[postgres]'"
        ) from None
    return psycopg


class PgStore:
    """A study's store in a PostgreSQL database; open one per process (and per thread)."""

    def __init__(self, url: str, *, stale_s: float = 120.0) -> None:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        self.url = url
        self.path = redact(url)  # what messages name
        self.stale_s = stale_s
        self.host = socket.gethostname()
        self._errors = psycopg.Error
        try:
            self.conn = psycopg.connect(
                url, autocommit=True, row_factory=dict_row, connect_timeout=20
            )
        except psycopg.Error as e:
            raise self._error(e) from None
        with self.tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(hashtext('fewlabels schema'))")
            c.execute(_SCHEMA)
            v = self.get_meta("schema_version")
            if v is None:
                self._set_meta("schema_version", str(SCHEMA_VERSION))
            elif int(v) > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path} was written by a newer fewlabels (store schema {v}, this "
                    f"version reads up to {SCHEMA_VERSION}); upgrade fewlabels to read it"
                )

    def _error(self, e: Exception) -> FewlabelsError:
        msg = " ".join(str(e).split()) or type(e).__name__
        if getattr(e, "sqlstate", None) in ("53100", "53200"):  # disk full, out of memory
            err = WriteError(
                f"could not write the study store {self.path}: {msg}; "
                "the last committed state is kept"
            )
            err.errno = 28
            return err
        return FewlabelsError(f"study store {self.path}: {msg}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[Any]:
        """One transaction; its cursor is yielded. Database errors become one-line errors."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield cur
        except self._errors as e:
            raise self._error(e) from None

    # -- study -------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute(
                "SELECT value FROM fewlabels_meta WHERE key = %s", (key,)
            ).fetchone()
        except self._errors as e:
            raise self._error(e) from None
        return None if row is None else row["value"]

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO fewlabels_meta VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )

    def register(self, plan: Any) -> None:
        """Record a study's cells and runs; runs already known keep their status and results.

        A database holding a different study (another ``name``) is refused. Failed runs go
        back to pending, so a rerun retries them.
        """
        with self.tx() as c:
            c.execute("LOCK TABLE fewlabels_runs IN SHARE ROW EXCLUSIVE MODE")
            other = self.get_meta("study_name")
            if other is not None and other != plan.name:
                raise ConfigError(
                    f"{self.path} holds study {other!r}, not {plan.name!r}; "
                    "use another database (or schema)"
                )
            self._set_meta("study_name", plan.name)
            self._set_meta("study_source", plan.source)
            self._set_meta("study_text", plan.text)
            self._set_meta("report", json.dumps(plan.spec.report.model_dump()))
            c.execute("UPDATE fewlabels_runs SET wanted = 0")
            now = time.time()
            for i, job in enumerate(plan.jobs.values()):
                c.execute(
                    "INSERT INTO fewlabels_runs (key, kind, label, spec, deps, ord, created) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
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
                c.execute(
                    "UPDATE fewlabels_runs SET wanted = 1, ord = %s WHERE key = %s", (i, job.key)
                )
            c.execute(
                "UPDATE fewlabels_runs SET status = 'pending', error = NULL WHERE status = 'failed'"
            )
            c.execute("DELETE FROM fewlabels_cells")
            for i, cell in enumerate(plan.cells):
                c.execute(
                    "INSERT INTO fewlabels_cells VALUES (%s, %s, %s, %s, %s)",
                    (cell.id, i, json.dumps(cell.info()), cell.run_key, json.dumps(cell.job_keys)),
                )

    # -- work --------------------------------------------------------------------------
    def claim(self, worker: str) -> dict[str, Any] | None:
        """Atomically take the next runnable run, or None (see ``remaining``)."""
        with self.tx() as c:
            c.execute("LOCK TABLE fewlabels_runs IN SHARE ROW EXCLUSIVE MODE")
            now = c.execute(f"SELECT {_NOW} AS now").fetchone()["now"]
            for r in c.execute(
                "SELECT key, pid, host, heartbeat FROM fewlabels_runs WHERE status = 'running'"
            ).fetchall():
                dead = r["host"] == self.host and not _pid_alive(r["pid"])
                if dead or (r["heartbeat"] or 0) < now - self.stale_s:
                    c.execute(
                        "UPDATE fewlabels_runs SET status = 'pending', worker = NULL "
                        "WHERE key = %s AND status = 'running'",
                        (r["key"],),
                    )
            status = {
                r["key"]: r["status"]
                for r in c.execute("SELECT key, status FROM fewlabels_runs").fetchall()
            }
            pending = c.execute(
                "SELECT key, deps FROM fewlabels_runs WHERE status = 'pending' AND wanted = 1 "
                "ORDER BY ord"
            ).fetchall()
            for r in pending:
                deps = json.loads(r["deps"])
                failed = [d for d in deps if status.get(d) == "failed"]
                if failed:
                    c.execute(
                        "UPDATE fewlabels_runs SET status = 'failed', error = %s, finished = %s "
                        "WHERE key = %s",
                        (f"the run it starts from ({failed[0]}) failed", now, r["key"]),
                    )
                    continue
                if all(status.get(d) == "done" for d in deps):
                    c.execute(
                        "UPDATE fewlabels_runs SET status = 'running', worker = %s, pid = %s, "
                        "host = %s, heartbeat = %s, started = %s, attempts = attempts + 1 "
                        "WHERE key = %s AND status = 'pending'",
                        (worker, os.getpid(), self.host, now, now, r["key"]),
                    )
                    if c.rowcount == 1:
                        return c.execute(
                            "SELECT * FROM fewlabels_runs WHERE key = %s", (r["key"],)
                        ).fetchone()
        return None

    def heartbeat(self, key: str, worker: str) -> None:
        with self.tx() as c:
            c.execute(
                f"UPDATE fewlabels_runs SET heartbeat = {_NOW} "
                "WHERE key = %s AND worker = %s AND status = 'running'",
                (key, worker),
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
            c.execute(
                "UPDATE fewlabels_runs SET status = %s, metrics = %s, curve = %s, seconds = %s, "
                f"error = %s, finished = {_NOW} "
                "WHERE key = %s AND worker = %s AND status = 'running'",
                (
                    "failed" if error is not None else "done",
                    json.dumps(metrics or {}, default=float),
                    json.dumps(curve or [], default=float),
                    seconds,
                    error,
                    key,
                    worker,
                ),
            )
            return c.rowcount == 1

    def release(self, key: str, worker: str) -> None:
        """Give a claimed run back (pending), e.g. when the disk is full; errors are ignored."""
        with contextlib.suppress(FewlabelsError), self.tx() as c:
            c.execute(
                "UPDATE fewlabels_runs SET status = 'pending', worker = NULL "
                "WHERE key = %s AND worker = %s AND status = 'running'",
                (key, worker),
            )

    def counts(self) -> dict[str, int]:
        """Wanted runs by status."""
        with self.tx() as c:
            rows = c.execute(
                "SELECT status, COUNT(*) AS n FROM fewlabels_runs WHERE wanted = 1 GROUP BY status"
            ).fetchall()
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    # -- reading -----------------------------------------------------------------------
    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run, by key, with JSON fields decoded."""
        out = {}
        with self.tx() as c:
            rows = c.execute("SELECT * FROM fewlabels_runs ORDER BY ord").fetchall()
        for d in rows:
            for k in ("spec", "deps", "metrics", "curve"):
                d[k] = json.loads(d[k]) if d[k] else ({} if k != "curve" else [])
            out[d["key"]] = d
        return out

    def cells(self) -> list[dict[str, Any]]:
        """The current study's cells in order: info + run_key + job_keys."""
        with self.tx() as c:
            rows = c.execute("SELECT * FROM fewlabels_cells ORDER BY ord").fetchall()
        out = []
        for r in rows:
            d = json.loads(r["info"])
            d["run_key"], d["job_keys"] = r["run_key"], json.loads(r["job_keys"])
            out.append(d)
        return out
