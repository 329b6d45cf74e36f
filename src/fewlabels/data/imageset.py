"""The one in-memory image type: uint8 NCHW tensor + labels + class names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from fewlabels.core.errors import DataError
from fewlabels.data import mapped

UNLABELED = -1


@dataclass
class ImageSet:
    """Images as a uint8 (N, C, H, W) tensor with int64 labels (``-1`` = unlabeled).

    Large subsets of cached images are ``data.mapped.MappedRows`` (rows read from the cache
    file on demand) rather than copies; they behave as tensors.

    ``ids`` optionally names each image (a file path or ``source:index``) so that
    predictions and label requests can point back to it.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    ids: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} "
                f"with shape {tuple(self.images.shape)}"
            )
        if self.images.shape[1] not in (1, 3):
            raise DataError(f"images must have 1 or 3 channels, got {self.images.shape[1]}")
        self.labels = self.labels.to(torch.int64)
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )
        if len(self.labels) and (
            int(self.labels.min()) < UNLABELED or int(self.labels.max()) >= len(self.class_names)
        ):
            raise DataError(
                f"labels out of range: found {int(self.labels.min())}..{int(self.labels.max())} "
                f"for {len(self.class_names)} classes"
            )
        if self.ids is not None and len(self.ids) != len(self.labels):
            raise DataError(f"{len(self.labels)} images but {len(self.ids)} ids")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def is_labeled(self) -> torch.Tensor:
        return self.labels != UNLABELED

    def subset(self, index: torch.Tensor | Sequence[int]) -> ImageSet:
        """A new ImageSet with the rows in ``index`` (in that order); a large subset of
        cached images stays on disk (see ``data.mapped``)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        ids = [self.ids[i] for i in idx.tolist()] if self.ids is not None else None
        lazy = mapped.lazy_rows(self.images, idx)
        images = lazy if lazy is not None else self.images[idx]
        return ImageSet(images, self.labels[idx], list(self.class_names), ids)

    def unlabel(self) -> ImageSet:
        """The same images with every label hidden."""
        return ImageSet(
            self.images, torch.full_like(self.labels, UNLABELED), list(self.class_names), self.ids
        )

    def counts(self) -> list[int]:
        """Number of labeled images per class."""
        lab = self.labels[self.labels >= 0]
        return torch.bincount(lab, minlength=self.num_classes).tolist()

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device), self.class_names, self.ids)

    @staticmethod
    def concat(parts: Sequence[ImageSet]) -> ImageSet:
        """Stack sets with the same classes and image shape."""
        parts = [p for p in parts if len(p)] or list(parts[:1])
        if not parts:
            raise DataError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.images.shape[1:] != first.images.shape[1:]:
                raise DataError(
                    f"image shapes differ: {tuple(first.images.shape[1:])} vs "
                    f"{tuple(p.images.shape[1:])}"
                )
        ids = None
        if all(p.ids is not None for p in parts):
            ids = [i for p in parts for i in p.ids]  # type: ignore[union-attr]
        lazy = mapped.lazy_concat([p.images for p in parts])
        return ImageSet(
            lazy if lazy is not None else torch.cat([p.images for p in parts]),
            torch.cat([p.labels for p in parts]),
            list(first.class_names),
            ids,
        )


@dataclass
class Dataset:
    """What a data source yields: a labeled training pool, and optional test and unlabeled sets.

    ``train`` may itself hold unlabeled rows (label -1); ``unlabeled`` holds images that come
    without labels by construction (STL-10's unlabeled split, a folder of unlabeled images).
    """

    name: str
    train: ImageSet
    test: ImageSet | None = None
    unlabeled: ImageSet | None = None
    fingerprint: str = ""

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names
