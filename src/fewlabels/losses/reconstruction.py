"""Reconstruction losses: the autoencoder's mean squared error, and the VAE's negative ELBO
(Kingma & Welling 2014; beta-VAE, Higgins et al. 2017) with its Gaussian KL term.

The VAE loss is the batch mean of the per-image summed squared error (a unit-variance
Gaussian likelihood up to constants) plus ``beta`` times KL(q(z|x) || N(0, I)), divided by
the number of values per image: no optimum moves, and the loss gets the scale of a
per-pixel MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision


@full_precision
def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all pixels, in fp32; the target carries no gradient."""
    return F.mse_loss(recon, target.detach())


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
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, reconstruction, kl)``: batch means of the per-image summed squared error and
    of the KL, and ``loss = (reconstruction + beta * kl) / D`` with D the values per image.
    The target carries no gradient."""
    rec = (recon - target.detach()).pow(2).flatten(1).sum(dim=1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return (rec + beta * kl) / recon[0].numel(), rec, kl


class ReconstructionLoss(nn.Module):
    """The autoencoder's loss: mean squared error against the (detached) clean image.

    >>> recon, image = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    >>> loss = ReconstructionLoss()(recon, image)
    """

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(recon, target)


class VAELoss(nn.Module):
    """The VAE's loss ``(reconstruction + beta * KL) / values per image``; ``forward``
    returns ``(loss, reconstruction, kl)``.

    >>> recon, image = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    >>> mu, logvar = torch.randn(2, 4), torch.randn(2, 4)
    >>> loss, rec, kl = VAELoss(beta=1.0)(recon, image, mu, logvar)
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(
        self, recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return vae_loss(recon, target, mu, logvar, self.beta)
