"""Uncertainty sampling: the candidates a classifier trained on the current labels is least
sure of.

The classifier is a logistic-regression probe on the features (``base.classifier_probs``).
``entropy``: highest predictive entropy first. ``margin``: smallest gap between the two
most probable classes first. Both need labels of at least two classes; at very small
budgets they tend to pick outliers (the TypiClust paper's "cold start" problem), so start
with typiclust, probcover or random.
"""

from __future__ import annotations

import numpy as np

from fewlabels.select.base import Picked, Pool, check_budget, classifier_probs


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy of each row (nats)."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _pick(pool: Pool, budget: int, seed: int, kind: str) -> Picked:
    budget = check_budget(pool, budget)
    probs = classifier_probs(pool, seed, f"{kind} sampling")
    cand = pool.candidates
    p = probs[cand]
    score = entropy(p) if kind == "entropy" else margin(p)
    order = np.argsort(-score if kind == "entropy" else score, kind="stable")[:budget]
    return Picked(cand[order], score=score[order], predicted=p[order].argmax(1))


def select_entropy(pool: Pool, budget: int, *, seed: int = 0) -> Picked:
    """The ``budget`` candidates of highest predictive entropy."""
    return _pick(pool, budget, seed, "entropy")


def select_margin(pool: Pool, budget: int, *, seed: int = 0) -> Picked:
    """The ``budget`` candidates of smallest top-2 margin."""
    return _pick(pool, budget, seed, "margin")
