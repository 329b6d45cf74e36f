"""Selection strategies on small synthetic features with hand-checkable answers."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabels.core.errors import ConfigError
from fewlabels.select import STRATEGIES, select, strategy
from fewlabels.select.base import Pool
from fewlabels.select.probcover import estimate_delta
from fewlabels.select.typiclust import typicality

D = 12


def _cluster(direction: int) -> np.ndarray:
    """A symmetric blob around unit vector e_direction: the centre first, then 2 rings of 8."""
    centre = np.zeros(D)
    centre[direction] = 1.0
    # two orthogonal directions in which the rings lie
    u, v = np.zeros(D), np.zeros(D)
    u[(direction + 3) % D], v[(direction + 4) % D] = 1.0, 1.0
    rows = [centre]
    for radius in (0.05, 0.1):
        for a in np.arange(8) * np.pi / 4:
            rows.append(centre + radius * (np.cos(a) * u + np.sin(a) * v))
    return np.asarray(rows)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Three blobs of 17 (around e0, e1, e2), labels 0/1/2, and the centre rows."""
    x = np.concatenate([_cluster(d) for d in range(3)])
    y = np.repeat(np.arange(3), 17)
    return x.astype(np.float32), y, [0, 17, 34]


def _outliers(*dirs: int) -> np.ndarray:
    out = np.zeros((len(dirs), D), np.float32)
    for i, d in enumerate(dirs):
        out[i, d] = 1.0
    return out


def test_registry_names_and_unknown_strategy():
    assert set(STRATEGIES) == {
        "random", "class_balanced", "representative", "typiclust", "probcover",
        "entropy", "margin", "coreset",
    }  # fmt: skip
    assert strategy("Core-Set").name == "coreset"
    assert strategy("uncertainty").name == "entropy"
    with pytest.raises(ConfigError, match="unknown selection strategy 'nope'; choose from"):
        strategy("nope")


def test_typicality_is_highest_at_a_blob_centre(blobs):
    x = blobs[0]
    t = typicality(x[:17], k=20)  # k capped at 16
    assert int(np.argmax(t)) == 0
    # by hand: the centre's 16 neighbours are 8 at 0.05 and 8 at 0.1
    assert t[0] == pytest.approx(1 / 0.075, rel=1e-4)


def test_typiclust_picks_the_dense_blob_centres_not_outliers(blobs):
    x, _, centres = blobs
    x = np.concatenate([x, _outliers(9, 10)])  # two isolated images
    got = select(Pool(x), "typiclust", 3, seed=0)
    assert sorted(got.index.tolist()) == centres
    # one blob already labeled: clusters = 1 + 2, and the picks are the other two centres
    got = select(Pool(x, labeled=[17], labels=[1]), "typiclust", 2, seed=0)
    assert sorted(got.index.tolist()) == [0, 34]
    assert got.info["clusters"] == 3


def test_coreset_picks_the_far_points(blobs):
    x, _, centres = blobs
    x = np.concatenate([x, _outliers(9, 10)])
    got = select(Pool(x, labeled=centres, labels=[0, 1, 2]), "coreset", 2)
    assert sorted(got.index.tolist()) == [51, 52]
    assert got.score[0] == pytest.approx(np.sqrt(2), rel=1e-5)


def test_representative_picks_the_point_nearest_each_centre(blobs):
    x, _, centres = blobs
    got = select(Pool(x), "representative", 3, seed=0)
    assert sorted(got.index.tolist()) == centres


def test_probcover_covers_each_blob_with_one_pick(blobs):
    x, _, centres = blobs
    got = select(Pool(x), "probcover", 3, delta=0.2)
    assert sorted(got.index.tolist()) == centres  # a centre's ball holds its whole blob
    assert got.score.tolist() == [17, 17, 17]
    assert got.info["covered"] == 1.0
    # a radius between the rings: the centre's ball holds itself and the inner ring
    got = select(Pool(x), "probcover", 1, delta=0.07)
    assert got.index.tolist() == [0] and got.score.tolist() == [9]
    # the estimated radius reaches across a blob but not to the next (sqrt 2 away)
    delta = estimate_delta(x, 3)
    assert 0.2 < delta < np.sqrt(2)
    got = select(Pool(x, num_classes=3), "probcover", 3)
    assert sorted(set(got.index // 17)) == [0, 1, 2]


def test_class_balanced_evens_out_the_predicted_classes(blobs):
    x, y, _ = blobs
    labeled = [1, 2, 3, 4, 5, 6, 17, 18, 34, 35]  # 6 of class 0, 2 of class 1, 2 of class 2
    got = select(Pool(x, labeled, y[labeled], 3), "class_balanced", 8, seed=0)
    assert got.predicted.tolist() == [1, 2, 1, 2, 1, 2, 1, 2]  # the rarest class first
    counts = np.bincount(np.concatenate([y[labeled], y[got.index]]), minlength=3)
    assert counts.tolist() == [6, 6, 6]
    assert not set(got.index.tolist()) & set(labeled)


def _line_pool():
    """Two labeled classes at x = -1 and +1; candidates along the line between them."""
    rng = np.random.default_rng(0)
    lab = np.concatenate([np.full(10, -1.0), np.full(10, 1.0)])
    cand = np.array([-0.9, -0.5, 0.03, 0.5, 0.95])
    xs = np.concatenate([lab, cand])
    feats = np.stack([xs, 0.01 * rng.standard_normal(len(xs))], 1)
    return Pool(feats, np.arange(20), np.repeat([0, 1], 10), 2)


@pytest.mark.parametrize("name", ["entropy", "margin"])
def test_uncertainty_picks_the_candidate_on_the_boundary(name):
    pool = _line_pool()
    got = select(pool, name, 1)
    assert got.index.tolist() == [22]  # x = 0.03
    both = select(pool, name, 3)
    assert sorted(both.index.tolist()) == [21, 22, 23]  # the three middle ones


def test_strategies_that_need_labels_refuse_a_cold_start(blobs):
    x, _, _ = blobs
    for name in ("entropy", "margin", "class_balanced"):
        with pytest.raises(ConfigError, match="needs a classifier trained on labels"):
            select(Pool(x), name, 2)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_deterministic_and_picks_only_candidates(name, blobs):
    x, y, _ = blobs
    rng = np.random.default_rng(1)
    x = x + 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    labeled = [1, 18, 35]
    pool = Pool(x, labeled, y[labeled], 3)
    a = select(pool, name, 5, seed=3)
    b = select(pool, name, 5, seed=3)
    assert a.index.tolist() == b.index.tolist()
    assert len(set(a.index.tolist())) == 5 and not set(a.index.tolist()) & set(labeled)


def test_random_depends_on_the_seed_and_budget_errors(blobs):
    x, _, _ = blobs
    pool = Pool(x)
    seeds = {tuple(select(pool, "random", 5, seed=s).index.tolist()) for s in range(4)}
    assert len(seeds) == 4
    with pytest.raises(ConfigError, match="more than the 51 unlabeled"):
        select(pool, "random", 52)
    with pytest.raises(ConfigError, match="positive whole number"):
        select(pool, "typiclust", 0)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        select(pool, "random", 2, delta=0.1)
