"""What every selection strategy sees (``Pool``) and returns (``Picked``), and shared helpers.

A pool is a feature matrix over every image that could be labeled or already is: the
already-labeled rows (``labeled``, with their ``labels``) and the candidates (the rest).
A strategy returns the candidate rows to send for labelling, in the order it chose them,
with an optional per-row score and predicted class (for the CSV sent to the labellers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from fewlabels.core.errors import ConfigError
from fewlabels.evaluate.probe import linear_probe


@dataclass
class Pool:
    """Features ``(N, D)`` of every image, the already-labeled rows and their labels."""

    features: np.ndarray
    labeled: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    num_classes: int = 0

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        self.labeled = np.asarray(self.labeled, dtype=np.int64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.features.ndim != 2:
            raise ConfigError(f"features must be (N, D), got shape {self.features.shape}")
        if len(self.labeled) != len(self.labels):
            raise ConfigError(f"{len(self.labeled)} labeled rows but {len(self.labels)} labels")
        if len(np.unique(self.labeled)) != len(self.labeled):
            raise ConfigError("a labeled row is listed twice")
        if len(self.labeled) and (self.labeled.min() < 0 or self.labeled.max() >= len(self)):
            raise ConfigError("labeled rows out of range")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def labeled_mask(self) -> np.ndarray:
        mask = np.zeros(len(self), bool)
        mask[self.labeled] = True
        return mask

    @property
    def candidates(self) -> np.ndarray:
        """Rows that may be picked (not labeled yet), ascending."""
        return np.flatnonzero(~self.labeled_mask)


@dataclass
class Picked:
    """Rows of the pool to label, in the order picked; optional score and predicted class."""

    index: np.ndarray
    score: np.ndarray | None = None
    predicted: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def check_budget(pool: Pool, budget: int) -> int:
    """``budget`` as an int, refused when non-positive or larger than the candidates."""
    if isinstance(budget, bool) or int(budget) != budget or budget <= 0:
        raise ConfigError(f"budget must be a positive whole number of images, got {budget!r}")
    n = len(pool.candidates)
    if budget > n:
        raise ConfigError(f"budget {budget} is more than the {n} unlabeled images in the pool")
    return int(budget)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (cosine geometry, as the SSL losses use)."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), len(b))``, clipped at 0."""
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    d = (ta * ta).sum(1)[:, None] + (tb * tb).sum(1)[None, :] - 2.0 * ta @ tb.T
    return d.clamp_min_(0).numpy()


def kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row, centres) from scikit-learn's k-means, seeded.

    Full k-means up to 50 clusters, mini-batch k-means beyond (as the TypiClust authors do).
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = max(1, min(int(k), len(x)))
    if k <= 50:
        km = KMeans(n_clusters=k, n_init=3, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=seed)
    assign = km.fit_predict(x)
    return assign.astype(np.int64), km.cluster_centers_.astype(np.float32)


def classifier_probs(pool: Pool, seed: int, what: str) -> np.ndarray:
    """Class probabilities ``(N, K)`` of a logistic-regression probe fitted on the labeled rows.

    The probe is ``evaluate.probe.linear_probe`` (standardised features, weight decay picked
    on a held-out fifth of the labels). Needs labels of at least two classes.
    """
    classes = np.unique(pool.labels)
    if len(classes) < 2:
        raise ConfigError(
            f"{what} needs a classifier trained on labels of at least 2 classes; there are "
            f"{len(pool.labels)} labels of {len(classes)} class(es): start with random or "
            "typiclust, add the labels, then use it"
        )
    k = max(pool.num_classes, int(classes.max()) + 1)
    x = torch.from_numpy(pool.features)
    w, b, _ = linear_probe(x[pool.labeled], torch.from_numpy(pool.labels), k, seed=seed)
    return torch.softmax(x @ w.T + b, dim=1).numpy()
