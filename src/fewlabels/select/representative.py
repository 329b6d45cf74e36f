"""Representative selection ("representative random sampling", report 003).

k-means with ``budget`` clusters on the L2-normalised features of the candidates; from
each cluster, the candidate nearest to its centre. Clusters are taken largest first, so
the order of the picks is the order of importance. Score: distance to the centre.
"""

from __future__ import annotations

import numpy as np

from fewlabels.select.base import Picked, Pool, check_budget, kmeans, normalise, sq_distances


def select(pool: Pool, budget: int, *, seed: int = 0) -> Picked:
    """The candidate nearest to each of ``budget`` k-means centres."""
    budget = check_budget(pool, budget)
    cand = pool.candidates
    x = normalise(pool.features[cand])
    assign, centres = kmeans(x, budget, seed)
    sizes = np.bincount(assign, minlength=len(centres))
    d = sq_distances(x, centres)
    picked, scores = [], []
    for c in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(assign == c)
        if not len(members):
            continue
        best = members[np.argmin(d[members, c])]
        picked.append(cand[best])
        scores.append(float(np.sqrt(d[best, c])))
    # k-means may leave a cluster empty: top up with the candidates farthest from any pick
    if len(picked) < budget:
        left = np.setdiff1d(cand, picked)
        near = sq_distances(normalise(pool.features[left]), normalise(pool.features[picked]))
        order = np.argsort(-near.min(1), kind="stable")[: budget - len(picked)]
        picked += left[order].tolist()
        scores += [float("nan")] * len(order)
    return Picked(np.asarray(picked, np.int64), score=np.asarray(scores, np.float32))
