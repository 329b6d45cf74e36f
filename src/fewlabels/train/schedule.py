"""Learning-rate schedule as a function of budget progress in [0, 1]."""

from __future__ import annotations

import math


def warmup_cosine(progress: float, warmup: float = 0.05, final: float = 0.0) -> float:
    """Multiplier: linear warm-up over the first ``warmup`` fraction, then cosine to ``final``."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    p = (progress - warmup) / max(1e-8, 1.0 - warmup)
    p = min(1.0, max(0.0, p))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))
