"""A fast small network for CPU work, after airbench94 (Keller Jordan, 2024): a 2x2 stem,
then groups of conv - max-pool - BN - GELU - conv - BN - GELU, global max-pool."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fewlabels.models.layers import init_weights, norm_layer


class FastGroup(nn.Module):
    def __init__(self, cin: int, cout: int, pool: bool, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn1 = norm_layer(norm, cout, momentum=0.4)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, cout, momentum=0.4)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class FastNet(nn.Module):
    """``widths`` per group (default 64-256-256); pooling stops before the map reaches 1 px."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        widths: Sequence[int] = (64, 256, 256),
        stem_width: int = 24,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        k = 2 if image_size >= 16 else 3
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, k, padding=0 if k == 2 else 1, bias=False),
            norm_layer(norm, stem_width),
            nn.GELU(),
        )
        side = image_size - 1 if k == 2 else image_size
        groups, cin = [], stem_width
        for w in widths:
            pool = side >= 2
            side = side // 2 if pool else side
            groups.append(FastGroup(cin, w, pool, norm))
            cin = w
        self.groups = nn.ModuleList(groups)
        self.feature_dim = cin
        init_weights(self)

    def stages(self) -> list[nn.Module]:
        return [self.stem, *self.groups]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for g in self.groups:
            x = g(x)
        return torch.amax(x, dim=(2, 3))
