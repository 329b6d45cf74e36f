"""Which images to send for labelling: one small file per strategy, a registry, and the
plumbing (features of a data spec's images, the labels file, the label request).

Every strategy is ``select(pool, budget, *, seed=0, **options) -> Picked``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.select import (
    class_balanced,
    coreset,
    probcover,
    random_sampling,
    representative,
    typiclust,
    uncertainty,
)
from fewlabels.select.base import Picked, Pool


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its function, whether it needs labels, a one-line summary."""

    name: str
    fn: Callable[..., Picked]
    needs_labels: bool
    summary: str


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("random", random_sampling.select, False, "uniform at random (the baseline)"),
        Strategy(
            "class_balanced",
            class_balanced.select,
            True,
            "evens out label counts by a probe's predicted class",
        ),
        Strategy(
            "representative",
            representative.select,
            False,
            "nearest image to each of `budget` k-means centres",
        ),
        Strategy(
            "typiclust",
            typiclust.select,
            False,
            "most typical image of each uncovered k-means cluster (low budgets)",
        ),
        Strategy(
            "probcover", probcover.select, False, "greedy max coverage of delta-balls (low budgets)"
        ),
        Strategy(
            "entropy", uncertainty.select_entropy, True, "highest predictive entropy of a probe"
        ),
        Strategy("margin", uncertainty.select_margin, True, "smallest top-2 margin of a probe"),
        Strategy("coreset", coreset.select, False, "k-centre greedy: farthest from the labels"),
    )
}
ALIASES = {"uncertainty": "entropy", "core_set": "coreset", "balanced": "class_balanced"}


def strategy(name: str) -> Strategy:
    """The strategy called ``name`` (case and ``-``/``_`` do not matter); ConfigError else."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in STRATEGIES:
        raise ConfigError(
            f"unknown selection strategy {name!r}; choose from {', '.join(STRATEGIES)}"
        )
    return STRATEGIES[key]


def select(pool: Pool, name: str, budget: int, *, seed: int = 0, **options: Any) -> Picked:
    """Run strategy ``name`` on ``pool``."""
    s = strategy(name)
    try:
        return s.fn(pool, budget, seed=seed, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ConfigError(f"strategy {s.name}: {e}") from None
        raise


__all__ = ["STRATEGIES", "Picked", "Pool", "Strategy", "select", "strategy"]
