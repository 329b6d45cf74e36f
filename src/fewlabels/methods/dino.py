"""DINO (Caron et al. 2021): self-distillation with no labels.

A student (encoder + head to K prototypes) matches the output distribution of a momentum
teacher on another view of the same image:
``loss = 1/2 mean_n [H(pt(x1), ps(x2)) + H(pt(x2), ps(x1))]`` (``fewlabels.losses.dino``), with
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

from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from fewlabels.losses.dino import dino_loss
from fewlabels.losses.distributed import all_reduce_, rank_and_world
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.methods.momentum import cosine_tau, frozen_copy, momentum_update
from fewlabels.methods.rules import Facts, Resolved, lars_recipe
from fewlabels.models import Network
from fewlabels.models.heads import DINOHead

_TEMPS = "DINO paper section 3.1 / official main_dino.py: student 0.1, teacher 0.04, "
_TEMPS += "centre momentum 0.9."
_HEAD = "Paper: 3-layer MLP (hidden 2048) to a 256-d bottleneck, K = 65536 prototypes; its "
_HEAD += "ablation shows K = 4096 nearly as good, which suits small data sets."


class DINOConfig(MethodConfig):
    """DINO's options."""

    student_temp: PositiveFloat = Field(0.1, description=_TEMPS)
    teacher_temp: PositiveFloat = Field(0.04, description=_TEMPS)
    center_momentum: float = Field(0.9, ge=0, le=1, description=_TEMPS)
    base_tau: float = Field(
        0.99,
        ge=0,
        le=1,
        description="The paper's teacher momentum starts at 0.996 (long ImageNet runs); "
        "0.99 as in BYOL here, since runs are short.",
    )
    head: tuple[PositiveInt, ...] = Field((2048, 2048, 256), min_length=1, description=_HEAD)
    num_prototypes: int = Field(4096, ge=2, description=_HEAD)
    head_bn: bool = Field(
        False,
        description="official main_dino.py: BatchNorm in the head off by default (use_bn_in_head).",
    )
    freeze_prototypes_steps: NonNegativeInt = Field(
        0,
        description="The official code freezes the last layer for the first epoch; off by "
        "default here (runs are counted in steps and budgets, not epochs).",
    )
    warmup_teacher_temp: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="Teacher temperature warm-up start (official: from 0.04 over the first "
        "30 of 100 epochs); None keeps teacher_temp throughout.",
    )
    teacher_temp_warmup: float = Field(
        0.3,
        ge=0,
        le=1,
        description="The warm-up's length as a fraction of the run (official: 0.3).",
    )
    augment: TwoViewPolicy = Field(
        "twoview", description="DINO's global crops: BYOL's two asymmetric views."
    )

    @classmethod
    def resolve(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_KWARGS: the paper's head settings collapsed in short runs; a
        sharper teacher, 1,024 prototypes and BatchNorm in the head trained."""
        src = "bench_ssl: paper settings collapsed in short runs"
        return {
            "teacher_temp": Resolved(0.02, src),
            "num_prototypes": Resolved(1024, src),
            "head_bn": Resolved(True, src),
        }

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_TRAIN: LARS at 0.1 x batch/256, weight decay 1e-6, clip 3."""
        return lars_recipe(facts, 0.1, 1e-6, 3.0, "DINO (bench_ssl; main_dino.py's clip)")


@torch.no_grad()
def batch_center(t: torch.Tensor) -> torch.Tensor:
    """Mean teacher output ``(K,)`` over the global batch (all-reduced under DDP)."""
    return all_reduce_(t.float().sum(0)) / (len(t) * rank_and_world()[1])


class DINO(Method):
    """Student encoder + head against a momentum teacher, with centering and sharpening."""

    name: ClassVar[str] = "dino"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[DINOConfig]] = DINOConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}
    center: torch.Tensor

    def __init__(self, network: Network, config: DINOConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = cfg = DINOConfig.build(self.name, config, options)
        start = cfg.teacher_temp if cfg.warmup_teacher_temp is None else cfg.warmup_teacher_temp
        self.network = network
        self.student_temp, self.teacher_temp = cfg.student_temp, cfg.teacher_temp
        self.center_momentum, self.base_tau = cfg.center_momentum, cfg.base_tau
        self.start_temp, self.temp_warmup = start, cfg.teacher_temp_warmup
        self.freeze_steps = cfg.freeze_prototypes_steps
        self.head = DINOHead(network.feature_dim, cfg.head, cfg.num_prototypes, cfg.head_bn)
        self.teacher_network = frozen_copy(network)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, cfg.num_prototypes))
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}
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
