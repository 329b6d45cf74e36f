"""SwAV (Caron et al. 2020): swapped prediction of online cluster assignments.

Each view's projection is L2-normalised and scored against K prototypes (unit vectors).
The Sinkhorn-Knopp algorithm turns one view's scores into soft codes ``q`` that spread the
batch evenly over the prototypes (equipartition), and the other view must predict them:
``loss = -1/2 mean_n [sum_k q2 log softmax(s1 / T) + sum_k q1 log softmax(s2 / T)]``
(``fewlabels.losses.swav``). The codes carry no gradient and are computed in fp32. Under
DDP the Sinkhorn sums run over the whole global batch (all-reduced), so every rank gets
the codes that one process would compute for its rows; the loss is then a per-row mean,
whose average over ranks (DDP's gradient averaging) is the whole-batch loss. The
prototypes are re-normalised after every optimiser step.

Not included: multi-crop (two views only) and the queue of past batches' scores that the
paper adds for small batches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from fewlabels.losses.swav import prototype_scores, swav_loss
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.models import Network
from fewlabels.models.heads import ProjectionHead, Prototypes

_PAPER = "SwAV paper section 4 / official main_swav.py: temperature 0.1, epsilon 0.05, "
_PAPER += "3 Sinkhorn iterations, 3000 prototypes (solo-learn's CIFAR configs keep 3000)."


class SwAVConfig(MethodConfig):
    """SwAV's options."""

    temperature: PositiveFloat = Field(0.1, description=_PAPER)
    epsilon: PositiveFloat = Field(0.05, description=_PAPER)
    sinkhorn_iterations: PositiveInt = Field(3, description=_PAPER)
    num_prototypes: int = Field(3000, ge=2, description=_PAPER)
    projector: tuple[PositiveInt, ...] = Field(
        (2048, 128),
        min_length=1,
        description="SwAV paper: a 2-layer projection head, hidden 2048 (BN, ReLU), output 128.",
    )
    freeze_prototypes_steps: NonNegativeInt = Field(
        0,
        description="The official code freezes the prototypes for the first 313 iterations "
        "(one ImageNet epoch at batch 4096); off by default here, where runs are short.",
    )
    augment: TwoViewPolicy = Field(
        "simclr", description="SwAV's colour distortion + blur, as SimCLR's."
    )


class SwAV(Method):
    """Encoder ``network.features`` + projector + prototypes, trained on two views."""

    name: ClassVar[str] = "swav"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[SwAVConfig]] = SwAVConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("simclr",)}

    def __init__(self, network: Network, config: SwAVConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = cfg = SwAVConfig.build(self.name, config, options)
        self.network = network
        self.temperature, self.epsilon = cfg.temperature, cfg.epsilon
        self.iterations = cfg.sinkhorn_iterations
        self.freeze_steps = cfg.freeze_prototypes_steps
        self.projector = ProjectionHead(network.feature_dim, cfg.projector)
        self.prototypes = Prototypes(self.projector.out_dim, cfg.num_prototypes)
        self.prototypes.normalize_()
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

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

    def after_step(self) -> None:
        self.prototypes.normalize_()
