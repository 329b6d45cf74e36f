"""Self-Classifier's loss (Amrani & Bronstein 2022): two views must get the same made-up
class while a uniform prior over the C classes rules out the one-class solution.

For classifier logits ``s`` (N x C) of each view, with Bayes' rule and ``p(y) = 1/C``,
``p(x) = 1/N``: prediction ``log p(y|x_j) = log(N/C * colnorm(softmax_row(s_j / t_r)))``,
target ``p(y|x_i) = rownorm(softmax_col(s_i / t_c))``, and
``loss = -1/2 mean_n [sum_y p(y|x_1) log p(y|x_2) + sum_y p(y|x_2) log p(y|x_1)]``.
Both sides carry gradient, as in the paper's pseudocode and the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision


@full_precision
def self_classifier_loss(
    s1: torch.Tensor,
    s2: torch.Tensor,
    row_tau: float = 0.1,
    col_tau: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Symmetrised Self-Classifier loss of two views' logits ``(N, C)`` (see the module)."""
    n, c = s1.shape

    def log_pred(s: torch.Tensor) -> torch.Tensor:
        p = F.normalize(F.softmax(s / row_tau, dim=1), p=1, dim=0, eps=eps)
        return torch.log(n / c * p + eps)

    def target(s: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.softmax(s / col_tau, dim=0), p=1, dim=1, eps=eps)

    l12 = -(target(s1) * log_pred(s2)).sum(1).mean()
    l21 = -(target(s2) * log_pred(s1)).sum(1).mean()
    return (l12 + l21) / 2


class SelfClassifierLoss(nn.Module):
    """Self-Classifier's loss of two views' classifier logits ``(N, C)``.

    >>> s1, s2 = torch.randn(8, 10), torch.randn(8, 10)
    >>> loss = SelfClassifierLoss(row_tau=0.1, col_tau=0.05)(s1, s2)
    """

    def __init__(self, row_tau: float = 0.1, col_tau: float = 0.05, eps: float = 1e-8) -> None:
        super().__init__()
        self.row_tau, self.col_tau, self.eps = float(row_tau), float(col_tau), float(eps)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return self_classifier_loss(s1, s2, self.row_tau, self.col_tau, self.eps)
