"""Which results store a study uses: its folder's SQLite file, or a PostgreSQL database.

``StudyStore`` (``sqlstore.SqlStore``) is the interface the runner and the report rely on;
``study.store.Store`` (SQLite, the default) and ``study.pgstore.PgStore``
(``--store postgresql://...``, for workers on several machines) are its two back ends,
sharing one implementation of the claim semantics.

A study run with ``--store URL`` records the URL, without its password, in
``STUDY_DIR/store.json``, so ``fewlabels report STUDY_DIR`` finds the database again
(the password then comes from ``PGPASSWORD`` or ``~/.pgpass``, as libpq reads them).
"""

from __future__ import annotations

import json
from pathlib import Path

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.errors import ConfigError
from fewlabels.study.pgstore import PgStore, is_url, redact
from fewlabels.study.sqlstore import SqlStore
from fewlabels.study.store import STORE_NAME, Store

POINTER_NAME = "store.json"


# the interface the runner and the report rely on: both back ends share its code
StudyStore = SqlStore


def check_location(store: str | None) -> str | None:
    """``store`` if it is None or a PostgreSQL URL, else a ``ConfigError``."""
    if store is not None and not is_url(store):
        raise ConfigError(
            f"`store` {store!r}: expected a postgresql://USER@HOST/DATABASE URL "
            f"(leave `store` out to use the study folder's {STORE_NAME})"
        )
    return store


def open_store(
    study_dir: str | Path, store: str | None = None, *, stale_s: float = 120.0
) -> SqlStore:
    """The store of the study in ``study_dir``: PostgreSQL at ``store`` when given, else
    ``study_dir/study.sqlite`` (created if missing)."""
    if check_location(store) is not None:
        return PgStore(store, stale_s=stale_s)  # type: ignore[arg-type]
    return Store(Path(study_dir) / STORE_NAME, stale_s=stale_s)


def remember(study_dir: str | Path, store: str | None) -> None:
    """Note in ``study_dir`` which store holds its results (nothing for the SQLite file)."""
    if store is not None:
        atomic_write_text(Path(study_dir) / POINTER_NAME, json.dumps({"url": redact(store)}))


def find_store(study_dir: str | Path) -> str | None:
    """The store ``study_dir`` was run with: None for its SQLite file, else the URL noted
    by ``remember``; a folder with neither is a ``ConfigError``."""
    d = Path(study_dir)
    if (d / STORE_NAME).exists():
        return None
    pointer = d / POINTER_NAME
    if pointer.is_file():
        try:
            url = json.loads(pointer.read_text())["url"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{pointer} is not a store pointer; pass `store` URL") from None
        return check_location(str(url))
    raise ConfigError(f"{d} holds no study ({STORE_NAME} is missing)")
