"""DINO (Caron et al. 2021): self-distillation with no labels.

A student (encoder + head to K prototypes) matches the output distribution of a momentum
teacher on another view of the same image:
``loss = 1/2 mean_n [H(pt(x1), ps(x2)) + H(pt(x2), ps(x1))]``, with
``ps = softmax(s / student_temp)`` and ``pt = softmax((t - center) / teacher_temp)``.
Centering (subtracting a running mean of the teacher's outputs) keeps one prototype from
dominating; sharpening (the low teacher temperature) keeps the output from going
uniform. The centre is an EMA of the teacher's batch means, all-reduced across DDP
ranks so that every rank holds the same centre; it moves in ``after_step`` together with
the teacher (``tau`` rises from ``base_tau`` to 1 along a cosine, as BYOL's).

The head is an MLP to a bottleneck, L2-normalisation, and a weight-normalised linear layer
with its gain fixed to 1 (``CosineLinear``). As in the official code, the last layer (the
prototypes) can be frozen for the first steps (``freeze_prototypes_steps``: a zero
gradient, as SwAV's), and the teacher temperature can warm up linearly from
``warmup_teacher_temp`` over the first ``teacher_temp_warmup`` of the run. Not included:
multi-crop. The MLP uses ReLU where the paper's ViT head uses GELU; ``head_bn`` puts
BatchNorm in it (the official code's ``use_bn_in_head``).

Measured (benchmarks/bench_ssl.py, CIFAR-10, fastnet-s, 10 CPU minutes): with the paper's
head settings the centred teacher targets go uniform within ~30 steps and the encoder
stays at the untrained one's probe; ``teacher_temp=0.02, num_prototypes=1024,
head_bn=True`` learns (loss well below log K, 31.6% linear probe on 250 labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.byol import cosine_tau
from fewlabels.methods.distributed import all_reduce_, rank_and_world
from fewlabels.methods.heads import CosineLinear, frozen_copy, full_precision, mlp, momentum_update
from fewlabels.models import Network

DEFAULTS = {
    # DINO paper section 3.1 / official main_dino.py: student 0.1, teacher 0.04, centre
    # momentum 0.9.
    "student_temp": 0.1,
    "teacher_temp": 0.04,
    "center_momentum": 0.9,
    # The paper's teacher momentum starts at 0.996 (long ImageNet runs); 0.99 as in BYOL
    # here, since runs are short.
    "base_tau": 0.99,
    # Paper: 3-layer MLP (hidden 2048) to a 256-d bottleneck, K = 65536 prototypes; its
    # ablation shows K = 4096 nearly as good, which suits small data sets.
    "head": (2048, 2048, 256),
    "num_prototypes": 4096,
    # official main_dino.py: BatchNorm in the head off by default (use_bn_in_head).
    "head_bn": False,
    # The official code freezes the last layer for the first epoch; off by default here
    # (runs are counted in steps and budgets, not epochs).
    "freeze_prototypes_steps": 0,
    # Teacher temperature warm-up (official: from 0.04 over the first 30 of 100 epochs);
    # None keeps teacher_temp throughout.
    "warmup_teacher_temp": None,
    "teacher_temp_warmup": 0.3,
}


@full_precision
def dino_loss(
    s1: torch.Tensor,
    s2: torch.Tensor,
    t1: torch.Tensor,
    t2: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = DEFAULTS["student_temp"],
    teacher_temp: float = DEFAULTS["teacher_temp"],
) -> torch.Tensor:
    """Cross-entropy between the centred, sharpened teacher output of each view (detached)
    and the student's output of the other view, averaged over rows and the two pairs."""
    total = s1.new_zeros(())
    for t, s in ((t1, s2), (t2, s1)):
        pt = F.softmax((t.detach() - center) / teacher_temp, dim=1)
        total = total - (pt * F.log_softmax(s / student_temp, dim=1)).sum(1).mean()
    return total / 2


@torch.no_grad()
def batch_center(t: torch.Tensor) -> torch.Tensor:
    """Mean teacher output ``(K,)`` over the global batch (all-reduced under DDP)."""
    return all_reduce_(t.float().sum(0)) / (len(t) * rank_and_world()[1])


