"""Momentum targets: frozen copies of online modules moved by an exponential moving
average after each optimiser step (BYOL, MoCo, DINO, Mean Teacher)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters have ``requires_grad=False`` (a momentum target)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target = tau * target + (1 - tau) * online``, parameter by parameter.

    Buffers (BatchNorm running statistics) are left alone: the target runs in training
    mode, so they never enter the loss.
    """
    t = list(target.parameters())
    o = [p.detach() for p in online.parameters()]
    if len(t) != len(o):
        raise ValueError("target and online modules have different parameters")
    if t:
        torch._foreach_lerp_(t, o, 1.0 - tau)


def cosine_tau(base_tau: float, progress: float) -> float:
    """BYOL's target decay: ``base_tau`` at progress 0, rising to 1 at progress 1 along
    ``1 - (1 - base_tau) * (cos(pi * progress) + 1) / 2``."""
    return 1 - (1 - base_tau) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2
