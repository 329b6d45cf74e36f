"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022).

1. k-means on the L2-normalised features of every image (labeled and not) into
   ``labeled + budget`` clusters (at most ``max_clusters``), so there are at least
   ``budget`` clusters without a label.
2. Typicality of an image = 1 / (mean Euclidean distance to its ``k`` = 20 nearest
   neighbours within its cluster): high in dense regions.
3. Each pick goes to the cluster with the fewest labels so far (clusters smaller than
   ``min_cluster_size`` last, then the largest first) and takes its most typical
   unlabeled image. With clusters = labeled + budget, that is one pick per uncovered
   cluster. Score: the picked image's typicality.
"""

from __future__ import annotations

import numpy as np
import torch

from fewlabels.core.progress import track
from fewlabels.select.base import Picked, Pool, check_budget, kmeans, normalise

K_NEIGHBOURS = 20  # paper
MAX_CLUSTERS = 500  # paper's cap, beyond which picks share clusters
MIN_CLUSTER_SIZE = 5  # paper: smaller clusters are outliers


def typicality(x: np.ndarray, k: int = K_NEIGHBOURS, chunk: int = 2048) -> np.ndarray:
    """1 / mean distance to the ``k`` nearest other rows of ``x`` (k capped at len - 1)."""
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (t * t).sum(1)
    out = torch.empty(n)
    for s in range(0, n, chunk):
        d = (sq[s : s + chunk, None] + sq[None, :] - 2.0 * t[s : s + chunk] @ t.T).clamp_min_(0)
        d[torch.arange(len(d)), torch.arange(s, s + len(d))] = float("inf")  # not itself
        near = d.topk(k, dim=1, largest=False).values.sqrt_()
        out[s : s + chunk] = 1.0 / (near.mean(1) + 1e-8)
    return out.numpy()


def select(
    pool: Pool,
    budget: int,
    *,
    seed: int = 0,
    k: int = K_NEIGHBOURS,
    max_clusters: int = MAX_CLUSTERS,
    min_cluster_size: int = MIN_CLUSTER_SIZE,
) -> Picked:
    """The most typical unlabeled image of each of ``budget`` uncovered k-means clusters."""
    budget = check_budget(pool, budget)
    x = normalise(pool.features)
    n_clusters = min(len(pool.labeled) + budget, max_clusters, len(x))
    assign, _ = kmeans(x, n_clusters, seed)
    n_clusters = int(assign.max()) + 1
    sizes = np.bincount(assign, minlength=n_clusters)
    covered = np.bincount(assign[pool.labeled], minlength=n_clusters)
    uncovered = int((covered == 0).sum())
    labeled = pool.labeled_mask
    typ = np.zeros(len(x), np.float32)
    left: list[list[int]] = []  # each cluster's unlabeled rows, most typical first
    for c in track(range(n_clusters), "selecting (typiclust clusters)"):
        members = np.flatnonzero(assign == c)
        typ[members] = typicality(x[members], k) if len(members) else typ[members]
        free = members[~labeled[members]]
        left.append(free[np.argsort(-typ[free], kind="stable")].tolist())
    picked: list[int] = []
    for _ in range(budget):
        open_ = [c for c in range(n_clusters) if left[c]]
        c = min(open_, key=lambda c: (covered[c], sizes[c] < min_cluster_size, -sizes[c], c))
        picked.append(left[c].pop(0))
        covered[c] += 1
    index = np.asarray(picked, np.int64)
    info = {"clusters": n_clusters, "uncovered_clusters": uncovered}
    return Picked(index, score=typ[index], info=info)
