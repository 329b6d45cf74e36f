"""Barlow Twins (Zbontar et al. 2021): make the cross-correlation of two views' embeddings
the identity matrix.

Each embedding dimension is standardised over the batch (as an affine-free BatchNorm does,
biased variance), ``C = z1n.T @ z2n / N``, and the loss is ``sum_i (1 - C_ii)^2 + lambda *
sum_{i != j} C_ij^2``. ``C`` itself is formed only when the batch has at least as many
rows as dimensions; otherwise ``sum_ij C_ij^2`` comes from the two views' ``N x N`` Gram
matrices (``||A^T B||^2 = sum((A A^T) * (B B^T))``). The statistics need the whole batch,
so under DDP the embeddings are gathered first (every rank computes the same loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.distributed import gather_with_grad
from fewlabels.methods.heads import full_precision, mlp, sum_sq_product, two_view_policy
from fewlabels.models import Network

DEFAULTS = {
    # Barlow Twins paper, section 2 / appendix: lambda = 5e-3 (official code: 0.0051).
    "lambd": 5e-3,
    # Barlow Twins paper: a 3-layer projector of width 8192 (the reports used the same).
    "projector": (8192, 8192, 8192),
    # Multiplier on the whole loss; 1 in the paper, solo-learn's CIFAR config uses 0.1.
    "scale": 1.0,
}


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


def correlation_loss(c: torch.Tensor, lambd: float) -> torch.Tensor:
    """``sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2``."""
    return _loss_from_terms(c.diagonal(), c.square().sum(), lambd)


def _loss_from_terms(diag: torch.Tensor, sq_norm: torch.Tensor, lambd: float) -> torch.Tensor:
    return (1 - diag).square().sum() + lambd * (sq_norm - diag.square().sum())


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Barlow Twins loss of two ``(N, D)`` embeddings of the same N images."""
    return _loss_from_terms(*correlation_terms(z1, z2), lambd)


class BarlowTwins(Method):
    """Encoder ``network.features`` + 3-layer projector, trained on two views."""

    name: ClassVar[str] = "barlow_twins"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}

    def __init__(
        self,
        network: Network,
        lambd: float = DEFAULTS["lambd"],
        projector: Sequence[int] = DEFAULTS["projector"],
        scale: float = DEFAULTS["scale"],
        augment: str = "twoview",
    ) -> None:
        super().__init__()
        two_view_policy(augment, self.name)
        if lambd < 0 or scale <= 0:
            raise ConfigError(f"need lambd >= 0 and scale > 0, got {lambd} and {scale}")
        self.network = network
        self.lambd, self.scale = float(lambd), float(scale)
        self.projector = mlp([network.feature_dim, *projector])
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        diag, sq_norm = correlation_terms(gather_with_grad(z1), gather_with_grad(z2))
        loss = self.scale * _loss_from_terms(diag, sq_norm, self.lambd)
        diag, d = diag.detach(), len(diag)
        off = (sq_norm.detach() - diag.square().sum()) / max(1, d * d - d)
        return {"loss": loss, "corr_diag": diag.mean(), "corr_offdiag_sq": off}
