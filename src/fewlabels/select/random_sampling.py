"""Random selection: ``budget`` candidates drawn uniformly without replacement (the baseline)."""

from __future__ import annotations

import numpy as np

from fewlabels.select.base import Picked, Pool, check_budget


def select(pool: Pool, budget: int, *, seed: int = 0) -> Picked:
    """``budget`` candidates chosen uniformly at random (seeded)."""
    budget = check_budget(pool, budget)
    rng = np.random.default_rng([seed, 101])
    return Picked(rng.choice(pool.candidates, size=budget, replace=False))
