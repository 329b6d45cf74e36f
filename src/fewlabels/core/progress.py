"""One progress helper for work that takes more than a few seconds outside the training
loop: decoding a source into the cache, extracting features, fitting t-SNE / UMAP,
selecting, generating. A bar with the count, elapsed time and time left, on stderr.

It is silent when turned off (``--no-progress``, ``progress=False``), when stderr is not a
terminal (logs, CI, study workers), and until the work has run ``delay_s`` seconds, so
quick work prints nothing. Passing a ``stream`` draws there whatever it is (tests)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

__all__ = ["Progress", "progress_shown", "track"]

T = TypeVar("T")


def progress_shown(enabled: bool, stream: IO[str] | None = None) -> bool:
    """Whether a bar would draw: enabled, and drawing to ``stream`` or a terminal stderr."""
    if not enabled:
        return False
    if stream is not None:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A bar over ``total`` units (None: a count without a bar), started lazily once the
    work has taken ``delay_s`` seconds. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        label: str,
        total: float | None,
        *,
        enabled: bool = True,
        stream: IO[str] | None = None,
        delay_s: float = 1.0,
        unit: str = "",
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.shown = progress_shown(enabled, stream)
        self.stream, self.delay_s = stream, delay_s
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
    enabled: bool = True,
    stream: IO[str] | None = None,
    delay_s: float = 1.0,
) -> Iterator[T]:
    """Yield ``items`` with a ``Progress`` bar over them (``total`` defaults to ``len``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, enabled=enabled, stream=stream, delay_s=delay_s) as bar:
        for item in items:
            yield item
            bar.advance()
