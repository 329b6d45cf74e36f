"""The reports' small ConvNet (report 001): 3x3 stride-2 conv blocks to width 128,
ReLU, Dropout2d, flattened to a 512-d feature."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fewlabels.models.layers import init_weights, norm_layer


class ConvNet(nn.Module):
    """Four 3x3 stride-2 conv blocks (widths 32-64-128-128), pooled to 2x2 -> 512 features.

    Downsampling stops once the map is 1x1 (images under 16 px). On such small maps a
    padded 3x3 kernel mostly multiplies padding: a block whose input is 1x1 uses a 1x1
    kernel and a stride-2 block on a 2x2 map a 2x2 kernel without padding (the taps that
    see the image; the same functions at a fraction of the cost, 8x8 digits train ~1.5x
    faster), and a final 1x1 map is repeated, not average-pooled, into the 2x2 grid.

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
            kernel, pad = {1: (1, 0), 2: (2, 0)}.get(side, (3, 1))
            side = (side + 1) // 2 if stride == 2 else side
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c, w, kernel, stride=stride, padding=pad, bias=norm == "none"),
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
        if x.shape[-1] == 1 and x.shape[-2] == 1:  # what the 2x2 pool would give, cheaper
            return torch.flatten(x, 1).repeat_interleave(4, dim=1)
        return torch.flatten(self.pool(x), 1)
