"""File-type checks that every reader makes before it opens a path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["not_regular"]


def not_regular(path: str | Path) -> str | None:
    """Why ``path`` is no regular file ("a FIFO", ...), or None if it is one (links are
    followed). A missing path is None: opening it gives the usual error."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file"
