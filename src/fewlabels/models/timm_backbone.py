"""Optional timm backbones (``timm:<name>``) for users who have timm installed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fewlabels.core.errors import ConfigError


class TimmBackbone(nn.Module):
    """A timm model without its classifier; ``feature_dim`` from timm's ``num_features``."""

    def __init__(self, name: str, in_channels: int, **kw: Any) -> None:
        super().__init__()
        try:
            import timm
        except Exception:  # ImportError, or a timm whose torchvision cannot load
            raise ConfigError("timm is not installed; pip install 'fewlabels[timm]'") from None
        try:
            self.model = timm.create_model(name, num_classes=0, in_chans=in_channels, **kw)
        except RuntimeError as e:
            raise ConfigError(f"timm backbone {name!r}: {str(e).splitlines()[0]}") from None
        self.feature_dim = int(self.model.num_features)

    def stages(self) -> list[nn.Module]:
        return [self.model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
