"""The reports' small ConvNet (report 001): 3x3 stride-2 conv blocks to width 128,
ReLU, Dropout2d, flattened to a 512-d feature."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fewlabels.models.layers import init_weights, norm_layer


class ConvNet(nn.Module):
    """Four 3x3 stride-2 conv blocks (widths 32-64-128-128), pooled to 2x2 -> 512 features.

    Downsampling stops once the map is 1x1 (images under 16 px).

    ``norm`` is ``batch`` (default), ``group`` or ``none``; without batch statistics the
    network gives identical updates however a batch is split over processes.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        widths: Sequence[int] = (32, 64, 128, 128),
        dropout: float = 0.1,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        blocks, c, side = [], in_channels, image_size
        for w in widths:
            # Small images (8x8 digits) stop downsampling at 1x1: a stride-2 conv on a
            # 1x1 map adds nothing and its bf16 weight gradient is not finite on CPU.
            stride = 2 if side >= 2 else 1
            side = (side + 1) // 2 if stride == 2 else side
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c, w, 3, stride=stride, padding=1, bias=norm == "none"),
                    norm_layer(norm, w),
                    nn.ReLU(inplace=True),
                    nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                )
            )
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.feature_dim = 4 * c
        init_weights(self)

    def stages(self) -> list[nn.Module]:
        """The conv blocks, input side first."""
        return list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return torch.flatten(self.pool(x), 1)
