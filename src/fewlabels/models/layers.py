"""Small shared building blocks."""

from __future__ import annotations

from torch import nn

from fewlabels.core.errors import ConfigError


def norm_layer(kind: str, channels: int, momentum: float = 0.1) -> nn.Module:
    """BatchNorm (``batch``), GroupNorm with up to 8 groups (``group``) or nothing (``none``)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm {kind!r} is not one of batch, group, none")


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit norms, small linear layers."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
