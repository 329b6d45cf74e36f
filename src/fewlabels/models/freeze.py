"""Freezing all but the last k blocks of a backbone (the fine-tuning protocols).

A backbone's blocks, in forward order, are ``backbone.stages()`` (every built-in backbone
has it: stem first, the stage nearest the features last) or, for a module without it,
its top-level children.
"""

from __future__ import annotations

import torch
from torch import nn

from fewlabels.core.errors import ConfigError


def backbone_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's blocks in forward order (``stages()`` or the top-level children)."""
    stages = getattr(backbone, "stages", None)
    blocks = list(stages()) if callable(stages) else list(backbone.children())
    return [b for b in blocks if isinstance(b, nn.Module)]


def _stay_in_eval(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook: a frozen block runs in eval mode (fixed BatchNorm statistics)."""
    if module.training:
        module.eval()


def freeze_backbone(backbone: nn.Module, trainable_blocks: int | None) -> list[nn.Module]:
    """Freeze every parameter of ``backbone`` except those of its last ``trainable_blocks``
    blocks (``None``: freeze nothing). Returns the frozen blocks.

    Frozen blocks also keep their BatchNorm running statistics and drop dropout: a forward
    pre-hook puts them in eval mode whenever they run, whatever mode the loop sets.
    Parameters outside every block count as frozen unless nothing is.
    """
    if trainable_blocks is None:
        backbone.requires_grad_(True)
        return []
    blocks = backbone_blocks(backbone)
    if not 0 <= trainable_blocks <= len(blocks):
        raise ConfigError(
            f"this backbone has {len(blocks)} blocks; fine-tune 0..{len(blocks)} of them "
            f"(got {trainable_blocks})"
        )
    backbone.requires_grad_(False)
    keep = blocks[len(blocks) - trainable_blocks :]
    frozen = blocks[: len(blocks) - trainable_blocks]
    for b in keep:
        b.requires_grad_(True)
    for b in frozen:
        b.register_forward_pre_hook(_stay_in_eval)
    return frozen
