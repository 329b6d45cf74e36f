"""SwAV's swapped prediction (Caron et al. 2020): Sinkhorn-Knopp turns one view's
prototype scores into soft codes that spread the batch evenly over the prototypes, and
the other view must predict them:
``loss = -1/2 mean_n [sum_k q2 log softmax(s1 / T) + sum_k q1 log softmax(s2 / T)]``.

The codes carry no gradient and are computed in fp32. Under DDP the Sinkhorn sums run over
the whole global batch (all-reduced), so every rank gets the codes that one process would
compute for its rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.distributed import all_reduce_, rank_and_world
from fewlabels.losses.numerics import full_precision


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
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
) -> torch.Tensor:
    """Swapped-prediction loss of two views' projections ``(N, d)`` against prototypes."""
    s1, s2 = prototype_scores(z1, prototypes), prototype_scores(z2, prototypes)
    q1, q2 = sinkhorn(s1.detach(), epsilon, iterations), sinkhorn(s2.detach(), epsilon, iterations)
    l1 = -(q2 * F.log_softmax(s1 / temperature, dim=1)).sum(1).mean()
    l2 = -(q1 * F.log_softmax(s2 / temperature, dim=1)).sum(1).mean()
    return (l1 + l2) / 2


class SwAVLoss(nn.Module):
    """SwAV's swapped-prediction loss of two views' projections ``(N, d)`` against unit-norm
    prototypes ``(K, d)``.

    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> prototypes = torch.nn.functional.normalize(torch.randn(10, 16), dim=1)
    >>> loss = SwAVLoss(temperature=0.1, epsilon=0.05, iterations=3)(z1, z2, prototypes)
    """

    def __init__(
        self, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3
    ) -> None:
        super().__init__()
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.iterations = int(iterations)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        return swav_loss(z1, z2, prototypes, self.temperature, self.epsilon, self.iterations)
