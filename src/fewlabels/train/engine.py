"""The loop core every trainer runs, and the callbacks that give it budgets, checkpoints,
curves, EMA and a progress bar.

``run_loop`` knows only a step function and a list of callbacks. Per step it computes the
budget's progress, stops at the budget (or at ``stop_at_step``), times ``step_fn`` plus the
callbacks' ``on_after_step`` (EMA updates: part of a step's cost), counts the step, then
calls ``on_step_end``. A callback that logs a curve row calls ``LoopState.record``, which
hands the row to every callback's ``on_eval``. The classifier's ``Trainer`` and the GAN's
``train_gan`` both run here; each supplies its own step and evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fewlabels.core.artifacts import append_curve, write_curve
from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.train.ema import ModelEMA

__all__ = [
    "BudgetClock",
    "Callback",
    "Checkpointing",
    "CurveLog",
    "EMAUpdate",
    "LoopState",
    "ProgressBar",
    "ProgressCallback",
    "run_loop",
]


class Callback:
    """Hooks of the loop core; every one is optional (the base class does nothing)."""

    def on_start(self, loop: LoopState) -> None:
        """Before the first step (after any resume)."""

    def on_after_step(self, loop: LoopState) -> None:
        """Right after the step function, inside the step's timing (e.g. an EMA update)."""

    def on_step_end(self, loop: LoopState) -> None:
        """After the step is counted (``loop.clock.step`` is the number of steps done)."""

    def on_eval(self, loop: LoopState, row: dict[str, Any]) -> None:
        """A curve row was recorded."""

    def on_end(self, loop: LoopState) -> None:
        """After the last step (the budget was used, or the run stopped early)."""


class BudgetClock(Callback):
    """Steps and training seconds against a budget; knows the run's progress in [0, 1].

    A steps or epochs budget is a step count from the start. An images budget becomes one
    once the trainer has counted a step's images (``total_steps`` is set then). A seconds
    budget is the clock, or, with ``calibrate``, becomes a step count once the speed is
    known, so a schedule is a function of the step; every 10% of the budget (and whenever
    the count is reached before 98% of it) the count is re-estimated from the recent speed,
    so a machine that slows down (or speeds up) still ends its schedule on time. If it
    slows down after that, the clock wins at 102%.
    """

    def __init__(self, budget: Budget, total_steps: int | None, *, calibrate: bool) -> None:
        self.budget, self.total_steps, self.calibrate = budget, total_steps, calibrate
        self.step, self.train_s = 0, 0.0
        self._mark = (0, 0.0)

    def progress(self) -> float:
        """The fraction of the budget used."""
        if self.total_steps is not None:
            return min(1.0, self.step / max(1, self.total_steps))
        if self.budget.kind == "images":
            return 0.0  # the step count is known once a batch has been counted
        return min(1.0, self.train_s / self.budget.amount)

    def on_start(self, loop: LoopState) -> None:
        self._mark = (self.step, self.train_s)

    def on_step_end(self, loop: LoopState) -> None:
        if self.budget.kind != "seconds":
            loop.progress = self.progress()
            return
        step, train_s, amount = self.step, self.train_s, self.budget.amount
        if self.calibrate and self.total_steps is None:
            if step >= 20 and train_s >= min(0.03 * amount, 30.0):
                self.total_steps = max(step + 1, int(step / train_s * amount))
                self._mark = (step, train_s)
        elif self.calibrate and (
            train_s - self._mark[1] >= 0.1 * amount
            # the count is reached with time left (a slow start, a machine that sped up):
            # re-estimate now rather than stop early, so the budget is used to its end
            or (step >= self.total_steps and train_s < 0.98 * amount and step > self._mark[0])
        ):
            rate = (step - self._mark[0]) / max(train_s - self._mark[1], 1e-9)
            left = max(0.0, amount - train_s)
            self.total_steps = max(step + 1, step + int(rate * left))
            self._mark = (step, train_s)
        loop.progress = self.progress()
        if train_s >= amount * 1.02:
            loop.stop = True  # the machine slowed down after calibration: the clock wins


@dataclass
class LoopState:
    """What the loop core and its callbacks share during a run."""

    clock: BudgetClock
    stop_at_step: int | None = None
    progress: float = 0.0  # the budget's progress (updated before and after each step)
    curve: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    out: dict[str, Any] = field(default_factory=dict)  # the last step's outputs
    stop: bool = False  # a callback ends the run after this step
    stopped_early: bool = False  # stop_at_step ended it
    started: float = 0.0  # perf_counter at the start of this process's loop
    callbacks: Sequence[Callback] = ()

    @property
    def step(self) -> int:
        """Steps done."""
        return self.clock.step

    def record(self, row: dict[str, Any]) -> None:
        """Add a row to the curve and show it to every callback."""
        self.curve.append(row)
        for cb in self.callbacks:
            cb.on_eval(self, row)


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)


def run_loop(
    loop: LoopState, step_fn: Callable[[LoopState], None], callbacks: Sequence[Callback]
) -> LoopState:
    """Run ``step_fn`` until the budget is used, ``stop_at_step`` or a callback stops it."""
    loop.callbacks = callbacks
    after = [cb.on_after_step for cb in callbacks if _overrides(cb, "on_after_step")]
    ends = [cb.on_step_end for cb in callbacks if _overrides(cb, "on_step_end")]
    clock = loop.clock
    loop.started = time.perf_counter()
    for cb in callbacks:
        cb.on_start(loop)
    while True:
        loop.progress = clock.progress()
        if loop.progress >= 1.0:
            break
        if loop.stop_at_step is not None and clock.step >= loop.stop_at_step:
            loop.stopped_early = True
            break
        t0 = time.perf_counter()
        step_fn(loop)
        for fn in after:
            fn(loop)
        clock.step += 1
        dt = time.perf_counter() - t0
        clock.train_s += dt
        loop.step_seconds.append(dt)
        for fn in ends:
            fn(loop)
        if loop.stop:
            break
    for cb in callbacks:
        cb.on_end(loop)
    return loop


