"""Autoencoder and denoising autoencoder (report 000; Vincent et al. 2008 for the DAE).

The encoder is the run's backbone (``network.features``); a small transposed-convolution
decoder (``fewlabels.models.heads.ConvDecoder``) maps the feature vector back to the
image, and the loss is the mean squared error against the un-corrupted [0, 1] image. The
denoising autoencoder reconstructs the clean image from a corrupted copy: Gaussian pixel
noise and dropout (masking noise, pixels set to 0). Both use the ``flips`` policy
(horizontal and vertical flips), report 000's augmentation. The corruption is part of the
loss's definition, so it lives here, drawn from the global RNG that the loop seeds from
``(seed, step, rank)``; its settings are method options. ``augment="denoise"`` (flip +
noise, returning (noisy, clean)) also works: its noise then comes on top of ``noise_std``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt

from fewlabels.losses.reconstruction import reconstruction_loss
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.methods.rules import Facts, Resolved
from fewlabels.models import Network
from fewlabels.models.heads import ConvDecoder, decoder_plan

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "ConvDecoder",
    "DenoisingAutoencoder",
    "DenoisingAutoencoderConfig",
    "corrupt",
    "decoder_plan",
    "input_and_target",
    "reconstruction_loss",
]

DECODER_WIDTH = (
    "Our choice: 64 channels on the smallest map, halving per x2 upsampling (at least 16): "
    "at 32 px the decoder costs about half the ConvNet encoder's multiply-adds."
)
_REPORT_NOISE = (
    "Report 000 names Gaussian noise and dropout without values; 0.1 matches the `denoise` "
    "policy's noise and the ConvNet's Dropout2d rate"
)


class AutoencoderConfig(MethodConfig):
    """The autoencoder's options (no corruption by default)."""

    decoder_width: PositiveInt = Field(64, description=DECODER_WIDTH)
    augment: str = Field("flips", description="Report 000: horizontal and vertical flips.")
    noise_std: NonNegativeFloat = Field(
        0.0, description="Std of the Gaussian pixel noise on the input; 0: a plain autoencoder."
    )
    drop_p: float = Field(
        0.0, ge=0, lt=1, description="Probability of zeroing an input value; 0: none."
    )

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_TRAIN: AdamW at 1e-3 (plain SGD turns a per-pixel MSE's small
        gradients into small steps), weight decay 0.05."""
        src = "autoencoders (bench_ssl)"
        return {
            "train.optimizer": Resolved("adamw", f"{src}: AdamW"),
            "train.lr": Resolved(1e-3, f"{src}: AdamW 1e-3"),
            "train.weight_decay": Resolved(0.05, src),
        }


class DenoisingAutoencoderConfig(AutoencoderConfig):
    """The denoising autoencoder's options: the autoencoder's, with corruption on."""

    noise_std: NonNegativeFloat = Field(0.1, description=f"{_REPORT_NOISE} (0.1).")
    drop_p: float = Field(0.1, ge=0, lt=1, description=f"{_REPORT_NOISE} (0.1).")


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
    Config: ClassVar[type[AutoencoderConfig]] = AutoencoderConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("flips",)}

    def __init__(
        self, network: Network, config: AutoencoderConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = self.Config.build(self.name, config, options)
        net_cfg = network.config
        self.network = network
        self.decoder = ConvDecoder(
            network.feature_dim, net_cfg["in_channels"], net_cfg["image_size"], cfg.decoder_width
        )
        self.noise_std, self.drop_p = cfg.noise_std, cfg.drop_p
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, clean = input_and_target(batch)
        x = corrupt(x, self.noise_std, self.drop_p)
        recon = self.decoder(self.network.features(x))
        return {"loss": reconstruction_loss(recon, clean)}


class DenoisingAutoencoder(Autoencoder):
    """The autoencoder fed a corrupted image (noise + masking) and asked for the clean one."""

    name: ClassVar[str] = "denoising_autoencoder"
    Config: ClassVar[type[AutoencoderConfig]] = DenoisingAutoencoderConfig
