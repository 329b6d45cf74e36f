"""SwAV (Caron et al. 2020): swapped prediction of online cluster assignments.

Each view's projection is L2-normalised and scored against K prototypes (unit vectors).
The Sinkhorn-Knopp algorithm turns one view's scores into soft codes ``q`` that spread the
batch evenly over the prototypes (equipartition), and the other view must predict them:
``loss = -1/2 mean_n [sum_k q2 log softmax(s1 / T) + sum_k q1 log softmax(s2 / T)]``.
The codes carry no gradient and are computed in fp32. Under DDP the Sinkhorn sums run over
the whole global batch (all-reduced), so every rank gets the codes that one process would
compute for its rows; the loss is then a per-row mean, whose average over ranks (DDP's
gradient averaging) is the whole-batch loss. The prototypes are re-normalised after every
optimiser step.

Not included: multi-crop (two views only) and the queue of past batches' scores that the
paper adds for small batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.distributed import all_reduce_, rank_and_world
from fewlabels.methods.heads import full_precision, mlp
from fewlabels.models import Network

DEFAULTS = {
    # SwAV paper section 4 / official main_swav.py: temperature 0.1, epsilon 0.05,
    # 3 Sinkhorn iterations, 3000 prototypes (solo-learn's CIFAR configs keep 3000).
    "temperature": 0.1,
    "epsilon": 0.05,
    "sinkhorn_iterations": 3,
    "num_prototypes": 3000,
    # SwAV paper: a 2-layer projection head, hidden 2048 (BN, ReLU), output 128.
    "projector": (2048, 128),
    # The official code freezes the prototypes for the first 313 iterations (one ImageNet
    # epoch at batch 4096); off by default here, where runs are short.
    "freeze_prototypes_steps": 0,
}


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Soft codes ``(B, K)`` of prototype scores ``(B, K)`` by Sinkhorn-Knopp, in fp32.

    ``Q = exp(scores / epsilon)^T`` (K x B over the global batch of B rows) is scaled to
    total 1, then ``iterations`` times: every prototype's row to 1/K, every sample's
    column to 1/B. The result is ``B * Q^T``: each sample's codes sum to 1 and each
    prototype receives about B/K in all. Under DDP the row sums (and the total) are
    all-reduced, so the codes equal those of one process holding the whole batch.
    """
    with torch.autocast(scores.device.type, enabled=False):
        logits = scores.float() / epsilon
        # a shared constant shift (the global max) keeps exp() finite and changes nothing
        q = torch.exp(logits - all_reduce_(logits.max().clone(), "max")).T
        b = q.shape[1] * rank_and_world()[1]
        k = q.shape[0]
        q /= all_reduce_(q.sum())
        for _ in range(iterations):
            q /= all_reduce_(q.sum(dim=1, keepdim=True))
            q /= k
            q /= q.sum(dim=0, keepdim=True)
            q /= b
        return (q * b).T


def prototype_scores(z: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine scores ``(N, K)`` of projections ``z`` (N, d) against prototypes (K, d);
    ``z`` is normalised here, the prototypes are used as they are (kept unit-norm)."""
    return F.normalize(z, dim=1) @ prototypes.T


@full_precision
def swav_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = DEFAULTS["temperature"],
    epsilon: float = DEFAULTS["epsilon"],
    iterations: int = DEFAULTS["sinkhorn_iterations"],
) -> torch.Tensor:
    """Swapped-prediction loss of two views' projections ``(N, d)`` against prototypes."""
    s1, s2 = prototype_scores(z1, prototypes), prototype_scores(z2, prototypes)
    q1, q2 = sinkhorn(s1.detach(), epsilon, iterations), sinkhorn(s2.detach(), epsilon, iterations)
    l1 = -(q2 * F.log_softmax(s1 / temperature, dim=1)).sum(1).mean()
    l2 = -(q1 * F.log_softmax(s2 / temperature, dim=1)).sum(1).mean()
    return (l1 + l2) / 2


class SwAV(Method):
    """Encoder ``network.features`` + projector + prototypes, trained on two views."""

    name: ClassVar[str] = "swav"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("simclr",)}

    def __init__(
        self,
        network: Network,
        temperature: float = DEFAULTS["temperature"],
        epsilon: float = DEFAULTS["epsilon"],
        sinkhorn_iterations: int = DEFAULTS["sinkhorn_iterations"],
        num_prototypes: int = DEFAULTS["num_prototypes"],
        projector: Sequence[int] = DEFAULTS["projector"],
        freeze_prototypes_steps: int = DEFAULTS["freeze_prototypes_steps"],
        augment: str = "simclr",  # SwAV's colour distortion + blur, as SimCLR's
    ) -> None:
        super().__init__()
        if temperature <= 0 or epsilon <= 0 or sinkhorn_iterations < 1 or num_prototypes < 2:
            raise ConfigError(
                "SwAV needs temperature > 0, epsilon > 0, sinkhorn_iterations >= 1 and "
                f"num_prototypes >= 2 (got {temperature}, {epsilon}, {sinkhorn_iterations}, "
                f"{num_prototypes})"
            )
        self.network = network
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.iterations = int(sinkhorn_iterations)
        self.freeze_steps = int(freeze_prototypes_steps)
        self.projector = mlp([network.feature_dim, *projector])
        self.prototypes = nn.Linear(int(list(projector)[-1]), int(num_prototypes), bias=False)
        self.after_step()
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        w = self.prototypes.weight
        if batch.step < self.freeze_steps:  # a zero gradient keeps DDP's bookkeeping happy
            w = w.detach() + 0.0 * w
        loss = swav_loss(z1, z2, w, self.temperature, self.epsilon, self.iterations)
        with torch.no_grad():  # how many prototypes the batch actually uses
            used = prototype_scores(z1.float(), w.float()).argmax(1).unique().numel()
        return {"loss": loss, "prototypes_used": torch.tensor(float(used), device=loss.device)}

    @torch.no_grad()
    def after_step(self) -> None:
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))
