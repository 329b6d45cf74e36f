"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering
Lens", NeurIPS 2022).

Every image covers the ball of radius ``delta`` around it (L2-normalised features).
Greedy maximum coverage: each pick is the candidate whose ball holds the most images not
yet covered by a labeled or picked image; once everything is covered, the rest of the
budget is drawn at random. Score: how many images the pick newly covered.

``delta`` (default: estimated) follows the paper's purity rule: with k-means pseudo-labels
(one cluster per class), a ball is pure when it holds no image of another cluster; delta
is the largest radius at which ``purity`` (0.95) of the balls are pure, computed from
each image's distance to its nearest other-cluster neighbour among its 50 nearest.
"""

from __future__ import annotations

import numpy as np

from fewlabels.core.errors import ConfigError
from fewlabels.core.progress import track
from fewlabels.select.base import Picked, Pool, check_budget, kmeans, normalise

PURITY = 0.95  # paper
NEIGHBOURS = 50


def estimate_delta(
    x: np.ndarray, num_classes: int, *, purity: float = PURITY, seed: int = 0
) -> float:
    """The radius at which a ``purity`` fraction of balls hold a single k-means cluster."""
    from sklearn.neighbors import NearestNeighbors

    k = min(NEIGHBOURS, len(x) - 1)
    if k < 1:
        return 0.0
    assign, _ = kmeans(x, max(2, num_classes), seed)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    dist, idx = dist[:, 1:], idx[:, 1:]
    other = assign[idx] != assign[:, None]
    first = np.where(other.any(1), other.argmax(1), k - 1)  # none within k: the k-th
    d_other = dist[np.arange(len(x)), first]
    # just below: a ball reaching exactly to another cluster's image would hold it
    return float(np.quantile(d_other, 1.0 - purity)) * (1 - 1e-4)


def select(
    pool: Pool,
    budget: int,
    *,
    seed: int = 0,
    delta: float | None = None,
    purity: float = PURITY,
) -> Picked:
    """``budget`` candidates by greedy maximum coverage of delta-balls."""
    from sklearn.neighbors import NearestNeighbors

    budget = check_budget(pool, budget)
    x = normalise(pool.features)
    if delta is None:
        delta = estimate_delta(x, pool.num_classes or 10, purity=purity, seed=seed)
    if not delta >= 0:
        raise ConfigError(f"ProbCover radius delta must be >= 0, got {delta}")
    # ball membership, the image itself included; symmetric, so row i = column i
    graph = NearestNeighbors(radius=delta).fit(x).radius_neighbors_graph(x, mode="connectivity")
    graph = graph.tocsr().astype(np.float32)
    uncovered = np.ones(len(x), bool)
    if len(pool.labeled):
        uncovered[np.unique(graph[pool.labeled].indices)] = False
    degree = np.asarray(graph @ uncovered.astype(np.float32)).ravel()
    is_candidate = ~pool.labeled_mask
    rng = np.random.default_rng([seed, 106])
    picked, scores = [], []
    for _ in track(range(budget), "selecting (probcover)"):
        d = np.where(is_candidate, degree, -1.0)
        row = int(np.argmax(d))
        if d[row] <= 0.5:  # everything is covered: random among the remaining candidates
            row = int(rng.choice(np.flatnonzero(is_candidate)))
        ball = graph[row].indices
        new = ball[uncovered[ball]]
        scores.append(float(len(new)))
        if len(new):
            uncovered[new] = False
            degree -= np.asarray(graph[new].sum(0)).ravel()
        picked.append(row)
        is_candidate[row] = False
    info = {"delta": round(float(delta), 5), "covered": round(float(1 - uncovered.mean()), 4)}
    return Picked(np.asarray(picked, np.int64), score=np.asarray(scores, np.float32), info=info)
