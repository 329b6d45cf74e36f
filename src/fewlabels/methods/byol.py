"""BYOL (Grill et al. 2020): an online network predicts a momentum target's projection of
another view of the same image; no negatives.

The target (encoder + projector) is an exponential moving average of the online ones with
parameters that the optimiser never sees (``requires_grad=False``). After each optimiser
step its weight ``tau`` rises from ``base_tau`` to 1 along a cosine of training progress:
``tau = 1 - (1 - base_tau) * (cos(pi * progress) + 1) / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.heads import (
    frozen_copy,
    full_precision,
    mlp,
    momentum_update,
    two_view_policy,
)
from fewlabels.models import Network

DEFAULTS = {
    # The BYOL paper uses 0.996 for 1000 ImageNet epochs; solo-learn's CIFAR configs use
    # 0.99 (a faster-moving target suits shorter runs).
    "base_tau": 0.99,
    # BYOL paper, section 3.3: projector and predictor are MLPs 4096 (BN, ReLU) -> 256.
    "projector": (4096, 256),
    "predictor_hidden": 4096,
}


@full_precision
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``2 - 2 cos(p, z)`` (``||p/|p| - z/|z|||^2``); ``z`` is detached."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def cosine_tau(base_tau: float, progress: float) -> float:
    """BYOL's target decay: ``base_tau`` at progress 0, rising to 1 at progress 1."""
    return 1 - (1 - base_tau) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


class BYOL(Method):
    """Online encoder + projector + predictor against a momentum target, on two views."""

    name: ClassVar[str] = "byol"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}

    def __init__(
        self,
        network: Network,
        base_tau: float = DEFAULTS["base_tau"],
        projector: Sequence[int] = DEFAULTS["projector"],
        predictor_hidden: int = DEFAULTS["predictor_hidden"],
        augment: str = "twoview",
    ) -> None:
        super().__init__()
        two_view_policy(augment, self.name)
        if not 0.0 <= base_tau <= 1.0:
            raise ConfigError(f"base_tau must be in [0, 1], got {base_tau}")
        self.network = network
        self.base_tau = float(base_tau)
        self.projector = mlp([network.feature_dim, *projector])
        out = int(list(projector)[-1])
        self.predictor = mlp([out, predictor_hidden, out])
        self.target_network = frozen_copy(network)
        self.target_projector = frozen_copy(self.projector)
        self.views = {"labeled": (), "unlabeled": (augment,)}
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
