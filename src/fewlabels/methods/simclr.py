"""SimCLR (Chen et al. 2020): pull two views of an image together, push all others apart.

Loss: NT-Xent, a softmax cross-entropy over cosine similarities / temperature in which
each of the 2N projected views must pick out its partner among the other 2N - 1.

Under DDP each rank keeps its own n rows as anchors and scores them against the gathered
global batch (every rank's z1 rows, then every rank's z2 rows). Rank r's rows sit at
``r*n .. r*n + n - 1`` of the gathered tensors, so local anchor i of view 1 has its positive
at global row ``r*n + i`` of view 2 and its own (excluded) copy at the same row of view 1:
``offset = r*n``. The mean of the ranks' losses is the loss of the whole batch, and DDP's
gradient averaging together with the summed backward of ``gather_with_grad`` gives its
exact gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.distributed import gather_with_grad, rank_and_world
from fewlabels.methods.heads import full_precision, mlp, two_view_policy
from fewlabels.models import Network

DEFAULTS = {
    # SimCLR appendix B.9 (CIFAR-10) and the CIFAR-10 command of google-research/simclr's
    # README use 0.5; solo-learn's CIFAR configs use 0.2.
    "temperature": 0.5,
    # SimCLR section 4.2 / appendix B.9: a 2-layer MLP head to a 128-d output, hidden width
    # 2048 (ResNet-50's feature size); BN in the head as in the official code.
    "projector": (2048, 128),
}


@full_precision
def nt_xent_logits(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    k1: torch.Tensor | None = None,
    k2: torch.Tensor | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(2n, 2N)`` and positive indices ``(2n,)`` of NT-Xent.

    Anchors are ``cat([z1, z2])`` (row i of z1 and of z2: two views of image i); candidates
    are ``cat([k1, k2])`` (default: the anchors). Anchor i of view 1 has its positive at
    ``N + offset + i`` and its own copy, masked out, at ``offset + i``; view 2 the reverse.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    k1 = z1 if k1 is None else F.normalize(k1, dim=1)
    k2 = z2 if k2 is None else F.normalize(k2, dim=1)
    n, big_n = z1.shape[0], k1.shape[0]
    logits = torch.cat([z1, z2]) @ torch.cat([k1, k2]).T / temperature
    own = torch.arange(n, device=z1.device) + offset
    rows = torch.arange(2 * n, device=z1.device)
    self_cols = torch.cat([own, own + big_n])
    pos_cols = torch.cat([own + big_n, own])
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[rows, self_cols] = True
    return logits.masked_fill(mask, float("-inf")), pos_cols


def nt_xent_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    k1: torch.Tensor | None = None,
    k2: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """NT-Xent loss averaged over the 2n anchors (see ``nt_xent_logits``)."""
    logits, pos = nt_xent_logits(z1, z2, temperature, k1, k2, offset)
    return F.cross_entropy(logits, pos)


class SimCLR(Method):
    """Encoder ``network.features`` + MLP projector, trained with NT-Xent on two views."""

    name: ClassVar[str] = "simclr"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("simclr",)}

    def __init__(
        self,
        network: Network,
        temperature: float = DEFAULTS["temperature"],
        projector: Sequence[int] = DEFAULTS["projector"],
        augment: str = "simclr",
    ) -> None:
        super().__init__()
        two_view_policy(augment, self.name)
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.network = network
        self.temperature = float(temperature)
        self.projector = mlp([network.feature_dim, *projector])
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z1, z2 = self.projector(self.network.features(torch.cat([v1, v2]))).chunk(2)
        rank, _ = rank_and_world()
        k1, k2 = gather_with_grad(z1), gather_with_grad(z2)
        logits, pos = nt_xent_logits(z1, z2, self.temperature, k1, k2, rank * z1.shape[0])
        loss = F.cross_entropy(logits, pos)
        acc = (logits.detach().argmax(1) == pos).float().mean()
        return {"loss": loss, "contrastive_acc": acc}
