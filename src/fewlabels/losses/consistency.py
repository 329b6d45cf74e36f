"""Mean Teacher's consistency loss (Tarvainen & Valpola 2017): the mean squared difference
of the student's and the teacher's softmax outputs."""

from __future__ import annotations

import torch
from torch import nn


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over images and classes of the squared difference of the softmax outputs; the
    teacher side carries no gradient."""
    p = torch.softmax(student_logits.float(), dim=1)
    q = torch.softmax(teacher_logits.detach().float(), dim=1)
    return ((p - q) ** 2).mean()


class SoftmaxMSELoss(nn.Module):
    """Mean Teacher's consistency: MSE between student and (detached) teacher softmaxes.

    >>> student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    >>> loss = SoftmaxMSELoss()(student, teacher)
    """

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return softmax_mse(student_logits, teacher_logits)
