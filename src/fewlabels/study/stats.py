"""The statistics behind a study's verdict: paired differences by seed and their 95%
t-intervals, and what an interval says in words.

Seeds share splits (the same seed gives every method the same labeled, unlabeled,
validation and test sets), so two methods are compared seed by seed: the differences of
their test accuracies at the same seed, whose mean has the interval
``mean +- t(0.975, n-1) * sd / sqrt(n)``. Fewer than ``MIN_SEEDS`` pairs decide nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

# the fewest paired seeds whose interval the report acts on
MIN_SEEDS = 3
# "no further gain": a mean change under HALF_POINT whose whole interval is within
# +-ONE_POINT (in accuracy, as a fraction: 0.005 is half a point)
HALF_POINT = 0.005
ONE_POINT = 0.01


@dataclass(frozen=True)
class Interval:
    """A mean difference over ``n`` pairs and its two-sided ``level`` t-interval."""

    mean: float
    low: float
    high: float
    n: int
    sd: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """The mean of ``values`` and its t-interval: ``mean +- t((1+level)/2, n-1) * sd /
    sqrt(n)`` (sample sd); one value gives an interval of infinite width."""
    a = np.asarray(values, dtype=float)
    n = len(a)
    if n == 0:
        raise ValueError("an interval needs at least one value")
    mean = float(a.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1, 0.0, level)
    sd = float(a.std(ddof=1))
    half = float(_scipy_stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd, level)


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """``a[seed] - b[seed]`` for every seed both have, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def not_conclusive(n: int) -> str:
    """The words for too few seeds."""
    return f"not conclusive ({n} seed{'s' if n != 1 else ''}; {MIN_SEEDS} or more are needed)"


def points(x: float) -> str:
    """A difference in accuracy (a fraction) as signed points: ``+8.1``."""
    return f"{100 * x:+.1f}"


def interval_text(iv: Interval) -> str:
    """``95% interval 5.2 to 11.0, 3 seeds``."""
    return f"{100 * iv.level:g}% interval {100 * iv.low:.1f} to {100 * iv.high:.1f}, {iv.n} seeds"


def comparison(iv: Interval) -> str:
    """What a paired difference (method minus baseline) says: ``beats``, ``below`` or
    ``no clear difference`` (interval across 0), or not conclusive."""
    if iv.n < MIN_SEEDS:
        return "not conclusive"
    if iv.low > 0:
        return "beats"
    if iv.high < 0:
        return "below"
    return "no clear difference"


def helps(iv: Interval) -> str:
    """Whether more unlabeled data helps, from paired differences (more minus less):
    ``yes`` (interval above 0), ``no`` (below 0, or a mean change under half a point with
    the interval within one point either side: no further gain), ``not determined``, or
    ``not conclusive`` with too few seeds."""
    if iv.n < MIN_SEEDS:
        return "not conclusive"
    if iv.low > 0:
        return "yes"
    if iv.high < 0:
        return "no"
    if abs(iv.mean) < HALF_POINT and iv.low >= -ONE_POINT and iv.high <= ONE_POINT:
        return "no"
    return "not determined"
