"""Autoencoder and denoising autoencoder (report 000; Vincent et al. 2008 for the DAE).

The encoder is the run's backbone (``network.features``); a small transposed-convolution
decoder maps the feature vector back to the image, and the loss is the mean squared error
against the un-corrupted [0, 1] image. The denoising autoencoder reconstructs the clean
image from a corrupted copy: Gaussian pixel noise and dropout (masking noise, pixels set
to 0). Both use the ``flips`` policy (horizontal and vertical flips), report 000's
augmentation. The corruption is part of the loss's definition, so it lives here, drawn
from the global RNG that the loop seeds from ``(seed, step, rank)``; its settings are
method options. ``augment="denoise"`` (flip + noise, returning (noisy, clean)) also works:
its noise then comes on top of ``noise_std``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.heads import full_precision
from fewlabels.models import Network

DEFAULTS = {
    # Our choice: 64 channels on the smallest map, halving per x2 upsampling (at least 16):
    # at 32 px the decoder costs about half the ConvNet encoder's multiply-adds.
    "decoder_width": 64,
    # Report 000 names Gaussian noise and dropout without values; 0.1 matches the
    # `denoise` policy's noise and the ConvNet's Dropout2d rate.
    "noise_std": 0.1,
    "drop_p": 0.1,
}


def decoder_plan(image_size: int) -> tuple[int, int]:
    """``(start_side, upsamplings)``: the fewest x2 steps from a map of side <= 4 that
    reach ``image_size`` (the output is cropped when it overshoots, e.g. 28 -> 32 -> 28)."""
    if image_size < 1:
        raise ConfigError(f"image size must be >= 1, got {image_size}")
    n = max(1, math.ceil(math.log2(image_size / 4))) if image_size > 4 else 1
    return math.ceil(image_size / 2**n), n


class ConvDecoder(nn.Module):
    """Feature vector ``(N, in_dim)`` -> image ``(N, channels, size, size)`` in [0, 1].

    Linear to a ``width`` x s x s map (s <= 4), then stride-2 4x4 transposed convolutions
    (BatchNorm + ReLU between them) halving the width (not below ``min_width``) while
    doubling the side; the last one outputs ``channels`` maps, then a sigmoid.

    >>> ConvDecoder(512, 3, 32)(torch.randn(2, 512)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        in_dim: int,
        channels: int,
        image_size: int,
        width: int = DEFAULTS["decoder_width"],
        min_width: int = 16,
    ) -> None:
        super().__init__()
        if min(in_dim, channels, width, min_width) < 1:
            raise ConfigError(
                f"decoder sizes must be positive (in {in_dim}, channels {channels}, "
                f"width {width}, min_width {min_width})"
            )
        side, n = decoder_plan(image_size)
        widths = [max(min_width, width >> k) for k in range(n)] + [channels]
        self.image_size, self.side, self.width0 = image_size, side, widths[0]
        self.fc = nn.Linear(in_dim, widths[0] * side * side, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for k in range(n):
            last = k == n - 1
            layers.append(nn.ConvTranspose2d(widths[k], widths[k + 1], 4, 2, 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(widths[k + 1]), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.width0, self.side, self.side)
        x = x.contiguous(memory_format=torch.channels_last)
        out = torch.sigmoid(self.net(x))
        s = self.image_size
        return out[:, :, :s, :s] if out.shape[-1] != s else out


@full_precision
def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all pixels, in fp32; the target carries no gradient."""
    return F.mse_loss(recon, target.detach())


def corrupt(x: torch.Tensor, noise_std: float, drop_p: float) -> torch.Tensor:
    """``x`` + N(0, noise_std^2) noise, clamped to [0, 1], then each value set to 0 with
    probability ``drop_p`` (masking noise). Draws from the global RNG.

    The draws are made in a contiguous tensor: ``randn_like`` of a channels_last batch
    took the slow strided path (24 ms instead of 2 ms for 256 CIFAR images on 2 cores).
    """
    if noise_std > 0:
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device)
        x = (x + noise_std * noise).clamp(0, 1)
    if drop_p > 0:
        x = x * (torch.rand(x.shape, device=x.device) >= drop_p).to(x.dtype)
    return x


def input_and_target(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, clean target) from the one unlabeled view: a tensor, or (noisy, clean)."""
    v = batch.unlabeled[0]
    return (v[0], v[1]) if isinstance(v, tuple | list) else (v, v)


class Autoencoder(Method):
    """Encoder ``network.features`` + ``ConvDecoder``, trained to reconstruct the image."""

    name: ClassVar[str] = "autoencoder"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("flips",)}

    def __init__(
        self,
        network: Network,
        decoder_width: int = DEFAULTS["decoder_width"],
        augment: str = "flips",
        noise_std: float = 0.0,
        drop_p: float = 0.0,
    ) -> None:
        super().__init__()
        if noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {noise_std}")
        if not 0.0 <= drop_p < 1.0:
            raise ConfigError(f"drop_p must be in [0, 1), got {drop_p}")
        cfg = network.config
        self.network = network
        self.decoder = ConvDecoder(
            network.feature_dim, cfg["in_channels"], cfg["image_size"], decoder_width
        )
        self.noise_std, self.drop_p = float(noise_std), float(drop_p)
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, clean = input_and_target(batch)
        x = corrupt(x, self.noise_std, self.drop_p)
        recon = self.decoder(self.network.features(x))
        return {"loss": reconstruction_loss(recon, clean)}


class DenoisingAutoencoder(Autoencoder):
    """The autoencoder fed a corrupted image (noise + masking) and asked for the clean one."""

    name: ClassVar[str] = "denoising_autoencoder"

    def __init__(
        self,
        network: Network,
        decoder_width: int = DEFAULTS["decoder_width"],
        augment: str = "flips",
        noise_std: float = DEFAULTS["noise_std"],
        drop_p: float = DEFAULTS["drop_p"],
    ) -> None:
        super().__init__(network, decoder_width, augment, noise_std, drop_p)
