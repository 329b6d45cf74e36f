"""DINO's self-distillation loss (Caron et al. 2021):
``loss = 1/2 mean_n [H(pt(x1), ps(x2)) + H(pt(x2), ps(x1))]``, with
``ps = softmax(s / student_temp)`` and ``pt = softmax((t - center) / teacher_temp)``:
the teacher's output is centred (against one prototype dominating) and sharpened (against
a uniform output); it carries no gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.losses.numerics import full_precision


@full_precision
def dino_loss(
    s1: torch.Tensor,
    s2: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """Cross-entropy between the centred, sharpened teacher output of each view (detached)
    and the student's output of the other view, averaged over rows and the two pairs."""
    total = s1.new_zeros(())
    for t, s in ((t1, s2), (t2, s1)):
        pt = F.softmax((t.detach() - center) / teacher_temp, dim=1)
        total = total - (pt * F.log_softmax(s / student_temp, dim=1)).sum(1).mean()
    return total / 2


class DINOLoss(nn.Module):
    """DINO's loss of student outputs ``s1, s2`` and teacher outputs ``t1, t2`` (N, K) of
    two views, given the teacher centre ``(1, K)`` (the method keeps and moves it).

    >>> s1, s2, t1, t2 = (torch.randn(8, 10) for _ in range(4))
    >>> loss = DINOLoss(student_temp=0.1, teacher_temp=0.04)(s1, s2, t1, t2, torch.zeros(1, 10))
    """

    def __init__(self, student_temp: float = 0.1, teacher_temp: float = 0.04) -> None:
        super().__init__()
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)

    def forward(
        self,
        s1: torch.Tensor,
        s2: torch.Tensor,
        t1: torch.Tensor,
        t2: torch.Tensor,
        center: torch.Tensor,
    ) -> torch.Tensor:
        return dino_loss(s1, s2, t1, t2, center, self.student_temp, self.teacher_temp)
