"""Make the two stand-ins for other users' data that the defaults matrix runs on.

- ``gray28.npz``: CIFAR-10 as 28x28 grayscale (ITU-R 601 luma, then an antialiased resize),
  the training batches present as training images and ``test_batch`` as the test set.
- ``tiny100.npz``: the first 100 classes (``wnids.txt`` order) of a Tiny-ImageNet folder read
  at 32x32, training images as training images and the validation images as the test set.

Both are read with fewlabels' own loaders, as a user's data would be, and written where
``--out`` says (default ``runs/defaults-data``, outside version control)::

    python benchmarks/defaults/make_variants.py --cifar10 ../shared/data/cifar10 \
        --tiny ../shared/data/tiny-imagenet-200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import fewlabels
from fewlabels.data.imageset import ImageSet

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def gray(images: torch.Tensor, side: int) -> np.ndarray:
    """uint8 (N, 3, H, W) -> uint8 (N, side, side) luma, resized with antialiasing."""
    y = (images.float() * LUMA).sum(1, keepdim=True)
    y = F.interpolate(y, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()


def first_classes(s: ImageSet, k: int) -> tuple[np.ndarray, np.ndarray]:
    keep = (s.labels >= 0) & (s.labels < k)
    return s.images[keep].numpy(), s.labels[keep].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar10", required=True, help="folder of the CIFAR-10 binary batches")
    ap.add_argument("--tiny", required=True, help="a tiny-imagenet-200 folder")
    ap.add_argument("--out", default="runs/defaults-data")
    ap.add_argument("--classes", type=int, default=100, help="classes kept from Tiny-ImageNet")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    c = fewlabels.load(f"cifar10:{a.cifar10}")
    np.savez(
        out / "gray28.npz",
        images=gray(c.train.images, 28),
        labels=c.train.labels.numpy(),
        test_images=gray(c.test.images, 28),
        test_labels=c.test.labels.numpy(),
        class_names=np.array(c.class_names),
    )
    print(f"{out / 'gray28.npz'}: {len(c.train)} training, {len(c.test)} test images, 28x28x1")

    t = fewlabels.load(f"tinyimagenet:{a.tiny},size=32")
    x, y = first_classes(t.train, a.classes)
    tx, ty = first_classes(t.test, a.classes)
    np.savez(
        out / "tiny100.npz",
        images=x,
        labels=y,
        test_images=tx,
        test_labels=ty,
        class_names=np.array(t.class_names[: a.classes]),
    )
    print(f"{out / 'tiny100.npz'}: {len(x)} training, {len(tx)} test images, 32x32x3")


if __name__ == "__main__":
    main()
