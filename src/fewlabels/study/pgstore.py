"""The results store on a PostgreSQL server, for study workers on several machines.

The same tables and the same contract (``sqlstore.SqlStore``) as the SQLite store: runs
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
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fewlabels.core.errors import ConfigError, FewlabelsError, WriteError
from fewlabels.study.sqlstore import SqlStore, process_host
from fewlabels.study.store import SCHEMA_VERSION

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


class PgStore(SqlStore):
    """A study's store in a PostgreSQL database; open one per process (and per thread)."""

    placeholder = "%s"
    prefix = "fewlabels_"
    other_study_hint = "use another database (or schema)"

    def __init__(self, url: str, *, stale_s: float = 120.0) -> None:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        self.url = url
        self.path = redact(url)  # what messages name
        self.stale_s = stale_s
        self.host = process_host()
        self._errors = (psycopg.Error,)
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

    def _error(self, e: BaseException) -> FewlabelsError:
        msg = " ".join(str(e).split()) or type(e).__name__
        if getattr(e, "sqlstate", None) in ("53100", "53200"):  # disk full, out of memory
            err = WriteError(
                f"could not write the study store {self.path}: {msg}; "
                "the last committed state is kept"
            )
            err.errno = 28
            return err
        return FewlabelsError(f"study store {self.path}: {msg}")

    @contextlib.contextmanager
    def tx(self) -> Iterator[Any]:
        """One transaction; its cursor is yielded. Database errors become one-line errors."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield cur
        except self._errors as e:
            raise self._error(e) from None

    def _lock(self, c: Any) -> None:
        # excludes itself: one claim (or registration) at a time; readers go on
        c.execute("LOCK TABLE fewlabels_runs IN SHARE ROW EXCLUSIVE MODE")

    def _now(self, c: Any) -> float:
        # the server's clock, so workers whose clocks disagree agree on staleness
        return float(c.execute(f"SELECT {_NOW} AS now").fetchone()["now"])
