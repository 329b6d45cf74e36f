"""Compute budgets: a number of steps, of epochs, of images through the backbone, or seconds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from fewlabels.core.errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|steps?|epochs?|kimg|mimg|img|images)\s*$", re.IGNORECASE
)
_IMAGE_UNITS = {"img": 1.0, "images": 1.0, "kimg": 1e3, "mimg": 1e6}


@dataclass(frozen=True)
class Budget:
    """How long a run trains. ``kind`` is ``steps``, ``epochs``, ``images`` or ``seconds``.

    An ``images`` budget counts augmented images through the backbone (every view of
    every labeled and unlabeled image of a step), so methods that look at more views per
    step get fewer steps: the way to compare methods at equal compute.
    """

    kind: Literal["steps", "epochs", "seconds", "images"]
    amount: float
    # the text it was parsed from (``30m``), which ``str`` gives back so that settings
    # files and checkpoints keep the user's spelling; not part of equality
    text: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str | Budget) -> Budget:
        """Parse ``20s``, ``30m``, ``2h``, ``500steps``, ``10epochs`` or ``200kimg``."""
        if isinstance(text, Budget):
            return text
        m = _PATTERN.match(str(text))
        if not m:
            raise ConfigError(
                f"budget {text!r} is not understood: use e.g. 20s, 30m, 2h, 500steps, 10epochs "
                "or 200kimg"
            )
        value, unit = float(m.group(1)), m.group(2).lower()
        if value <= 0:
            raise ConfigError(f"budget {text!r} must be positive")
        spelled = str(text)
        if unit.startswith("step"):
            if value != int(value):
                raise ConfigError(f"budget {text!r}: steps must be a whole number")
            return cls("steps", value, spelled)
        if unit.startswith("epoch"):
            return cls("epochs", value, spelled)
        if unit in _IMAGE_UNITS:
            return cls("images", value * _IMAGE_UNITS[unit], spelled)
        return cls("seconds", value * _UNITS[unit], spelled)

    def total_steps(self, steps_per_epoch: float) -> int | None:
        """Total steps, or None for a wall-clock or images budget (known once running)."""
        if self.kind == "steps":
            return int(self.amount)
        if self.kind == "epochs":
            return max(1, math.ceil(self.amount * steps_per_epoch))
        return None

    def progress(self, step: int, seconds: float, steps_per_epoch: float) -> float:
        """Fraction of the budget used, in [0, 1]."""
        total = self.total_steps(steps_per_epoch)
        if total is None and self.kind == "images":
            return 0.0  # unknown until the loop has counted a step's images
        frac = step / total if total is not None else seconds / self.amount
        return min(1.0, max(0.0, frac))

    def steps_for_images(self, images_per_step: int) -> int:
        """Steps that put this ``images`` budget through the backbone (at least one)."""
        return max(1, math.ceil(self.amount / max(1, images_per_step)))

    def split(self, parts: int) -> Budget:
        """An equal share of this budget for each of ``parts`` runs (a step budget rounds
        down, to at least one step per part)."""
        if parts < 1:
            raise ConfigError(f"cannot split a budget into {parts} parts")
        if self.kind == "steps":
            return Budget("steps", float(max(1, int(self.amount) // parts)))
        return Budget(self.kind, self.amount / parts)

    def __str__(self) -> str:
        """The budget as ``parse`` reads it back: the text it was parsed from, else a
        canonical spelling (no exponent: ``1000000img``)."""
        if self.text is not None:
            return self.text
        a = self.amount
        num = str(int(a)) if a == int(a) else f"{a:.6f}".rstrip("0")
        unit = {"images": "img", "seconds": "s"}.get(self.kind, self.kind)
        return f"{num}{unit}"
