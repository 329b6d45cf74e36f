"""VICReg (Bardes, Ponce & LeCun 2022): variance-invariance-covariance regularisation.

``loss = sim_weight * mse(z1, z2) + var_weight * (v(z1) + v(z2)) / 2 + cov_weight * (c(z1)
+ c(z2))``, where ``mse`` averages over rows and dimensions, ``v(z) = mean_j relu(1 -
sqrt(Var(z_j) + 1e-4))`` keeps every dimension's standard deviation above 1 and ``c(z) =
sum_{i != j} Cov(z)_ij^2 / D`` decorrelates dimensions (unbiased variance and covariance
over the batch). With fewer rows than dimensions (batch 256, expander 2048+) ``sum_ij
Cov_ij^2`` is computed from the ``N x N`` Gram matrix (``||Z^T Z||^2 = ||Z Z^T||^2``):
``N^2 D`` multiply-adds instead of ``N D^2``. The weights 25/25/1 go with these terms as
the official code (facebookresearch/vicreg) computes them; the paper's equation writes the
invariance term summed over dimensions and the variance term without the 1/2. The
statistics need the whole batch, so under DDP the embeddings are gathered first (every
rank computes the same loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.distributed import gather_with_grad
from fewlabels.methods.heads import full_precision, mlp, sum_sq_product, two_view_policy
from fewlabels.models import Network

DEFAULTS = {
    # VICReg paper section 4.1 (lambda = mu = 25, nu = 1) = the official code's defaults.
    "sim_weight": 25.0,
    "var_weight": 25.0,
    "cov_weight": 1.0,
    # VICReg paper: a 3-layer expander of width 8192.
    "projector": (8192, 8192, 8192),
}


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
    sim_weight: float = DEFAULTS["sim_weight"],
    var_weight: float = DEFAULTS["var_weight"],
    cov_weight: float = DEFAULTS["cov_weight"],
) -> torch.Tensor:
    """The weighted VICReg loss."""
    sim, var, cov = vicreg_terms(z1, z2)
    return sim_weight * sim + var_weight * var + cov_weight * cov


class VICReg(Method):
    """Encoder ``network.features`` + 3-layer expander, trained on two views."""

    name: ClassVar[str] = "vicreg"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}

    def __init__(
        self,
        network: Network,
        sim_weight: float = DEFAULTS["sim_weight"],
        var_weight: float = DEFAULTS["var_weight"],
        cov_weight: float = DEFAULTS["cov_weight"],
        projector: Sequence[int] = DEFAULTS["projector"],
        augment: str = "twoview",
    ) -> None:
        super().__init__()
        two_view_policy(augment, self.name)
        if min(sim_weight, var_weight, cov_weight) < 0:
            raise ConfigError("VICReg loss weights must be >= 0")
        self.network = network
        self.weights = (float(sim_weight), float(var_weight), float(cov_weight))
        self.projector = mlp([network.feature_dim, *projector])
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        sim, var, cov = vicreg_terms(gather_with_grad(z1), gather_with_grad(z2))
        ws, wv, wc = self.weights
        loss = ws * sim + wv * var + wc * cov
        return {"loss": loss, "sim": sim.detach(), "var": var.detach(), "cov": cov.detach()}
