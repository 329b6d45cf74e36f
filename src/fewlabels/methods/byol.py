"""BYOL (Grill et al. 2020): an online network predicts a momentum target's projection of
another view of the same image; no negatives.

The target (encoder + projector) is an exponential moving average of the online ones with
parameters that the optimiser never sees (``requires_grad=False``). After each optimiser
step its weight ``tau`` rises from ``base_tau`` to 1 along a cosine of training progress:
``tau = 1 - (1 - base_tau) * (cos(pi * progress) + 1) / 2``. The loss is ``2 - 2 cos`` of
prediction and target, both ways (``fewlabels.losses.byol``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from fewlabels.losses.byol import byol_loss
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.methods.momentum import cosine_tau, frozen_copy, momentum_update
from fewlabels.methods.rules import Facts, Resolved, lars_recipe
from fewlabels.models import Network
from fewlabels.models.heads import PredictionHead, ProjectionHead

__all__ = ["BYOL", "BYOLConfig", "cosine_tau"]


class BYOLConfig(MethodConfig):
    """BYOL's options."""

    base_tau: float = Field(
        0.99,
        ge=0,
        le=1,
        description="The BYOL paper uses 0.996 for 1000 ImageNet epochs; solo-learn's CIFAR "
        "configs use 0.99 (a faster-moving target suits shorter runs).",
    )
    projector: tuple[PositiveInt, ...] = Field(
        (4096, 256),
        min_length=1,
        description="BYOL paper, section 3.3: projector and predictor are MLPs "
        "4096 (BN, ReLU) -> 256.",
    )
    predictor_hidden: PositiveInt = Field(
        4096, description="BYOL paper, section 3.3: the predictor's hidden width 4096."
    )
    augment: TwoViewPolicy = Field(
        "twoview", description="BYOL's two asymmetric views (paper, appendix B)."
    )

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_TRAIN: LARS at 0.3 x batch/256, weight decay 1e-5, clip 1."""
        return lars_recipe(facts, 0.3, 1e-5, 1.0, "BYOL (bench_ssl)")


class BYOL(Method):
    """Online encoder + projector + predictor against a momentum target, on two views."""

    name: ClassVar[str] = "byol"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[BYOLConfig]] = BYOLConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}

    def __init__(self, network: Network, config: BYOLConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = cfg = BYOLConfig.build(self.name, config, options)
        self.network = network
        self.base_tau = cfg.base_tau
        self.projector = ProjectionHead(network.feature_dim, cfg.projector)
        self.predictor = PredictionHead(self.projector.out_dim, cfg.predictor_hidden)
        self.target_network = frozen_copy(network)
        self.target_projector = frozen_copy(self.projector)
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}
        self.progress = 0.0

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        self.progress = float(batch.progress)
        x = torch.cat([v1, v2])
        z = self.projector(self.network.features(x))
        p1, p2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_network.features(x)).chunk(2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        with torch.no_grad():  # ~1/sqrt(dim) when healthy, 0 when collapsed
            z_std = F.normalize(z.float(), dim=1).std(0).mean()
        return {"loss": loss, "z_std": z_std, "tau": torch.tensor(self.tau, device=loss.device)}

    @property
    def tau(self) -> float:
        return cosine_tau(self.base_tau, self.progress)

    def after_step(self) -> None:
        momentum_update(self.target_network, self.network, self.tau)
        momentum_update(self.target_projector, self.projector, self.tau)
