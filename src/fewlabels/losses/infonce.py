"""InfoNCE against a queue of negatives (MoCo, He et al. 2020; MoCo v2, Chen et al. 2020):
each query must pick out its own key among the key and every queued key."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision


@full_precision
def moco_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE: each query ``q`` (N, d) must pick its key ``k`` (N, d) from [k, *queue].

    ``q`` and ``k`` are L2-normalised here, ``queue`` (K, d) must already be; ``k`` and
    ``queue`` are detached.
    """
    q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.detach().T
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


infonce_loss = moco_loss


class InfoNCELoss(nn.Module):
    """InfoNCE of queries ``(N, d)`` against their keys ``(N, d)`` and a queue ``(K, d)`` of
    unit-norm negatives (keys and queue carry no gradient).

    >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
    >>> queue = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    >>> loss = InfoNCELoss(temperature=0.2)(q, k, queue)
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        return moco_loss(q, k, queue, self.temperature)


MoCoLoss = InfoNCELoss
