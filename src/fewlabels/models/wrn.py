"""Wide ResNets as used by FixMatch/USB and report 001: pre-activation blocks
(BN - LeakyReLU(0.1) - conv), widen factor 2, BatchNorm momentum 0.001.

WRN-28-2 has 3 groups of 4 blocks (32-64-128 wide); the reports' WRN-45-2 has 4 groups
of 5 blocks (16-32-64-128). Both give 128-d features.
"""

from __future__ import annotations

import torch
from torch import nn

from fewlabels.models.layers import init_weights, norm_layer

BN_MOMENTUM = 0.001  # FixMatch / USB


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.bn1 = norm_layer(norm, cin, BN_MOMENTUM)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(norm, cout, BN_MOMENTUM)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(0.1, inplace=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.short = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act(self.bn1(x))
        shortcut = x if self.short is None else self.short(o)
        o = self.conv1(o)
        o = self.conv2(self.drop(self.act(self.bn2(o))))
        return o + shortcut


class WideResNet(nn.Module):
    """``stages()`` are the stem convolution and each group of blocks."""

    def __init__(
        self,
        in_channels: int,
        groups: int,
        blocks_per_group: int,
        widen: int = 2,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # the last group is 64 x widen wide (128-d features for widen 2) in both layouts
        widths = [64 * widen // 2 ** (groups - 1 - i) for i in range(groups)]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers, cin = [], 16
        for i, w in enumerate(widths):
            blocks = []
            for j in range(blocks_per_group):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(PreActBlock(cin, w, stride, norm, dropout))
                cin = w
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.ModuleList(layers)
        self.final = nn.Sequential(norm_layer(norm, cin, BN_MOMENTUM), nn.LeakyReLU(0.1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        init_weights(self)

    def stages(self) -> list[nn.Module]:
        return [self.stem, *self.layers[:-1], nn.Sequential(self.layers[-1], self.final)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return torch.flatten(self.pool(self.final(x)), 1)