class EMAUpdate(Callback):
    """Updates an EMA of ``module`` after every step. ``warmup``: the decay ramps up as
    ``(1 + s) / (10 + s)`` so a short run is not dominated by its first weights.
    ``export_to``: the averaged weights are loaded into it at the end."""

    def __init__(
        self,
        ema: ModelEMA,
        module: nn.Module,
        *,
        warmup: bool = False,
        export_to: nn.Module | None = None,
    ) -> None:
        self.ema, self.module, self.warmup, self.export_to = ema, module, warmup, export_to
        self.decay = ema.decay

    def on_after_step(self, loop: LoopState) -> None:
        if self.warmup:
            step = loop.clock.step
            self.ema.decay = min(self.decay, (1 + step) / (10 + step))
        self.ema.update(self.module)

    def on_end(self, loop: LoopState) -> None:
        if self.export_to is not None:  # evaluation and export use the averaged weights
            self.export_to.load_state_dict(self.ema.state_dict())


class Checkpointing(Callback):
    """``checkpoint.pt`` every ``every_s`` seconds of wall clock (not after the last step)
    and at the end; resuming reads it back (``load``). Only a ``writer`` writes it.
    ``snapshot`` builds the checkpoint's dict. ``only_if_stepped``: no final save when
    this process trained no step and the file is there."""

    def __init__(
        self,
        path: Path | None,
        every_s: float,
        snapshot: Callable[[], dict[str, Any]],
        *,
        writer: bool = True,
        only_if_stepped: bool = False,
    ) -> None:
        self.path, self.every_s, self.snapshot = path, every_s, snapshot
        self.writer, self.only_if_stepped = writer, only_if_stepped
        self._last, self._first_step = 0.0, 0

    def load(self, map_location: torch.device | str) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None when there is none."""
        if self.path is None or not self.path.exists():
            return None
        return load_checkpoint(self.path, map_location=map_location)

    def save(self) -> None:
        """Write the checkpoint now (atomically)."""
        if self.path is not None and self.writer:
            save_checkpoint(self.snapshot(), self.path)

    def on_start(self, loop: LoopState) -> None:
        self._last, self._first_step = time.perf_counter(), loop.clock.step

    def on_step_end(self, loop: LoopState) -> None:
        if self.path is None or loop.progress >= 1.0:
            return
        if time.perf_counter() - self._last > self.every_s:
            self.save()
            self._last = time.perf_counter()

    def on_end(self, loop: LoopState) -> None:
        if self.path is None:
            return
        if self.only_if_stepped and loop.clock.step == self._first_step and self.path.exists():
            return
        self.save()


class CurveLog(Callback):
    """Keeps ``curve.jsonl`` in ``folder``: ``reset`` rewrites it, each row is appended."""

    def __init__(self, folder: Path | None, *, writer: bool = True) -> None:
        self.path = folder / "curve.jsonl" if folder is not None else None
        self.writer = writer

    def reset(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the file with ``rows`` (a fresh run: none; a resumed one: its rows)."""
        if self.path is not None and self.writer:
            write_curve(self.path, rows)

    def on_eval(self, loop: LoopState, row: dict[str, Any]) -> None:
        if self.path is not None and self.writer:
            append_curve(self.path, row)


class ProgressBar:
    """A rich progress bar over a budget's progress, with the time left; silent when
    disabled. ``fields`` are the names of text columns shown after the step."""

    def __init__(self, enabled: bool, label: str, fields: Sequence[tuple[str, str]]) -> None:
        self.prog: Any = None
        if not enabled:
            return
        from rich.progress import (  # a heavy import, only for a bar that is shown
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn(f"{title} {{task.fields[{key}]}}") for key, title in fields]
        self.prog = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("step {task.fields[step]}"),
            *columns,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.prog.start()
        self.task = self.prog.add_task(label, total=1.0, step=0, **{k: "-" for k, _ in fields})

    def update(self, progress: float | None = None, **fields: Any) -> None:
        """Show new values (and progress, when given)."""
        if self.prog is not None:
            self.prog.update(self.task, completed=progress, **fields)

    def close(self) -> None:
        """Stop drawing."""
        if self.prog is not None:
            self.prog.stop()


def fmt_loss(value: float | None) -> str:
    """A loss for the bar: three decimals, ``-`` when there is none."""
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "-"


class ProgressCallback(Callback):
    """Drives a ``ProgressBar`` every 5 steps (and the last); ``fields`` gives its texts;
    a curve row's ``val_acc`` is shown as ``val``."""

    def __init__(self, bar: ProgressBar, fields: Callable[[LoopState], dict[str, str]]) -> None:
        self.bar, self.fields = bar, fields

    def on_step_end(self, loop: LoopState) -> None:
        step = loop.clock.step
        if self.bar.prog is not None and (step % 5 == 0 or loop.progress >= 1.0):
            self.bar.update(loop.progress, step=step, **self.fields(loop))

    def on_eval(self, loop: LoopState, row: dict[str, Any]) -> None:
        if self.bar.prog is not None and row.get("val_acc") is not None:
            self.bar.update(val=f"{100 * row['val_acc']:.1f}%")

    def on_end(self, loop: LoopState) -> None:
        self.bar.close()
