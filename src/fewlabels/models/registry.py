"""Backbones by name: each maps normalised images to ``(N, feature_dim)`` features.

Every backbone has ``feature_dim: int`` and ``stages() -> list[nn.Module]``: its top-level
stages in forward order (stem first, the layer nearest the features last). "Fine-tune the
last k blocks" means unfreezing ``stages()[-k:]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.models.convnet import ConvNet
from fewlabels.models.fastnet import FastNet
from fewlabels.models.resnet import ResNet
from fewlabels.models.timm_backbone import TimmBackbone
from fewlabels.models.wrn import WideResNet

STEMS = ("auto", "cifar", "imagenet")


def resolve_stem(stem: str, image_size: int) -> str:
    """``auto`` -> ``cifar`` (3x3 stride 1, no max-pool) below 96 px, else ``imagenet``."""
    if stem not in STEMS:
        raise ConfigError(f"stem {stem!r} is not one of {', '.join(STEMS)}")
    if stem == "auto":
        return "cifar" if image_size < 96 else "imagenet"
    return stem


# builder(in_channels, image_size, resolved_stem, **kw) -> backbone
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "convnet": lambda c, s, stem, **kw: ConvNet(c, s, **kw),
    "fastnet": lambda c, s, stem, **kw: FastNet(c, s, **kw),
    # a quarter of fastnet's compute (widths 32-128-128): the CPU choice at fp32
    "fastnet-s": lambda c, s, stem, **kw: FastNet(c, s, **{"widths": (32, 128, 128), **kw}),
    "wrn-28-2": lambda c, s, stem, **kw: WideResNet(c, 3, 4, 2, **kw),
    "wrn-45-2": lambda c, s, stem, **kw: WideResNet(c, 4, 5, 2, **kw),
    "resnet18": lambda c, s, stem, **kw: ResNet("resnet18", c, stem, **kw),
    "resnet34": lambda c, s, stem, **kw: ResNet("resnet34", c, stem, **kw),
    "resnet50": lambda c, s, stem, **kw: ResNet("resnet50", c, stem, **kw),
}


def build_backbone(
    name: str, in_channels: int, image_size: int, stem: str = "auto", **kw: Any
) -> nn.Module:
    """Build backbone ``name`` for ``in_channels`` x ``image_size`` images.

    ``name`` is a key of ``BACKBONES`` or ``timm:<model>`` (needs timm). ``stem`` only
    matters for the ResNets. Extra keywords go to the backbone (``dropout``, ``norm``,
    ``widths``, ...). The result has ``feature_dim`` and ``stages()`` (see module doc).
    """
    if in_channels < 1 or image_size < 1:
        raise ConfigError(
            f"in_channels and image_size must be >= 1 (got {in_channels}, {image_size})"
        )
    resolved = resolve_stem(stem, image_size)
    if name.startswith("timm:"):
        return TimmBackbone(name.removeprefix("timm:"), in_channels, **kw)
    key = name.lower()
    if key not in BACKBONES:
        raise ConfigError(
            f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)} or timm:<model>"
        )
    try:
        return BACKBONES[key](in_channels, image_size, resolved, **kw)
    except TypeError as e:  # an unknown keyword
        raise ConfigError(f"backbone {name!r}: {e}") from None
