"""Stable embedding pictures: each t-SNE panel starts from the previous panel's layout and
is aligned to it, so clusters stay in place between panels instead of jumping or rotating."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orth
from scipy.spatial import procrustes

from fewlabels.evaluate.embedding import align_to, plot_panels, project_sequence, tsne_2d

torch.set_num_threads(1)


def _features(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six clusters in 20 dimensions, and nearly the same features in another basis (as a
    network's features after a few more steps: same geometry, other coordinates)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(6), 30)
    f1 = rng.normal(scale=4, size=(6, 20))[labels] + rng.normal(size=(len(labels), 20))
    f2 = (f1 + 0.05 * rng.normal(size=f1.shape)) @ orth(rng.normal(size=(20, 20)))
    return f1, f2, labels


def _moved(a: np.ndarray, b: np.ndarray) -> float:
    """How far the points moved between two pictures, relative to the picture's spread."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(a - a.mean(0)))


def test_consecutive_panels_of_nearly_identical_features_keep_their_layout():
    f1, f2, _ = _features()
    l1, l2 = project_sequence([f1, f2], progress=False)
    i1, i2 = tsne_2d(f1, seed=0), tsne_2d(f2, seed=0)
    seq_disparity = procrustes(l1, l2)[2]
    ind_disparity = procrustes(i1, i2)[2]
    assert seq_disparity < 0.01 and seq_disparity < ind_disparity / 5
    # and without any fitting afterwards: the points stay where they were
    assert _moved(l1, l2) < 0.25
    assert _moved(i1, i2) > 0.5  # independent fits turn and mirror the picture
    assert np.allclose(l1, tsne_2d(f1, seed=0))  # the first panel is the usual fit


def test_align_to_undoes_a_rotation_reflection_and_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(50, 2))
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    turned = (ref @ rot) * np.array([-1.0, 1.0]) + np.array([5.0, -3.0])
    assert np.allclose(align_to(turned, ref), ref, atol=1e-9)


def test_panels_of_other_points_are_fitted_afresh():
    f1, _, _ = _features()
    f3 = _features(seed=3)[0][:100]
    _, l3 = project_sequence([f1, f3], progress=False)
    assert l3.shape == (100, 2)
    assert np.allclose(l3, tsne_2d(f3, seed=0))  # another set of points: no start, no turn
    same = project_sequence([f1, f1], progress=False, same_points=[False, False])
    assert np.allclose(same[1], tsne_2d(f1, seed=0))


def test_plot_panels_draws_the_aligned_sequence(tmp_path):
    f1, f2, labels = _features()
    points = [
        {"name": f"step_{s:06d}", "features": f, "labels": labels,
         "class_names": [str(c) for c in range(6)], "step": s, "time_s": s / 10,
         "knn_acc": 0.5}
        for s, f in ((10, f1), (20, f2))
    ]  # fmt: skip
    paths = plot_panels(points, tmp_path, plot="tsne", progress=False)
    assert [p.name for p in paths] == ["tsne_step_000010.png", "tsne_step_000020.png", "tsne.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(Exception, match="unknown plot 'pca'"):
        plot_panels(points, tmp_path, plot="pca")
