"""One progress helper for work that takes more than a few seconds outside the training
loop: decoding a source into the cache, extracting features, fitting t-SNE / UMAP,
selecting, generating. A bar with the count, elapsed time and time left, on stderr.

It is silent when turned off (``progress=False``; ``--no-progress`` turns every bar of a
command off through ``configure_progress``), when stderr is not a terminal (logs, CI,
study workers), and until the work has run ``delay_s`` seconds, so quick work prints
nothing. Passing a ``stream`` draws there whatever it is (tests)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

__all__ = ["Progress", "configure_progress", "progress_shown", "track"]

T = TypeVar("T")

# what ``enabled=None`` means; an entry point (the CLI's --no-progress) may change it
_DEFAULTS: dict[str, Any] = {"enabled": True, "stream": None, "delay_s": 1.0}


def configure_progress(
    enabled: bool = True, stream: IO[str] | None = None, delay_s: float = 1.0
) -> None:
    """For entry points only: whether bars left to their default (``enabled=None``) draw,
    a stream they draw to whatever it is (None: stderr, when it is a terminal), and how
    long work runs before its bar appears."""
    _DEFAULTS.update(enabled=enabled, stream=stream, delay_s=delay_s)


def progress_shown(enabled: bool | None, stream: IO[str] | None = None) -> bool:
    """Whether a bar would draw: enabled (None: by default), and drawing to ``stream`` or
    a terminal stderr."""
    if enabled is None:
        enabled = _DEFAULTS["enabled"]
    stream = stream or _DEFAULTS["stream"]
    if not enabled:
        return False
    if stream is not None:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A bar over ``total`` units (None: a count without a bar), started lazily once the
    work has taken ``delay_s`` seconds (default 1). ``enabled`` None: as configured (on,
    unless an entry point turned bars off). Use as a context manager, or call ``close``."""

    def __init__(
        self,
        label: str,
        total: float | None,
        *,
        enabled: bool | None = None,
        stream: IO[str] | None = None,
        delay_s: float | None = None,
        unit: str = "",
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.shown = progress_shown(enabled, stream)
        self.stream = stream or _DEFAULTS["stream"]
        self.delay_s = float(_DEFAULTS["delay_s"] if delay_s is None else delay_s)
        self.done = 0.0
        self.t0 = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None

    def _start(self) -> None:
        from rich.console import Console  # a heavy import, only for a bar that is shown
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(file=self.stream or sys.stderr, force_terminal=self.stream is None)
        self._bar = RichProgress(
            TextColumn(f"[bold]{self.label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.done)
        # the bar's clock starts with the work, not with the bar
        self._bar.tasks[0].start_time = self._bar.get_time() - (time.perf_counter() - self.t0)

    def advance(self, n: float = 1) -> None:
        """``n`` more units are done."""
        self.done += n
        if not self.shown:
            return
        if self._bar is None:
            if time.perf_counter() - self.t0 < self.delay_s:
                return
            self._start()
        self._bar.update(self._task, completed=self.done)

    def close(self) -> None:
        """Stop drawing (the last state stays on screen)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    items: Iterable[T],
    label: str,
    *,
    total: float | None = None,
    enabled: bool | None = None,
    stream: IO[str] | None = None,
    delay_s: float | None = None,
) -> Iterator[T]:
    """Yield ``items`` with a ``Progress`` bar over them (``total`` defaults to ``len``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, enabled=enabled, stream=stream, delay_s=delay_s) as bar:
        for item in items:
            yield item
            bar.advance()
