"""Mean Teacher (Tarvainen & Valpola 2017): a student learns the labels and to agree with a
teacher whose weights are the exponential moving average of its own.

Loss: ``CE(labeled) + lambda_u * r(t) * mean((softmax(student(u1)) - softmax(teacher(u2)))^2)``
on two independently augmented weak views of each unlabeled image; the mean runs over
images and classes, ``r(t) = exp(-5 (1 - t)^2)`` is the paper's sigmoid ramp-up over the
first ``rampup`` fraction of the budget. After every optimiser step the teacher moves toward
the student with decay ``min(ema, 1 - 1 / (t + 1))`` where ``t`` counts the optimiser steps
including this one (the official code increments ``global_step`` before the update, so the
first update averages the initial weights and the student with 0.5: the teacher is the plain
average of all weights so far while that is shorter). The
teacher is a frozen copy of the classifier, saved in the method's state; the loop's own
``--ema`` gives an evaluation model made the same way.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat

from fewlabels.losses.classification import supervised_loss
from fewlabels.losses.consistency import softmax_mse
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.methods.momentum import frozen_copy, momentum_update
from fewlabels.models import Network

__all__ = ["MeanTeacher", "MeanTeacherConfig", "sigmoid_rampup", "softmax_mse", "teacher_decay"]


class MeanTeacherConfig(MethodConfig):
    """Mean Teacher's options."""

    lambda_u: NonNegativeFloat = Field(
        100.0,
        description="Mean Teacher appendix B (CIFAR-10 ConvNet): consistency = class-mean "
        "MSE of softmax outputs with maximum weight 100 and a sigmoid ramp-up.",
    )
    ema: float = Field(
        0.999,
        gt=0,
        lt=1,
        description="Mean Teacher appendix B: EMA decay 0.99 in the ramp-up, 0.999 after "
        "(we keep one decay with the code's 1 - 1/(t+1) start).",
    )
    rampup: float = Field(
        0.4,
        ge=0,
        le=1,
        json_schema_extra={"what": "a fraction of the budget"},
        description="Ramp-up length as a fraction of the budget: 40%, as USB's MeanTeacher "
        "(unsup_warmup 0.4).",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="The paper uses plain cross-entropy on labeled images."
    )
    augment: str = Field(
        "weak", description="Mean Teacher's input augmentation: translations and flips."
    )


def sigmoid_rampup(progress: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = min(1, progress / length)``; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    t = min(1.0, max(0.0, progress) / length)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def teacher_decay(ema: float, step: int) -> float:
    """The teacher's decay at optimiser step ``step`` (the first is 1):
    ``min(ema, 1 - 1/(step+1))``, so 0.5 at the first step."""
    return min(ema, 1.0 - 1.0 / (step + 1))


class MeanTeacher(Method):
    """Student ``network`` with cross-entropy + consistency to an EMA ``teacher``."""

    name: ClassVar[str] = "mean_teacher"
    kind: ClassVar[str] = "semi-supervised"
    Config: ClassVar[type[MeanTeacherConfig]] = MeanTeacherConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {
        "labeled": ("weak",),
        "unlabeled": ("weak", "weak"),
    }

    def __init__(
        self, network: Network, config: MeanTeacherConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = MeanTeacherConfig.build(self.name, config, options)
        self.network = network
        self.teacher = frozen_copy(network)
        self.lambda_u, self.rampup = cfg.lambda_u, cfg.rampup
        self.ema = cfg.ema
        self.label_smoothing = cfg.label_smoothing
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.views = {"labeled": (cfg.augment,), "unlabeled": (cfg.augment, cfg.augment)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        xl = batch.labeled[0]
        u1, u2 = batch.unlabeled[0], batch.unlabeled[1]
        n = xl.shape[0]
        logits = self.network(torch.cat([xl, u1]))
        with torch.no_grad():
            teacher_logits = self.teacher(u2)
        loss_x = supervised_loss(logits[:n], batch.labels, self.label_smoothing)
        loss_u = softmax_mse(logits[n:], teacher_logits)
        w = self.lambda_u * sigmoid_rampup(batch.progress, self.rampup)
        return {"loss": loss_x + w * loss_u, "loss_x": loss_x.detach(), "loss_u": loss_u.detach()}

    def after_step(self) -> None:
        self.updates += 1  # the official code: global_step += 1, then update_ema_variables
        momentum_update(self.teacher, self.network, teacher_decay(self.ema, int(self.updates)))
