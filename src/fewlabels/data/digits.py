"""scikit-learn's bundled 8x8 handwritten digits: no files, no cache."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from fewlabels.data.imageset import Dataset, ImageSet


def load_digits_dataset() -> Dataset:
    """1,797 grey 8x8 digits as uint8 0..255, split 80/20 stratified with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=labels, random_state=0)
    names = [str(i) for i in range(10)]

    def part(rows: np.ndarray) -> ImageSet:
        rows = np.sort(rows)
        return ImageSet(
            torch.from_numpy(np.ascontiguousarray(images[rows])),
            torch.from_numpy(labels[rows]),
            list(names),
            [f"digits:{i}" for i in rows.tolist()],
        )

    fp = hashlib.sha256(b"digits-v1" + images.tobytes() + labels.tobytes()).hexdigest()
    return Dataset("digits", part(train_idx), part(test_idx), None, fp)
