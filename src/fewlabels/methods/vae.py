"""Variational autoencoder (Kingma & Welling 2014; beta-VAE, Higgins et al. 2017).

Two linear heads on the backbone features give the mean and log-variance of a diagonal
Gaussian posterior q(z|x); a sample ``z = mu + exp(logvar / 2) * eps`` (the
reparameterisation trick) is decoded back to the image. The negative ELBO per image is the
summed squared reconstruction error (a unit-variance Gaussian likelihood up to constants)
plus ``beta`` times KL(q(z|x) || N(0, I)); the loss is its batch mean divided by the number
of pixel values (``fewlabels.losses.vae_loss``), which moves no optimum but gives it the
scale of a per-pixel MSE, so the learning rates that suit the autoencoder suit it too (the
undivided sum, about 3,000 times larger at 32 px, diverges within a few SGD steps at lr
0.1). What downstream tasks use is the backbone's feature vector (``network.features``),
not ``mu``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from fewlabels.losses.reconstruction import gaussian_kl, vae_loss
from fewlabels.methods.autoencoder import DECODER_WIDTH, AutoencoderConfig, input_and_target
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.methods.rules import Facts, Resolved
from fewlabels.models import Network
from fewlabels.models.heads import ConvDecoder

__all__ = ["VAE", "VAEConfig", "gaussian_kl", "reparameterize", "vae_loss"]


class VAEConfig(MethodConfig):
    """The VAE's options."""

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """The autoencoders' recipe (bench_ssl.py METHOD_TRAIN): AdamW at 1e-3."""
        return AutoencoderConfig.train_rules(facts)

    beta: NonNegativeFloat = Field(
        1.0,
        description="Kingma & Welling's objective is beta = 1; beta-VAE (Higgins et al.) "
        "raises it.",
    )
    latent_dim: PositiveInt = Field(
        128, description="Our choice: a 128-d latent, a quarter of the ConvNet's 512-d features."
    )
    decoder_width: PositiveInt = Field(64, description=DECODER_WIDTH)
    augment: str = Field("flips", description="Report 000: horizontal and vertical flips.")


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """``mu + exp(logvar / 2) * eps``; ``eps`` ~ N(0, I) from the global RNG by default."""
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + (0.5 * logvar).exp() * eps


class VAE(Method):
    """Encoder ``network.features`` -> (mu, logvar) heads -> sampled z -> ``ConvDecoder``."""

    name: ClassVar[str] = "vae"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[VAEConfig]] = VAEConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("flips",)}

    def __init__(self, network: Network, config: VAEConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = cfg = VAEConfig.build(self.name, config, options)
        net_cfg = network.config
        self.network = network
        self.beta = cfg.beta
        self.mu = nn.Linear(network.feature_dim, cfg.latent_dim)
        self.logvar = nn.Linear(network.feature_dim, cfg.latent_dim)
        self.decoder = ConvDecoder(
            cfg.latent_dim, net_cfg["in_channels"], net_cfg["image_size"], cfg.decoder_width
        )
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, clean = input_and_target(batch)
        h = self.network.features(x)
        mu, logvar = self.mu(h), self.logvar(h)
        recon = self.decoder(reparameterize(mu.float(), logvar.float()))
        loss, rec, kl = vae_loss(recon, clean, mu, logvar, self.beta)
        return {"loss": loss, "recon": rec.detach(), "kl": kl.detach()}
