"""VICReg (Bardes, Ponce & LeCun 2022): variance-invariance-covariance regularisation.

``loss = sim_weight * mse(z1, z2) + var_weight * (v(z1) + v(z2)) / 2 + cov_weight * (c(z1)
+ c(z2))``, where ``mse`` averages over rows and dimensions, ``v(z) = mean_j relu(1 -
sqrt(Var(z_j) + 1e-4))`` keeps every dimension's standard deviation above 1 and ``c(z) =
sum_{i != j} Cov(z)_ij^2 / D`` decorrelates dimensions (unbiased variance and covariance
over the batch; ``fewlabels.losses.vicreg``). With fewer rows than dimensions (batch 256,
expander 2048+) ``sum_ij Cov_ij^2`` is computed from the ``N x N`` Gram matrix
(``||Z^T Z||^2 = ||Z Z^T||^2``): ``N^2 D`` multiply-adds instead of ``N D^2``. The weights
25/25/1 go with these terms as the official code (facebookresearch/vicreg) computes them;
the paper's equation writes the invariance term summed over dimensions and the variance
term without the 1/2. The statistics need the whole batch, so under DDP the embeddings are
gathered first (every rank computes the same loss).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt

from fewlabels.losses.distributed import gather_with_grad
from fewlabels.losses.vicreg import vicreg_terms
from fewlabels.methods.barlow_twins import scaled_projector
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.methods.rules import (
    Facts,
    Resolved,
    crop_scale,
    lars_recipe,
    projector_rule,
    view_size,
)
from fewlabels.models import Network
from fewlabels.models.heads import ProjectionHead

_WEIGHTS = "VICReg paper section 4.1 (lambda = mu = 25, nu = 1) = the official code's defaults"


class VICRegConfig(MethodConfig):
    """VICReg's options."""

    sim_weight: NonNegativeFloat = Field(25.0, description=f"{_WEIGHTS}: lambda.")
    var_weight: NonNegativeFloat = Field(25.0, description=f"{_WEIGHTS}: mu.")
    cov_weight: NonNegativeFloat = Field(1.0, description=f"{_WEIGHTS}: nu.")
    projector: tuple[PositiveInt, ...] | None = Field(
        None,
        min_length=1,
        description="Default (None): a 3-layer expander of width min(8192, 4 x the encoder's "
        "feature size). The paper's 3 x 8192 is 4 x ResNet-50's 2048 features; on a small "
        "encoder that width would be almost all of the checkpoint. 4x is also the width of "
        "this project's CIFAR-10 recipe (docs/results.md: 1024 on a 256-d encoder).",
    )
    augment: TwoViewPolicy = Field(
        "twoview", description="BYOL's two asymmetric views, as the paper uses."
    )

    @classmethod
    def resolve(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py's measured recipe (32 px CIFAR-10, 2-core CPU), scaled by the facts:
        a projector 4x the feature wide, crops from crop_scale(side) at view_size(side)."""
        out = projector_rule(facts)
        side, scale = cls.view_side(facts), crop_scale(facts.image_size)
        out["augment"] = Resolved(
            f"twoview:min_scale={scale},out_size={side}",
            "crops >= crop_scale(side), views 0.625 x side (bench_ssl: 0.35, 20 px of 32)",
        )
        return out

    @classmethod
    def view_side(cls, facts: Facts) -> int:
        """``resolve``'s views: view_size(side) px."""
        return view_size(facts.image_size)

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_TRAIN: LARS at 0.6 x batch/256, weight decay 1e-4, clip 1."""
        return lars_recipe(facts, 0.6, 1e-4, 1.0, "VICReg (bench_ssl: 2x solo-learn's 0.3)")


class VICReg(Method):
    """Encoder ``network.features`` + 3-layer expander, trained on two views."""

    name: ClassVar[str] = "vicreg"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[VICRegConfig]] = VICRegConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}

    def __init__(
        self, network: Network, config: VICRegConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = VICRegConfig.build(self.name, config, options)
        self.network = network
        self.weights = (cfg.sim_weight, cfg.var_weight, cfg.cov_weight)
        dims = cfg.projector or scaled_projector(network.feature_dim)
        self.projector = ProjectionHead(network.feature_dim, dims)
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        sim, var, cov = vicreg_terms(gather_with_grad(z1), gather_with_grad(z2))
        ws, wv, wc = self.weights
        loss = ws * sim + wv * var + wc * cov
        return {"loss": loss, "sim": sim.detach(), "var": var.detach(), "cov": cov.detach()}
