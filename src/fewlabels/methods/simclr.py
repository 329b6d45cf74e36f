"""SimCLR (Chen et al. 2020): pull two views of an image together, push all others apart.

Loss: NT-Xent (``fewlabels.losses.nt_xent``), a softmax cross-entropy over cosine
similarities / temperature in which each of the 2N projected views must pick out its
partner among the other 2N - 1.

Under DDP each rank keeps its own n rows as anchors and scores them against the gathered
global batch (every rank's z1 rows, then every rank's z2 rows). Rank r's rows sit at
``r*n .. r*n + n - 1`` of the gathered tensors, so local anchor i of view 1 has its positive
at global row ``r*n + i`` of view 2 and its own (excluded) copy at the same row of view 1:
``offset = r*n``. The mean of the ranks' losses is the loss of the whole batch, and DDP's
gradient averaging together with the summed backward of ``gather_with_grad`` gives its
exact gradient.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt

from fewlabels.losses.distributed import gather_with_grad, rank_and_world
from fewlabels.losses.nt_xent import nt_xent_logits
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.models import Network
from fewlabels.models.heads import ProjectionHead


class SimCLRConfig(MethodConfig):
    """SimCLR's options."""

    temperature: PositiveFloat = Field(
        0.5,
        description="SimCLR appendix B.9 (CIFAR-10) and the CIFAR-10 command of "
        "google-research/simclr's README use 0.5; solo-learn's CIFAR configs use 0.2.",
    )
    projector: tuple[PositiveInt, ...] = Field(
        (2048, 128),
        min_length=1,
        description="SimCLR section 4.2 / appendix B.9: a 2-layer MLP head to a 128-d output, "
        "hidden width 2048 (ResNet-50's feature size); BN in the head as in the official code.",
    )
    augment: TwoViewPolicy = Field(
        "simclr", description="SimCLR's two views: crop, flip, colour jitter, greyscale, blur."
    )


class SimCLR(Method):
    """Encoder ``network.features`` + MLP projector, trained with NT-Xent on two views."""

    name: ClassVar[str] = "simclr"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[SimCLRConfig]] = SimCLRConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("simclr",)}

    def __init__(
        self, network: Network, config: SimCLRConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = SimCLRConfig.build(self.name, config, options)
        self.network = network
        self.temperature = cfg.temperature
        self.projector = ProjectionHead(network.feature_dim, cfg.projector)
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        rank, _ = rank_and_world()
        k1, k2 = gather_with_grad(z1), gather_with_grad(z2)
        logits, pos = nt_xent_logits(z1, z2, self.temperature, k1, k2, rank * z1.shape[0])
        loss = F.cross_entropy(logits, pos)
        acc = (logits.detach().argmax(1) == pos).float().mean()
        return {"loss": loss, "contrastive_acc": acc}