class DINO(Method):
    """Student encoder + head against a momentum teacher, with centering and sharpening."""

    name: ClassVar[str] = "dino"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}
    center: torch.Tensor

    def __init__(
        self,
        network: Network,
        student_temp: float = DEFAULTS["student_temp"],
        teacher_temp: float = DEFAULTS["teacher_temp"],
        center_momentum: float = DEFAULTS["center_momentum"],
        base_tau: float = DEFAULTS["base_tau"],
        head: Sequence[int] = DEFAULTS["head"],
        num_prototypes: int = DEFAULTS["num_prototypes"],
        head_bn: bool = DEFAULTS["head_bn"],
        freeze_prototypes_steps: int = DEFAULTS["freeze_prototypes_steps"],
        warmup_teacher_temp: float | None = DEFAULTS["warmup_teacher_temp"],
        teacher_temp_warmup: float = DEFAULTS["teacher_temp_warmup"],
        augment: str = "twoview",  # DINO's global crops: BYOL's two asymmetric views
    ) -> None:
        super().__init__()
        start_temp = teacher_temp if warmup_teacher_temp is None else warmup_teacher_temp
        if min(student_temp, teacher_temp, start_temp) <= 0 or num_prototypes < 2:
            raise ConfigError(
                "DINO needs positive temperatures and num_prototypes >= 2 "
                f"(got {student_temp}, {teacher_temp}, {start_temp}, {num_prototypes})"
            )
        if not 0.0 <= teacher_temp_warmup <= 1.0 or freeze_prototypes_steps < 0:
            raise ConfigError(
                "DINO needs teacher_temp_warmup in [0, 1] and freeze_prototypes_steps >= 0 "
                f"(got {teacher_temp_warmup}, {freeze_prototypes_steps})"
            )
        if not (0.0 <= center_momentum <= 1.0 and 0.0 <= base_tau <= 1.0):
            raise ConfigError(
                f"center_momentum and base_tau must be in [0, 1], got {center_momentum}, {base_tau}"
            )
        self.network = network
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)
        self.center_momentum, self.base_tau = float(center_momentum), float(base_tau)
        self.start_temp, self.temp_warmup = float(start_temp), float(teacher_temp_warmup)
        self.freeze_steps = int(freeze_prototypes_steps)
        self.head = nn.Sequential(
            mlp([network.feature_dim, *head], bn=bool(head_bn)),
            CosineLinear(int(list(head)[-1]), int(num_prototypes)),
        )
        self.teacher_network = frozen_copy(network)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, int(num_prototypes)))
        self.views = {"labeled": (), "unlabeled": (augment,)}
        self.progress = 0.0
        self._batch_center: torch.Tensor | None = None

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        self.progress = float(batch.progress)
        x = torch.cat([v1, v2])
        mlp_head, prototypes = self.head
        z = mlp_head(self.network.features(x))
        s1, s2 = prototypes(z, frozen=batch.step < self.freeze_steps).chunk(2)
        with torch.no_grad():
            t = self.teacher_head(self.teacher_network.features(x))
        t1, t2 = t.chunk(2)
        temp = self.current_teacher_temp
        loss = dino_loss(s1, s2, t1, t2, self.center, self.student_temp, temp)
        self._batch_center = batch_center(t)
        with torch.no_grad():  # entropy of the teacher's targets: 0 = one-hot, log K = uniform
            pt = F.softmax((t.float() - self.center) / temp, dim=1)
            entropy = -(pt * torch.log(pt + 1e-12)).sum(1).mean()
        return {"loss": loss, "teacher_entropy": entropy}

    @property
    def current_teacher_temp(self) -> float:
        """The teacher temperature at this point of the run (linear warm-up, then flat)."""
        if self.temp_warmup <= 0 or self.progress >= self.temp_warmup:
            return self.teacher_temp
        frac = self.progress / self.temp_warmup
        return self.start_temp + frac * (self.teacher_temp - self.start_temp)

    @property
    def tau(self) -> float:
        return cosine_tau(self.base_tau, self.progress)

    @torch.no_grad()
    def after_step(self) -> None:
        momentum_update(self.teacher_network, self.network, self.tau)
        momentum_update(self.teacher_head, self.head, self.tau)
        if self._batch_center is not None:
            m = self.center_momentum
            self.center.mul_(m).add_(self._batch_center.to(self.center.dtype), alpha=1 - m)
            self._batch_center = None
