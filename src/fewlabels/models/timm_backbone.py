"""Optional timm backbones (``timm:<name>``) for users who have timm installed.

timm needs torchvision built for the installed torch (PyPI's torchvision wheels link
against PyPI's CUDA torch: beside a CPU-only torch build, ``import torchvision`` fails with
"operator torchvision::nms does not exist"; that error is shown as it is).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fewlabels.core.errors import ConfigError


def import_timm() -> Any:
    """The ``timm`` module, or a one-line ConfigError: "not installed" only when timm itself
    is absent; any other failure (a torchvision built for another torch, a missing
    dependency) is shown as it is."""
    try:
        import timm
    except ImportError as e:
        if e.name == "timm" or str(e) == "No module named 'timm'":
            raise ConfigError("timm is not installed; pip install 'fewlabels[timm]'") from None
        raise ConfigError(f"timm is installed but cannot be imported: {_first_line(e)}") from None
    except Exception as e:  # e.g. RuntimeError: operator torchvision::nms does not exist
        raise ConfigError(f"timm is installed but cannot be imported: {_first_line(e)}") from None
    return timm


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class TimmBackbone(nn.Module):
    """A timm model without its classifier; ``feature_dim`` from timm's ``num_features``."""

    def __init__(self, name: str, in_channels: int, **kw: Any) -> None:
        super().__init__()
        timm = import_timm()
        try:
            self.model = timm.create_model(name, num_classes=0, in_chans=in_channels, **kw)
        except RuntimeError as e:
            raise ConfigError(f"timm backbone {name!r}: {str(e).splitlines()[0]}") from None
        self.feature_dim = int(self.model.num_features)

    def stages(self) -> list[nn.Module]:
        return [self.model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
