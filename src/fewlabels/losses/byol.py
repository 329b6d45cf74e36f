"""BYOL's regression loss (Grill et al. 2020): the normalised mean squared error between a
prediction and a target, ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision


@full_precision
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``2 - 2 cos(p, z)`` (``||p/|p| - z/|z|||^2``); ``z`` is detached."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


class BYOLLoss(nn.Module):
    """BYOL's symmetrised loss: each view's prediction against the other view's target
    (targets carry no gradient).

    >>> p1, p2, t1, t2 = (torch.randn(8, 16) for _ in range(4))
    >>> loss = BYOLLoss()(p1, p2, t1, t2)  # byol_loss(p1, t2) + byol_loss(p2, t1)
    """

    def forward(
        self, p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor
    ) -> torch.Tensor:
        return byol_loss(p1, t2) + byol_loss(p2, t1)
