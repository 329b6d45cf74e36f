"""The one in-memory image type: uint8 NCHW tensor + labels + class names."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewlabels.core.errors import DataError
from fewlabels.data import mapped

UNLABELED = -1

# ``fewlabels.data.sources`` (which imports this module) sets this to ``load_dataset``, so
# that ``ImageSet.from_folder`` reads folders the one way data comes in
_load_spec: Callable[..., Dataset] | None = None


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

    @classmethod
    def from_numpy(
        cls,
        images: Any,
        labels: Any = None,
        class_names: Sequence[str] | None = None,
    ) -> ImageSet:
        """An ImageSet from a uint8 array (or tensor) of images, shaped (N, H, W),
        (N, H, W, C) or (N, C, H, W) with 1 or 3 channels.

        ``labels``: class indices (``-1`` = unlabeled) or class names, or None (all
        unlabeled). ``class_names`` defaults to the sorted names given as labels, or to
        ``"0".."K-1"`` for index labels.
        """
        x = _as_nchw(images)
        y, names = _labels_and_names(labels, class_names, len(x))
        return cls(x, y, names, [f"array:{i}" for i in range(len(x))])

    @classmethod
    def from_folder(
        cls, path: str | Path, *, size: int | None = None, strict: bool = False
    ) -> ImageSet:
        """The images of a folder with one sub-folder per class (``folder:PATH``), decoded
        once and cached like every data source; ``size`` resizes them to ``size`` pixels."""
        assert _load_spec is not None  # set when fewlabels.data is imported
        spec = f"folder:{path}" + (f",size={size}" if size is not None else "")
        return _load_spec(spec, strict=strict).train

    def describe(self) -> str:
        """``in-memory ImageSet (N images, CxHxW, K classes)``."""
        c, (h, w) = self.channels, self.image_size
        return f"in-memory ImageSet ({len(self)} images, {c}x{h}x{w}, {self.num_classes} classes)"

    def fingerprint(self) -> str:
        """A sha256 of the images, labels and class names (identical data, identical hash);
        read in chunks of rows, so images kept on disk are never loaded whole."""
        h = hashlib.sha256(b"imageset-v1")
        h.update(repr((tuple(self.images.shape), list(self.class_names))).encode())
        for a in range(0, len(self), 4096):
            rows = self.images[a : a + 4096].cpu().contiguous()
            h.update(rows.numpy().tobytes())
        h.update(self.labels.cpu().numpy().tobytes())
        return h.hexdigest()

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
    # the data spec it was loaded from (``load_dataset``); None for in-memory data
    spec: str | None = None

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @classmethod
    def from_sets(
        cls,
        train: ImageSet,
        test: ImageSet | None = None,
        unlabeled: ImageSet | None = None,
        *,
        name: str | None = None,
    ) -> Dataset:
        """Wrap in-memory ImageSets as a Dataset (a labeled pool, optional test set and
        images without labels), named by ``describe`` and fingerprinted by content."""
        for what, part in (("test", test), ("unlabeled", unlabeled)):
            if part is None:
                continue
            if part.images.shape[1:] != train.images.shape[1:]:
                raise DataError(
                    f"{what} images are {tuple(part.images.shape[1:])}, training images are "
                    f"{tuple(train.images.shape[1:])}"
                )
            if what == "test" and part.class_names != train.class_names:
                raise DataError(
                    f"the test set's classes ({', '.join(part.class_names[:5])}...) differ "
                    f"from the training set's ({', '.join(train.class_names[:5])}...)"
                )
        if unlabeled is not None:
            unlabeled = ImageSet(
                unlabeled.images,
                torch.full_like(unlabeled.labels, UNLABELED),
                list(train.class_names),
                unlabeled.ids,
            )
        h = hashlib.sha256(b"dataset-v1")
        for part in (train, test, unlabeled):
            h.update(part.fingerprint().encode() if part is not None else b"-")
        name = name or train.describe() + "".join(
            f" + {len(part)} {what}"
            for what, part in (("unlabeled", unlabeled), ("test", test))
            if part is not None
        )
        return cls(name, train, test, unlabeled, h.hexdigest())

    def describe(self) -> str:
        """The data spec it came from, or a description of in-memory data."""
        return self.spec if self.spec is not None else self.name


def _as_nchw(images: Any) -> torch.Tensor:
    """A uint8 (N, C, H, W) tensor from an (N, H, W), (N, H, W, C) or (N, C, H, W) array."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.dtype != torch.uint8:
        raise DataError(
            f"images must be uint8 (0-255), got {str(x.dtype).replace('torch.', '')}; "
            "convert them first, e.g. (x * 255).round().astype('uint8') for [0, 1] floats"
        )
    if x.dim() == 3:
        x = x[:, None]
    elif x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    elif x.dim() != 4:
        raise DataError(
            f"images must be shaped (N, H, W), (N, H, W, C) or (N, C, H, W); got {tuple(x.shape)}"
        )
    return x.contiguous()


def _labels_and_names(
    labels: Any, class_names: Sequence[str] | None, n: int
) -> tuple[torch.Tensor, list[str]]:
    """int64 labels (``-1`` = unlabeled) and the class names, from indices or names."""
    if labels is None:
        return torch.full((n,), UNLABELED, dtype=torch.int64), list(class_names or [])
    arr = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.dtype.kind in "USO":  # class names
        given = [str(v) for v in arr.tolist()]
        names = list(class_names) if class_names is not None else sorted(set(given))
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted(set(given) - set(index))
        if unknown:
            raise DataError(f"labels name classes not in class_names: {', '.join(unknown[:5])}")
        return torch.tensor([index[v] for v in given], dtype=torch.int64), names
    if arr.dtype.kind not in "iu":
        raise DataError(f"labels must be whole numbers or class names, got {arr.dtype}")
    y = torch.from_numpy(arr.astype(np.int64))
    if class_names is None:
        top = int(y.max()) + 1 if len(y) else 0
        class_names = [str(k) for k in range(top)]
    return y, list(class_names)
