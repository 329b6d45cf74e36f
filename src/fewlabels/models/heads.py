"""Heads that methods put on a backbone's feature vector: MLP projectors and predictors,
prototype layers, DINO's head and the autoencoders' convolutional decoder.

Each is an ``nn.Sequential`` or ``nn.Linear`` subclass laid out as the methods' heads have
always been (``projector.0.weight``, ``head.1.weight``, ...), so checkpoints keep their
state_dict keys.

>>> import torch
>>> head = ProjectionHead(512, (2048, 128))  # SimCLR's projector on a 512-d encoder
>>> head(torch.randn(4, 512)).shape
torch.Size([4, 128])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError


class MLP(nn.Sequential):
    """Linear layers ``in_dim -> sizes[0] -> ... -> sizes[-1]``.

    Every layer but the last is Linear + BatchNorm1d (when ``bn``; the Linear then has no
    bias) + ReLU. The last is a plain Linear, followed by an affine-free BatchNorm1d when
    ``last_bn``. Modules are numbered as in one flat ``nn.Sequential``.

    >>> MLP(8, (4,))  # a single linear layer
    MLP(
      (0): Linear(in_features=8, out_features=4, bias=True)
    )
    """

    def __init__(
        self, in_dim: int, sizes: Sequence[int], bn: bool = True, last_bn: bool = False
    ) -> None:
        dims = [int(in_dim), *(int(d) for d in sizes)]
        if len(dims) < 2 or min(dims) < 1:
            raise ConfigError(f"an MLP needs at least two positive sizes, got {dims}")
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims[:-1]):
            layers.append(nn.Linear(a, b, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(dims[-1], affine=False))
        super().__init__(*layers)
        self.out_dim = dims[-1]


class ProjectionHead(MLP):
    """A projector from the encoder's features to the embedding a loss compares
    (SimCLR, Barlow Twins, VICReg, BYOL, SwAV, Self-Classifier; MoCo's with ``bn=False``).

    >>> ProjectionHead(512, (2048, 128)).out_dim
    128
    """


class PredictionHead(MLP):
    """BYOL's predictor: ``dim -> hidden (BN, ReLU) -> dim``.

    >>> PredictionHead(256, 4096)(torch.randn(2, 256)).shape
    torch.Size([2, 256])
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(dim, (hidden, dim))


class CosineLinear(nn.Linear):
    """Bias-free linear layer on L2-normalised inputs and L2-normalised weight rows: the
    outputs are cosine similarities to ``out_features`` prototypes (a weight-normalised
    layer with its gain fixed to 1, as DINO's last layer and Self-Classifier's classifier).

    It runs in fp32 even under bf16 autocast: its outputs are divided by temperatures as
    small as 0.04, which would magnify bf16's rounding into the logits.

    >>> CosineLinear(16, 10)(torch.randn(2, 16)).abs().max() <= 1
    tensor(True)
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Cosine scores; ``frozen``: the weight gets a zero gradient (only weight decay can
        move it, and DDP still sees it used)."""
        weight = self.weight.detach() + 0.0 * self.weight if frozen else self.weight
        with torch.autocast(x.device.type, enabled=False):
            w = F.normalize(weight.float(), dim=1)
            return F.normalize(x.float(), dim=1) @ w.T


class Prototypes(nn.Linear):
    """SwAV's prototypes: ``num`` vectors of size ``dim`` (the rows of ``weight``), kept at
    unit norm by ``normalize_`` after every optimiser step.

    >>> p = Prototypes(16, 10)
    >>> p.normalize_()
    >>> p.weight.norm(dim=1).allclose(torch.ones(10))
    True
    """

    def __init__(self, dim: int, num: int) -> None:
        super().__init__(int(dim), int(num), bias=False)

    @torch.no_grad()
    def normalize_(self) -> None:
        """Scale every prototype to unit length, in place."""
        self.weight.copy_(F.normalize(self.weight, dim=1))


class DINOHead(nn.Sequential):
    """DINO's head: an MLP to a bottleneck (``head[0]``), then cosine scores against
    ``num_prototypes`` weight-normalised prototypes (``head[1]``, a ``CosineLinear``).

    >>> DINOHead(512, (2048, 2048, 256), 4096)(torch.randn(2, 512)).shape
    torch.Size([2, 4096])
    """

    def __init__(
        self, in_dim: int, sizes: Sequence[int], num_prototypes: int, bn: bool = False
    ) -> None:
        mlp = MLP(in_dim, sizes, bn=bn)
        super().__init__(mlp, CosineLinear(mlp.out_dim, int(num_prototypes)))


def decoder_plan(image_size: int) -> tuple[int, int]:
    """``(start_side, upsamplings)``: the fewest x2 steps from a map of side <= 4 that
    reach ``image_size`` (the output is cropped when it overshoots, e.g. 28 -> 32 -> 28)."""
    if image_size < 1:
        raise ConfigError(f"image size must be >= 1, got {image_size}")
    n = max(1, math.ceil(math.log2(image_size / 4))) if image_size > 4 else 1
    return math.ceil(image_size / 2**n), n


class ConvDecoder(nn.Module):
    """Feature vector ``(N, in_dim)`` -> image ``(N, channels, size, size)`` in [0, 1].

    Linear to a ``width`` x s x s map (s <= 4), then stride-2 4x4 transposed convolutions
    (BatchNorm + ReLU between them) halving the width (not below ``min_width``) while
    doubling the side; the last one outputs ``channels`` maps, then a sigmoid.

    >>> ConvDecoder(512, 3, 32)(torch.randn(2, 512)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self, in_dim: int, channels: int, image_size: int, width: int = 64, min_width: int = 16
    ) -> None:
        super().__init__()
        if min(in_dim, channels, width, min_width) < 1:
            raise ConfigError(
                f"decoder sizes must be positive (in {in_dim}, channels {channels}, "
                f"width {width}, min_width {min_width})"
            )
        side, n = decoder_plan(image_size)
        widths = [max(min_width, width >> k) for k in range(n)] + [channels]
        self.image_size, self.side, self.width0 = image_size, side, widths[0]
        self.fc = nn.Linear(in_dim, widths[0] * side * side, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for k in range(n):
            last = k == n - 1
            layers.append(nn.ConvTranspose2d(widths[k], widths[k + 1], 4, 2, 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(widths[k + 1]), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.width0, self.side, self.side)
        x = x.contiguous(memory_format=torch.channels_last)
        out = torch.sigmoid(self.net(x))
        s = self.image_size
        return out[:, :, :s, :s] if out.shape[-1] != s else out


__all__ = [
    "MLP",
    "ConvDecoder",
    "CosineLinear",
    "DINOHead",
    "PredictionHead",
    "ProjectionHead",
    "Prototypes",
    "decoder_plan",
]
