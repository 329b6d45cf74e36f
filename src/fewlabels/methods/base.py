"""The narrow interface between the training loop and a method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from fewlabels.core.errors import ConfigError


@dataclass
class Batch:
    """One training step's data, already augmented on the device.

    ``labeled`` and ``unlabeled`` hold one entry per view the method asked for (in the
    order of ``Method.views``); an entry is a tensor, or a tuple when the policy returns
    several tensors (two views, or image and rotation label).
    """

    labeled: list[Any] = field(default_factory=list)
    labels: torch.Tensor | None = None
    unlabeled: list[Any] = field(default_factory=list)
    unlabeled_index: torch.Tensor | None = None
    step: int = 0
    progress: float = 0.0


class Method(nn.Module):
    """Base class: a method owns its networks and heads and turns a Batch into a loss.

    Subclasses set ``views`` (policy names per stream), implement ``step`` and keep the
    classifier they train in ``self.network`` (a ``fewlabels.models.Network``), which the
    loop evaluates and checkpoints. ``forward`` is ``step`` so DDP can wrap the method.
    """

    name: ClassVar[str] = "base"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": ("weak",), "unlabeled": ()}
    # "supervised", "self-supervised" or "semi-supervised": what evaluation applies
    # (self-supervised runs get the online probe, a kNN monitor and saved embeddings).
    kind: ClassVar[str] = "supervised"
    # The stream ``--batch-size`` counts when a method uses both: "labeled" (semi-supervised:
    # labeled batch B, unlabeled B x unlabeled_batch_ratio) or "unlabeled" (pretraining
    # with an online probe: unlabeled batch B, labeled B / unlabeled_batch_ratio).
    primary: ClassVar[str] = "labeled"
    # Backbone passes per unlabeled view image (RotNet's four rotations of each: 4); the
    # loop counts images through the backbone (image budgets, ``backbone_images``) with it.
    unlabeled_copies: int = 1
    network: nn.Module

    @property
    def uses_unlabeled(self) -> bool:
        return bool(self.views.get("unlabeled"))

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.step(batch)

    def setup(self, *, num_labeled: int, num_unlabeled: int, num_classes: int) -> None:
        """Called once by the loop before any checkpoint is loaded: size per-sample buffers
        (FlexMatch's prediction memory) here so ``load_state_dict`` can restore them. The
        default refuses an empty unlabeled pool when the method has unlabeled views."""
        if self.views.get("unlabeled") and num_unlabeled < 1:
            raise ConfigError(
                f"method {self.name!r} needs unlabeled images and the unlabeled pool is empty"
            )

    def after_step(self) -> None:
        """Hook after each optimiser step (momentum encoders, queues); default nothing."""
