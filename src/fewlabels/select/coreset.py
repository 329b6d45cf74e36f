"""Core-set selection (Sener & Savarese, ICLR 2018): greedy k-centre.

Each pick is the candidate farthest (Euclidean, L2-normalised features) from every
labeled or already-picked image, which greedily minimises the largest distance from any
image to its nearest labeled one. With no labels yet, the first pick is the candidate
nearest to the mean feature (deterministic). Score: that distance when picked.
"""

from __future__ import annotations

import numpy as np
import torch

from fewlabels.core.progress import track
from fewlabels.select.base import Picked, Pool, check_budget, normalise


def select(pool: Pool, budget: int, *, seed: int = 0) -> Picked:
    """``budget`` candidates by farthest-first traversal from the labeled set."""
    budget = check_budget(pool, budget)
    x = torch.from_numpy(normalise(pool.features))
    sq = (x * x).sum(1)

    def dist_to(row: int) -> torch.Tensor:
        return (sq + sq[row] - 2.0 * x @ x[row]).clamp_min_(0).sqrt_()

    nearest = torch.full((len(x),), float("inf"))
    for row in pool.labeled.tolist():
        nearest = torch.minimum(nearest, dist_to(row))
    labeled = torch.from_numpy(pool.labeled_mask)
    picked, scores = [], []
    for _ in track(range(budget), "selecting (coreset)"):
        d = nearest.masked_fill(labeled, -1.0)
        if not len(pool.labeled) and not picked:
            mean = x.mean(0)
            d = -((x - mean) ** 2).sum(1).masked_fill(labeled, float("inf"))
        row = int(torch.argmax(d))
        scores.append(float(nearest[row]))
        picked.append(row)
        labeled[row] = True
        nearest = torch.minimum(nearest, dist_to(row))
    return Picked(np.asarray(picked, np.int64), score=np.asarray(scores, np.float32))
