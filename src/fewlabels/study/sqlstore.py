"""The results store's contract, written once over SQL for both back ends.

A study store holds every run's spec, status and results, keyed by the hash of the spec,
and the study's cells. Workers claim runs one at a time inside a transaction that locks
out other claimers (``UPDATE ... WHERE status = 'pending'``), so no run is taken twice; a
claim whose worker process has died on this machine, or whose heartbeat has stopped for
``stale_s``, goes back to pending. Statuses: pending, running, done, failed.

``SqlStore`` holds that logic; a back end (``store.Store`` for SQLite, ``pgstore.PgStore``
for PostgreSQL) gives the connection, its transactions and error type, and the dialect:
the placeholder, a table prefix, the claim lock and the clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fewlabels.core.errors import ConfigError, FewlabelsError

STATUSES = ("pending", "running", "done", "failed")


def process_host() -> str:
    """Where this process's pid means something: the host name, plus (on Linux) the boot
    and the pid namespace. Two containers that share a host name, or a machine that has
    rebooted, are then different hosts, so a pid is only checked (or its claims freed)
    where it names the same process."""
    name = socket.gethostname()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        ns = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return name
    return f"{name}/{boot}/{ns}"


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


class SqlStore:
    """Register, claim, heartbeat, finish and read runs; the back end supplies the rest."""

    placeholder = "?"
    prefix = ""  # table name prefix
    other_study_hint = "use another `out` folder"
    conn: Any
    host: str
    stale_s: float
    _errors: tuple[type[BaseException], ...]

    # -- the back end's part -------------------------------------------------------------
    def _error(self, e: BaseException) -> FewlabelsError:
        raise NotImplementedError

    @contextlib.contextmanager
    def tx(self) -> Iterator[Any]:
        """One write transaction; yields a cursor. Database errors become one-line errors."""
        raise NotImplementedError
        yield

    def _lock(self, c: Any) -> None:
        """Take the lock that makes claims (and registrations) happen one at a time."""

    def _now(self, c: Any) -> float:
        """The clock that heartbeats and staleness are measured on."""
        return time.time()

    def _where(self) -> str:
        """The store, as a message names it when it holds another study."""
        return str(getattr(self, "path", "the store"))

    # -- shared ------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text.replace("{t}", self.prefix).replace("?", self.placeholder)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.conn.execute(self._sql(sql), params).fetchall()
        except self._errors as e:
            raise self._error(e) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM {t}meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        """Set a meta value; call inside ``tx``."""
        self.conn.execute(
            self._sql(
                "INSERT INTO {t}meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            (key, value),
        )

    def put_meta_once(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless it is set already (the first writer wins, also
        between machines sharing a PostgreSQL store); the value it holds."""
        with self.tx():
            self.conn.execute(
                self._sql("INSERT INTO {t}meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING"),
                (key, value),
            )
        got = self.get_meta(key)
        return value if got is None else got

    def register(self, plan: Any) -> None:
        """Record a study's cells and runs; runs already known keep their status and results.

        A store holding a different study (another ``name``) is refused. Failed runs go
        back to pending, so a rerun retries them, and so do the claims of an earlier
        attempt of this very process (e.g. stopped by a full disk): no worker of it is
        running them now.
        """
        q = self._sql
        with self.tx() as c:
            self._lock(c)
            other = self.get_meta("study_name")
            if other is not None and other != plan.name:
                raise ConfigError(
                    f"{self._where()} holds study {other!r}, not {plan.name!r}; "
                    f"{self.other_study_hint}"
                )
            self._set_meta("study_name", plan.name)
            self._set_meta("study_source", plan.source)
            self._set_meta("study_text", plan.text)
            self._set_meta("report", json.dumps(plan.spec.report.model_dump()))
            c.execute(q("UPDATE {t}runs SET wanted = 0"))
            now = self._now(c)
            for i, job in enumerate(plan.jobs.values()):
                c.execute(
                    q(
                        "INSERT INTO {t}runs (key, kind, label, spec, deps, ord, created) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
                    ),
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
                c.execute(q("UPDATE {t}runs SET wanted = 1, ord = ? WHERE key = ?"), (i, job.key))
            c.execute(
                q("UPDATE {t}runs SET status = 'pending', error = NULL WHERE status = 'failed'")
            )
            c.execute(
                q(
                    "UPDATE {t}runs SET status = 'pending', worker = NULL "
                    "WHERE status = 'running' AND host = ? AND pid = ?"
                ),
                (self.host, os.getpid()),
            )
            c.execute(q("DELETE FROM {t}cells"))
            for i, cell in enumerate(plan.cells):
                c.execute(
                    q(
                        "INSERT INTO {t}cells (id, ord, info, run_key, job_keys) "
                        "VALUES (?, ?, ?, ?, ?)"
                    ),
                    (cell.id, i, json.dumps(cell.info()), cell.run_key, json.dumps(cell.job_keys)),
                )

    def claim(self, worker: str) -> Any | None:
        """Atomically take the next runnable run (a row), or None."""
        q = self._sql
        with self.tx() as c:
            self._lock(c)
            now = self._now(c)
            running = c.execute(
                q("SELECT key, pid, host, heartbeat FROM {t}runs WHERE status = 'running'")
            ).fetchall()
            for r in running:
                dead = r["host"] == self.host and not _pid_alive(r["pid"])
                if dead or (r["heartbeat"] or 0) < now - self.stale_s:
                    c.execute(
                        q(
                            "UPDATE {t}runs SET status = 'pending', worker = NULL "
                            "WHERE key = ? AND status = 'running'"
                        ),
                        (r["key"],),
                    )
            status = {
                r["key"]: r["status"] for r in c.execute(q("SELECT key, status FROM {t}runs"))
            }
            pending = c.execute(
                q(
                    "SELECT key, deps FROM {t}runs WHERE status = 'pending' AND wanted = 1 "
                    "ORDER BY ord"
                )
            ).fetchall()
            for r in pending:
                deps = json.loads(r["deps"])
                failed = [d for d in deps if status.get(d) == "failed"]
                if failed:
                    c.execute(
                        q(
                            "UPDATE {t}runs SET status = 'failed', error = ?, finished = ? "
                            "WHERE key = ?"
                        ),
                        (f"the run it starts from ({failed[0]}) failed", now, r["key"]),
                    )
                    continue
                if all(status.get(d) == "done" for d in deps):
                    c.execute(
                        q(
                            "UPDATE {t}runs SET status = 'running', worker = ?, pid = ?, "
                            "host = ?, heartbeat = ?, started = ?, attempts = attempts + 1 "
                            "WHERE key = ? AND status = 'pending'"
                        ),
                        (worker, os.getpid(), self.host, now, now, r["key"]),
                    )
                    if c.rowcount == 1:
                        return c.execute(
                            q("SELECT * FROM {t}runs WHERE key = ?"), (r["key"],)
                        ).fetchone()
        return None

    def heartbeat(self, key: str, worker: str) -> None:
        """Tell the other workers that this claim is alive."""
        with self.tx() as c:
            c.execute(
                self._sql(
                    "UPDATE {t}runs SET heartbeat = ? WHERE key = ? AND worker = ? "
                    "AND status = 'running'"
                ),
                (self._now(c), key, worker),
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
                self._sql(
                    "UPDATE {t}runs SET status = ?, metrics = ?, curve = ?, seconds = ?, "
                    "error = ?, finished = ? WHERE key = ? AND worker = ? AND status = 'running'"
                ),
                (
                    "failed" if error is not None else "done",
                    json.dumps(metrics or {}, default=float),
                    json.dumps(curve or [], default=float),
                    seconds,
                    error,
                    self._now(c),
                    key,
                    worker,
                ),
            )
            return c.rowcount == 1

    def release(self, key: str, worker: str) -> None:
        """Give a claimed run back (pending), e.g. when the disk is full; errors are ignored."""
        with contextlib.suppress(FewlabelsError, *self._errors), self.tx() as c:
            c.execute(
                self._sql(
                    "UPDATE {t}runs SET status = 'pending', worker = NULL "
                    "WHERE key = ? AND worker = ? AND status = 'running'"
                ),
                (key, worker),
            )

    def reopen(self, keys: list[str]) -> int:
        """Put finished runs back to pending (their results are dropped), e.g. when their
        run folder is gone or their data changed; returns how many were reopened."""
        n = 0
        with self.tx() as c:
            for key in keys:
                c.execute(
                    self._sql(
                        "UPDATE {t}runs SET status = 'pending', worker = NULL, error = NULL "
                        "WHERE key = ? AND status IN ('done', 'failed')"
                    ),
                    (key,),
                )
                n += c.rowcount
        return n

    def counts(self) -> dict[str, int]:
        """Wanted runs by status."""
        out = dict.fromkeys(STATUSES, 0)
        rows = self._read(
            "SELECT status, COUNT(*) AS n FROM {t}runs WHERE wanted = 1 GROUP BY status"
        )
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run, by key, with JSON fields decoded."""
        out = {}
        for r in self._read("SELECT * FROM {t}runs ORDER BY ord"):
            d = dict(r)
            for k in ("spec", "deps", "metrics", "curve"):
                d[k] = json.loads(d[k]) if d[k] else ({} if k != "curve" else [])
            out[d["key"]] = d
        return out

    def cells(self) -> list[dict[str, Any]]:
        """The current study's cells in order: info + run_key + job_keys."""
        out = []
        for r in self._read("SELECT * FROM {t}cells ORDER BY ord"):
            d = json.loads(r["info"])
            d["run_key"], d["job_keys"] = r["run_key"], json.loads(r["job_keys"])
            out.append(d)
        return out
