"""Variational autoencoder (Kingma & Welling 2014; beta-VAE, Higgins et al. 2017).

Two linear heads on the backbone features give the mean and log-variance of a diagonal
Gaussian posterior q(z|x); a sample ``z = mu + exp(logvar / 2) * eps`` (the
reparameterisation trick) is decoded back to the image. The negative ELBO per image is the
summed squared reconstruction error (a unit-variance Gaussian likelihood up to constants)
plus ``beta`` times KL(q(z|x) || N(0, I)); the loss is its batch mean divided by the number
of pixel values, which moves no optimum but gives it the scale of a per-pixel MSE, so the
learning rates that suit the autoencoder suit it too (the undivided sum, about 3,000 times
larger at 32 px, diverges within a few SGD steps at lr 0.1). What downstream tasks use is
the backbone's feature vector (``network.features``), not ``mu``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.methods.autoencoder import DEFAULTS as AE_DEFAULTS
from fewlabels.methods.autoencoder import ConvDecoder, input_and_target
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.heads import full_precision
from fewlabels.models import Network

DEFAULTS = {
    # Kingma & Welling's objective is beta = 1; beta-VAE (Higgins et al.) raises it.
    "beta": 1.0,
    # Our choice: a 128-d latent, a quarter of the ConvNet's 512-d features.
    "latent_dim": 128,
    "decoder_width": AE_DEFAULTS["decoder_width"],
}


@full_precision
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, ``(N,)``, in fp32:
    ``0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


@full_precision
def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = DEFAULTS["beta"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, reconstruction, kl)``: batch means of the per-image summed squared error and
    of the KL, and ``loss = (reconstruction + beta * kl) / D`` with D the values per image.
    The target carries no gradient."""
    rec = (recon - target.detach()).pow(2).flatten(1).sum(dim=1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return (rec + beta * kl) / recon[0].numel(), rec, kl


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
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("flips",)}

    def __init__(
        self,
        network: Network,
        beta: float = DEFAULTS["beta"],
        latent_dim: int = DEFAULTS["latent_dim"],
        decoder_width: int = DEFAULTS["decoder_width"],
        augment: str = "flips",
    ) -> None:
        super().__init__()
        if beta < 0:
            raise ConfigError(f"beta must be >= 0, got {beta}")
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
        cfg = network.config
        self.network = network
        self.beta = float(beta)
        self.mu = nn.Linear(network.feature_dim, latent_dim)
        self.logvar = nn.Linear(network.feature_dim, latent_dim)
        self.decoder = ConvDecoder(latent_dim, cfg["in_channels"], cfg["image_size"], decoder_width)
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, clean = input_and_target(batch)
        h = self.network.features(x)
        mu, logvar = self.mu(h), self.logvar(h)
        recon = self.decoder(reparameterize(mu.float(), logvar.float()))
        loss, rec, kl = vae_loss(recon, clean, mu, logvar, self.beta)
        return {"loss": loss, "recon": rec.detach(), "kl": kl.detach()}
