"""Barlow Twins (Zbontar et al. 2021): make the cross-correlation of two views' embeddings
the identity matrix.

Each embedding dimension is standardised over the batch (as an affine-free BatchNorm does,
biased variance), ``C = z1n.T @ z2n / N``, and the loss is ``sum_i (1 - C_ii)^2 + lambda *
sum_{i != j} C_ij^2`` (``fewlabels.losses.barlow_twins``). ``C`` itself is formed only when
the batch has at least as many rows as dimensions; otherwise ``sum_ij C_ij^2`` comes from
the two views' ``N x N`` Gram matrices (``||A^T B||^2 = sum((A A^T) * (B B^T))``). The
statistics need the whole batch, so under DDP the embeddings are gathered first (every
rank computes the same loss).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from fewlabels.losses.barlow_twins import correlation_terms, loss_from_terms
from fewlabels.losses.distributed import gather_with_grad
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.methods.rules import Facts, Resolved, lars_recipe, projector_rule
from fewlabels.models import Network
from fewlabels.models.heads import ProjectionHead

# Barlow Twins (section 4, fig. 4) and VICReg (section 4.1): a 3 x 8192 projector on
# ResNet-50's 2048 features, i.e. 4 x the feature size.
PROJECTOR_CAP, PROJECTOR_RATIO = 8192, 4


def scaled_projector(feature_dim: int, layers: int = 3) -> tuple[int, ...]:
    """The default expander: ``layers`` layers of ``min(8192, 4 * feature_dim)`` units."""
    width = min(PROJECTOR_CAP, PROJECTOR_RATIO * int(feature_dim))
    return (max(1, width),) * layers


class BarlowTwinsConfig(MethodConfig):
    """Barlow Twins' options."""

    lambd: NonNegativeFloat = Field(
        5e-3,
        description="Barlow Twins paper, section 2 / appendix: lambda = 5e-3 "
        "(official code: 0.0051).",
    )
    projector: tuple[PositiveInt, ...] | None = Field(
        None,
        min_length=1,
        description="Default (None): 3 layers of width min(8192, 4 x the encoder's feature "
        "size). The paper's 3 x 8192 is 4 x ResNet-50's 2048 features; on a small encoder "
        "that width would be almost all of the checkpoint (1.1 GB with the optimiser state "
        "for a 300 KB convnet). 4x is also the width of this project's VICReg CIFAR-10 "
        "recipe (docs/results.md).",
    )
    scale: PositiveFloat = Field(
        1.0,
        description="Multiplier on the whole loss; 1 in the paper, solo-learn's CIFAR "
        "config uses 0.1.",
    )
    augment: TwoViewPolicy = Field(
        "twoview", description="BYOL's two asymmetric views, as the paper uses."
    )

    @classmethod
    def resolve(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_KWARGS: a projector 4x the feature wide, solo-learn's 0.1 scale."""
        scale = Resolved(0.1, "solo-learn's CIFAR loss scale (bench_ssl)")
        return {"scale": scale, **projector_rule(facts)}

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_TRAIN: LARS at 0.3 x batch/256, weight decay 1e-4, clip 1."""
        return lars_recipe(facts, 0.3, 1e-4, 1.0, "Barlow Twins (bench_ssl, solo-learn)")


class BarlowTwins(Method):
    """Encoder ``network.features`` + 3-layer projector, trained on two views."""

    name: ClassVar[str] = "barlow_twins"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[BarlowTwinsConfig]] = BarlowTwinsConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}

    def __init__(
        self, network: Network, config: BarlowTwinsConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = BarlowTwinsConfig.build(self.name, config, options)
        self.network = network
        self.lambd, self.scale = cfg.lambd, cfg.scale
        dims = cfg.projector or scaled_projector(network.feature_dim)
        self.projector = ProjectionHead(network.feature_dim, dims)
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        diag, sq_norm = correlation_terms(gather_with_grad(z1), gather_with_grad(z2))
        loss = self.scale * loss_from_terms(diag, sq_norm, self.lambd)
        diag, d = diag.detach(), len(diag)
        off = (sq_norm.detach() - diag.square().sum()) / max(1, d * d - d)
        return {"loss": loss, "corr_diag": diag.mean(), "corr_offdiag_sq": off}
