"""A small DCGAN-style generator and discriminator, and the two GAN losses.

Sized for 8-128 px images (any power of two from 8), so a CPU can train one in minutes:

- ``Generator``: z (N, z_dim) -> linear to 4x4 -> transposed-conv (4x4, stride 2) blocks
  that double the size and halve the width (BatchNorm without running statistics, so
  training and sampling both normalise by the batch, and the EMA copy needs no buffers)
  -> 3x3 conv -> tanh, images in [-1, 1].
- ``Discriminator``: a 3x3 conv, then 4x4 stride-2 conv blocks that halve the size and
  double the width, LeakyReLU(0.2), spectral normalisation on every layer (Miyato et al.
  2018), a linear score.
- Losses: ``hinge`` (Lim & Ye 2017; Miyato et al. 2018) and ``ns``, the non-saturating
  loss of Goodfellow et al. 2014.

>>> g, d = Generator(z_dim=16, width=8, image_size=16), Discriminator(width=8, image_size=16)
>>> d(g(torch.randn(2, 16))).shape
torch.Size([2])
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from fewlabels.core.errors import ConfigError
from fewlabels.core.progress import track

LOSSES = ("hinge", "ns")


def check_size(size: int) -> int:
    """An image size the networks support: a power of two from 8 to 128."""
    if size < 8 or size > 128 or size & (size - 1):
        raise ConfigError(
            f"image size {size} is not supported by the GAN: use 8, 16, 32, 64 or 128 "
            "(`size` resizes the training images)"
        )
    return size


def _widths(width: int, image_size: int) -> list[int]:
    """Channels at 4x4, 8x8, ..., image_size (widest at 4x4, capped at 8x ``width``)."""
    n = int(math.log2(image_size // 4))
    return [width * min(8, 2 ** (n - i)) for i in range(n + 1)]


class Generator(nn.Module):
    """z -> image in [-1, 1]; ``config`` rebuilds it (``Generator(**config)``)."""

    def __init__(
        self, z_dim: int = 128, width: int = 32, image_size: int = 32, channels: int = 3
    ) -> None:
        super().__init__()
        check_size(image_size)
        if z_dim < 1 or width < 1 or channels not in (1, 3):
            raise ConfigError(f"bad generator shape: z_dim {z_dim}, width {width}, {channels} ch")
        self.config: dict[str, Any] = {
            "z_dim": z_dim,
            "width": width,
            "image_size": image_size,
            "channels": channels,
        }
        self.z_dim = z_dim
        ws = _widths(width, image_size)
        self.fc = nn.Linear(z_dim, ws[0] * 16)
        self.bn0 = nn.BatchNorm2d(ws[0], track_running_stats=False)
        blocks: list[nn.Module] = []
        for cin, cout in itertools.pairwise(ws):
            blocks += [
                nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout, track_running_stats=False),
                nn.ReLU(inplace=True),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(ws[-1], channels, 3, padding=1)
        self.start = ws[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.start, 4, 4)
        x = F.relu(self.bn0(x)).contiguous(memory_format=torch.channels_last)
        return torch.tanh(self.out(self.blocks(x)))


class Discriminator(nn.Module):
    """Image -> one real-vs-fake score per image (N,)."""

    def __init__(self, width: int = 32, image_size: int = 32, channels: int = 3) -> None:
        super().__init__()
        check_size(image_size)
        ws = _widths(width, image_size)[::-1]  # narrow at full size, widest at 4x4
        self.config: dict[str, Any] = {
            "width": width,
            "image_size": image_size,
            "channels": channels,
        }
        layers: list[nn.Module] = [
            spectral_norm(nn.Conv2d(channels, ws[0], 3, padding=1)),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for cin, cout in itertools.pairwise(ws):
            layers += [
                spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.body = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(ws[-1] * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(x).flatten(1)).squeeze(1)


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss from its scores on real and on generated images."""
    real, fake = real.float(), fake.float()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's scores on generated images."""
    fake = fake.float()
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 [0, 255] (rounded, clamped)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 in [-1, 1]."""
    return x.float().mul(2.0 / 255.0).sub(1.0)


@torch.no_grad()
def sample(
    generator: Generator,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: Any = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """``n`` images as uint8 (n, C, H, W) on the CPU; deterministic for a seed and batch size.

    The generator normalises by batch statistics, so images are drawn in full batches.
    ``progress``: a bar with the time left (None: when stderr is a terminal).
    """
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    was = generator.training
    generator.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    try:
        for start in track(range(0, n, batch_size), "sampling", enabled=progress):
            # always a full batch (the batch statistics then do not depend on n)
            z = torch.randn(batch_size, generator.z_dim, generator=g, device=device)
            out.append(to_uint8(generator(z))[: n - start].cpu())
    finally:
        generator.train(was)
    if not out:
        c, s = generator.config["channels"], generator.config["image_size"]
        return torch.empty(0, c, s, s, dtype=torch.uint8)
    return torch.cat(out)
