"""The optimiser a training run uses: SGD (Nesterov), LARS or AdamW."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fewlabels.train.config import TrainConfig
from fewlabels.train.lars import LARS

__all__ = ["build_optimizer"]


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov), LARS or AdamW; no weight decay on biases and norm parameters (nor
    LARS's trust ratio: they take plain momentum SGD under LARS)."""
    groups = _param_groups(model, cfg.resolved_weight_decay())
    lr = cfg.resolved_lr()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "lars":
        groups[1]["lars"] = False
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta, clip=cfg.lars_clip)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
