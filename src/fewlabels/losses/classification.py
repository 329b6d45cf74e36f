"""Cross-entropy losses on class logits: the supervised loss (with label smoothing) and
RotNet's rotation loss (Gidaris, Singh & Komodakis 2018: which of four quarter turns)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supervised_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` against integer ``labels`` (computed in fp32)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def rotation_loss(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``(N, 4)`` rotation logits against the quarter-turn counts ``k``."""
    return F.cross_entropy(logits.float(), k)


class SupervisedLoss(nn.Module):
    """Mean cross-entropy in fp32, with label smoothing.

    >>> logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    >>> loss = SupervisedLoss(label_smoothing=0.2)(logits, labels)
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supervised_loss(logits, labels, self.label_smoothing)


class RotationLoss(nn.Module):
    """RotNet's loss: cross-entropy of 4-way rotation logits against quarter-turn counts.

    >>> logits, k = torch.randn(8, 4), torch.randint(0, 4, (8,))
    >>> loss = RotationLoss()(logits, k)
    """

    def forward(self, logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return rotation_loss(logits, k)
