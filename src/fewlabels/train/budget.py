"""Compute budgets: a number of steps, of epochs, or wall-clock seconds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from fewlabels.errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|steps?|epochs?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """How long a run trains. ``kind`` is ``steps``, ``epochs`` or ``seconds``."""

    kind: Literal["steps", "epochs", "seconds"]
    amount: float

    @classmethod
    def parse(cls, text: str | Budget) -> Budget:
        """Parse ``20s``, ``30m``, ``2h``, ``500steps`` or ``10epochs``."""
        if isinstance(text, Budget):
            return text
        m = _PATTERN.match(str(text))
        if not m:
            raise ConfigError(
                f"budget {text!r} is not understood: use e.g. 20s, 30m, 2h, 500steps or 10epochs"
            )
        value, unit = float(m.group(1)), m.group(2).lower()
        if value <= 0:
            raise ConfigError(f"budget {text!r} must be positive")
        if unit.startswith("step"):
            if value != int(value):
                raise ConfigError(f"budget {text!r}: steps must be a whole number")
            return cls("steps", value)
        if unit.startswith("epoch"):
            return cls("epochs", value)
        return cls("seconds", value * _UNITS[unit])

    def total_steps(self, steps_per_epoch: float) -> int | None:
        """Total steps, or None for a wall-clock budget."""
        if self.kind == "steps":
            return int(self.amount)
        if self.kind == "epochs":
            return max(1, math.ceil(self.amount * steps_per_epoch))
        return None

    def progress(self, step: int, seconds: float, steps_per_epoch: float) -> float:
        """Fraction of the budget used, in [0, 1]."""
        total = self.total_steps(steps_per_epoch)
        frac = step / total if total is not None else seconds / self.amount
        return min(1.0, max(0.0, frac))

    def __str__(self) -> str:
        if self.kind == "seconds":
            return f"{self.amount:g}s"
        return f"{self.amount:g}{self.kind}"
