"""How the loop gets a step's uint8 images: resident on the device, or read per batch.

In memory (the fast path, and the default whenever the data fits) the whole set is moved
to the device once and a batch is one gather there. Otherwise the images stay where they
are (a cache file on disk, or host memory) and each step reads just its batch, in sorted
row order for locality, and moves it to the device; both give the same batches.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from fewlabels.augment import build_policy
from fewlabels.core.device import DistInfo
from fewlabels.core.errors import ConfigError
from fewlabels.data.imageset import ImageSet
from fewlabels.data.mapped import as_mapped, take_sorted
from fewlabels.methods.base import Batch, Method
from fewlabels.train.config import TrainConfig
from fewlabels.train.sampling import IndexStream

# Auto mode keeps data in memory up to this fraction of the free (device or host) memory.
MEMORY_FRACTION = 0.5

# The one environment variable the training library reads: 1 (or any value but 0 / no)
# keeps the training images on the device, 0 or no reads each batch; unset: by size.
# It lets a study worker's runs be set without code; an explicit setting wins over it.
DATA_IN_MEMORY_ENV = "FEWLABELS_DATA_IN_MEMORY"


def data_in_memory_from_env() -> bool | None:
    """The ``FEWLABELS_DATA_IN_MEMORY`` setting: True, False, or None when unset/empty."""
    value = os.environ.get(DATA_IN_MEMORY_ENV)
    if not value:
        return None
    return value.lower() not in ("0", "no")


def available_memory(device: torch.device) -> int:
    """Free bytes where the images would live: the GPU's free memory, or MemAvailable."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def resolve_in_memory(setting: bool | None, device: torch.device, *images: Any) -> bool:
    """``setting`` if given; else in memory unless the images would take more than
    ``MEMORY_FRACTION`` of the free memory (on the CPU: only images not yet in memory)."""
    if setting is not None:
        return setting
    present = [x for x in images if x is not None]
    if device.type != "cuda":
        present = [x for x in present if as_mapped(x) is not None]
    need = sum(int(x.numel()) for x in present)
    return need == 0 or need <= MEMORY_FRACTION * available_memory(device)


class ImageFeed:
    """uint8 (N, C, H, W) images for the loop; ``take(idx)`` gives the rows on the device."""

    def __init__(self, images: Any, device: torch.device, in_memory: bool) -> None:
        self.device = device
        self.in_memory = in_memory
        self.images = images.to(device) if in_memory else images
        self.shape = self.images.shape

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (host indices, in that order) as a tensor on the device."""
        if self.in_memory:
            return self.images[idx.to(self.device)]
        x = take_sorted(self.images, idx.cpu())
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)


@dataclass
class TrainingFeeds:
    """A run's labeled and unlabeled feeds: seeded index streams, images on the device,
    and the method's augmentation policies; ``draw`` makes a step's ``Batch``."""

    lab_stream: IndexStream | None
    lab_imgs: ImageFeed | None
    lab_y: torch.Tensor | None
    unl_stream: IndexStream | None
    unl_imgs: ImageFeed | None
    lab_pols: list[Any]
    unl_pols: list[Any]
    primary: IndexStream  # the stream whose batch is ``train.batch_size`` (Method.primary)
    device: torch.device
    dist: DistInfo

    def draw(self, step: int, gen: torch.Generator, prog: float) -> Batch:
        """Step ``step``'s batch, augmented with ``gen`` (this rank's slice under DDP)."""
        batch = Batch(step=step, progress=prog)
        r, w, dev = self.dist.rank, self.dist.world_size, self.device
        if self.lab_stream is not None and self.lab_imgs is not None and self.lab_y is not None:
            idx = self.lab_stream.indices(step, r, w)  # host indices: no device round trip
            x = self.lab_imgs.take(idx)
            batch.labeled = [p(x, gen, prog) for p in self.lab_pols]
            batch.labels = self.lab_y[idx.to(dev)]
        if self.unl_stream is not None and self.unl_imgs is not None:
            uidx = self.unl_stream.indices(step, r, w)
            ux = self.unl_imgs.take(uidx)
            batch.unlabeled = [p(ux, gen, prog) for p in self.unl_pols]
            batch.unlabeled_index = uidx.to(dev)
        return batch


def check_inputs(method: Method, labeled: ImageSet | None, unlabeled: ImageSet | None) -> None:
    """Refuse a method whose views need images that were not given."""
    if method.views.get("labeled") and (labeled is None or len(labeled) == 0):
        raise ConfigError(f"method {method.name!r} needs labeled images and none were given")
    if method.views.get("unlabeled") and (unlabeled is None or len(unlabeled) == 0):
        raise ConfigError(
            f"method {method.name!r} needs unlabeled images and the unlabeled pool is empty"
        )


def batch_sizes(method: Method, cfg: TrainConfig, world: int) -> tuple[int, int, bool]:
    """Per-step labeled and unlabeled batch sizes (global), and whether the unlabeled
    stream is the primary one (see ``Method.primary``: which stream batch_size counts)."""
    uses_lab = bool(method.views.get("labeled"))
    uses_unl = bool(method.views.get("unlabeled"))
    bs = cfg.batch_size
    ubs = round(bs * cfg.unlabeled_batch_ratio) if uses_lab else bs
    lbs = bs
    by_unl = uses_lab and uses_unl and method.primary == "unlabeled"
    if by_unl:
        ubs = bs
        lbs = max(world, round(bs / cfg.unlabeled_batch_ratio))
        lbs -= lbs % world
    ubs -= ubs % world
    return lbs, ubs, by_unl


def build_feeds(
    method: Method,
    cfg: TrainConfig,
    labeled: ImageSet | None,
    unlabeled: ImageSet | None,
    *,
    device: torch.device,
    dist: DistInfo,
    in_memory: bool | None,
) -> TrainingFeeds:
    """The feeds ``method`` draws from (its views decide which sets it uses)."""
    lab = labeled if method.views.get("labeled") else None
    unl = unlabeled if method.views.get("unlabeled") else None
    lbs, ubs, by_unl = batch_sizes(method, cfg, dist.world_size)
    resident = resolve_in_memory(
        in_memory,
        device,
        lab.images if lab is not None else None,
        unl.images if unl is not None else None,
    )
    lab_imgs = ImageFeed(lab.images, device, resident) if lab is not None else None
    unl_imgs = ImageFeed(unl.images, device, resident) if unl is not None else None
    lab_stream = IndexStream(len(lab), lbs, cfg.seed, 1) if lab is not None else None
    unl_stream = IndexStream(len(unl), ubs, cfg.seed, 2) if unl is not None else None
    primary = (unl_stream or lab_stream) if by_unl else (lab_stream or unl_stream)
    assert primary is not None
    size = (lab_imgs if lab_imgs is not None else unl_imgs).shape[-1]  # type: ignore[union-attr]
    return TrainingFeeds(
        lab_stream,
        lab_imgs,
        lab.labels.to(device) if lab is not None else None,
        unl_stream,
        unl_imgs,
        [build_policy(p, image_size=size) for p in method.views.get("labeled", ())],
        [build_policy(p, image_size=size) for p in method.views.get("unlabeled", ())],
        primary,
        device,
        dist,
    )
