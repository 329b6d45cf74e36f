"""VICReg (Bardes, Ponce & LeCun 2022): variance-invariance-covariance regularisation.

``loss = sim_weight * mse(z1, z2) + var_weight * (v(z1) + v(z2)) / 2 + cov_weight * (c(z1)
+ c(z2))``, where ``mse`` averages over rows and dimensions, ``v(z) = mean_j relu(1 -
sqrt(Var(z_j) + 1e-4))`` keeps every dimension's standard deviation above 1 and ``c(z) =
sum_{i != j} Cov(z)_ij^2 / D`` decorrelates dimensions (unbiased variance and covariance
over the batch). With fewer rows than dimensions ``sum_ij Cov_ij^2`` is computed from the
``N x N`` Gram matrix (``||Z^T Z||^2 = ||Z Z^T||^2``). The default weights 25/25/1 are the
official code's (facebookresearch/vicreg) for these terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision, sum_sq_product


def _variance(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    return F.relu(1 - torch.sqrt(z.var(0) + eps)).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    z = z - z.mean(0)
    diag = z.square().sum(0)  # the diagonal of z.T @ z
    return (sum_sq_product(z, z) - diag.square().sum()) / ((n - 1) ** 2 * d)


@full_precision
def vicreg_terms(
    z1: torch.Tensor, z2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unweighted (invariance, variance, covariance) terms of two ``(N, D)`` embeddings;
    the variance term is the mean and the covariance term the sum over the two branches."""
    return (
        F.mse_loss(z1, z2),
        (_variance(z1) + _variance(z2)) / 2,
        _covariance(z1) + _covariance(z2),
    )


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
) -> torch.Tensor:
    """The weighted VICReg loss."""
    sim, var, cov = vicreg_terms(z1, z2)
    return sim_weight * sim + var_weight * var + cov_weight * cov


class VICRegLoss(nn.Module):
    """VICReg loss of two views' embeddings ``(N, D)``.

    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = VICRegLoss(sim_weight=25.0, var_weight=25.0, cov_weight=1.0)(z1, z2)
    """

    def __init__(
        self, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.weights = (float(sim_weight), float(var_weight), float(cov_weight))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg_loss(z1, z2, *self.weights)
