"""How the loop gets a step's uint8 images: resident on the device, or read per batch.

In memory (the fast path, and the default whenever the data fits) the whole set is moved
to the device once and a batch is one gather there. Otherwise the images stay where they
are (a cache file on disk, or host memory) and each step reads just its batch, in sorted
row order for locality, and moves it to the device; both give the same batches.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from fewlabels.data.mapped import as_mapped, take_sorted

# Auto mode keeps data in memory up to this fraction of the free (device or host) memory.
MEMORY_FRACTION = 0.5


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
