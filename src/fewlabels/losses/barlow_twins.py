"""Barlow Twins (Zbontar et al. 2021): make the cross-correlation of two views' embeddings
the identity matrix.

Each embedding dimension is standardised over the batch (as an affine-free BatchNorm does,
biased variance), ``C = z1n.T @ z2n / N``, and the loss is ``sum_i (1 - C_ii)^2 + lambda *
sum_{i != j} C_ij^2``. ``C`` itself is formed only when the batch has at least as many
rows as dimensions; otherwise ``sum_ij C_ij^2`` comes from the two views' ``N x N`` Gram
matrices (``||A^T B||^2 = sum((A A^T) * (B B^T))``).
"""

from __future__ import annotations

import torch
from torch import nn

from fewlabels.losses.numerics import full_precision, sum_sq_product


def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


@full_precision
def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(D, D)`` cross-correlation of the batch-standardised columns of ``z1`` and ``z2``."""
    return _standardise(z1, eps).T @ _standardise(z2, eps) / z1.shape[0]


@full_precision
def correlation_terms(
    z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(diag C, ||C||_F^2)`` of the cross-correlation ``C`` of two ``(N, D)`` embeddings,
    without forming ``C`` when ``N < D`` (the usual case: batch 256, projector 2048+)."""
    n = z1.shape[0]
    a, b = _standardise(z1, eps), _standardise(z2, eps)
    return (a * b).sum(0) / n, sum_sq_product(a, b) / n**2


def loss_from_terms(diag: torch.Tensor, sq_norm: torch.Tensor, lambd: float) -> torch.Tensor:
    """``sum_i (1 - c_ii)^2 + lambd * (||C||_F^2 - sum_i c_ii^2)``."""
    return (1 - diag).square().sum() + lambd * (sq_norm - diag.square().sum())


def correlation_loss(c: torch.Tensor, lambd: float) -> torch.Tensor:
    """``sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2``."""
    return loss_from_terms(c.diagonal(), c.square().sum(), lambd)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins loss of two ``(N, D)`` embeddings of the same N images."""
    return loss_from_terms(*correlation_terms(z1, z2), lambd)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss of two views' embeddings ``(N, D)``, times ``scale``.

    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = BarlowTwinsLoss(lambd=5e-3)(z1, z2)
    """

    def __init__(self, lambd: float = 5e-3, scale: float = 1.0) -> None:
        super().__init__()
        self.lambd, self.scale = float(lambd), float(scale)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.scale * barlow_twins_loss(z1, z2, self.lambd)
