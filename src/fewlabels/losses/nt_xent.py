"""NT-Xent (SimCLR, Chen et al. 2020): a softmax cross-entropy over cosine similarities /
temperature in which each of the 2N projected views must pick out its partner among the
other 2N - 1.

Candidates may be a larger set than the anchors (under DDP: the gathered global batch);
``offset`` is then where the anchors' own rows sit in it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision


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
    temperature: float = 0.5,
    k1: torch.Tensor | None = None,
    k2: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """NT-Xent loss averaged over the 2n anchors (see ``nt_xent_logits``)."""
    logits, pos = nt_xent_logits(z1, z2, temperature, k1, k2, offset)
    return F.cross_entropy(logits, pos)


class NTXentLoss(nn.Module):
    """NT-Xent of two views' embeddings ``(N, D)``: row i of ``z1`` and of ``z2`` are two
    views of image i.

    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = NTXentLoss(temperature=0.5)(z1, z2)
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent_loss(z1, z2, self.temperature)
