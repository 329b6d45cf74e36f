"""A classifier: input normalisation + backbone + linear head, rebuildable from its config."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.models.registry import build_backbone


def _jsonable(v: Any) -> Any:
    """Tuples -> lists, recursively, so the config survives a JSON round-trip unchanged."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


class Network(nn.Module):
    """Maps float images in [0, 1] to logits; ``features`` gives the backbone's vector.

    ``mean``/``std`` (per channel; default 0.5/0.25) are buffers, so they travel with the
    state dict. ``num_classes=0`` makes an encoder: ``head`` is the identity and
    ``forward`` returns features. ``Network.from_config(net.config)`` rebuilds the
    architecture, into which ``net.state_dict()`` loads strictly.

    >>> net = Network("convnet", in_channels=3, image_size=32, num_classes=10)
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        image_size: int,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        stem: str = "auto",
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mean = [float(v) for v in mean] if mean is not None else [0.5] * in_channels
        std = [float(v) for v in std] if std is not None else [0.25] * in_channels
        if len(mean) != in_channels or len(std) != in_channels:
            raise ConfigError(
                f"mean and std need {in_channels} values (got {len(mean)} and {len(std)})"
            )
        if min(std) <= 0:
            raise ConfigError(f"std must be positive (got {std})")
        if num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0 (got {num_classes})")
        kwargs = dict(backbone_kwargs or {})
        self._config: dict[str, Any] = _jsonable(
            {
                "backbone": backbone,
                "in_channels": int(in_channels),
                "image_size": int(image_size),
                "num_classes": int(num_classes),
                "mean": mean,
                "std": std,
                "stem": stem,
                "backbone_kwargs": kwargs,
            }
        )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.backbone = build_backbone(backbone, in_channels, image_size, stem, **kwargs)
        self.feature_dim = int(self.backbone.feature_dim)  # type: ignore[arg-type]
        self.num_classes = int(num_classes)
        self.head: nn.Module = (
            nn.Linear(self.feature_dim, num_classes) if num_classes > 0 else nn.Identity()
        )

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-serialisable dict (a fresh copy)."""
        return copy.deepcopy(self._config)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Network:
        """Rebuild an (untrained) network with the architecture recorded in ``cfg``."""
        return cls(**cfg)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` for float images in [0, 1]; keeps the memory format."""
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(N, feature_dim)`` of images in [0, 1]."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
