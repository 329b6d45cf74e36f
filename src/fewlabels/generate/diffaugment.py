"""Differentiable augmentation for GAN training (after Zhao et al., "Differentiable
Augmentation for Data-Efficient GAN Training", NeurIPS 2020).

The same random transformation family is applied to real and to generated images before
the discriminator sees them, and every op is differentiable in the images, so the
generator's gradient flows through it. That keeps the discriminator from memorising a
small training set without the augmentations leaking into the generated images.

Images are float tensors in [-1, 1], (N, C, H, W). All randomness comes from the given
``torch.Generator`` (one draw per sample), so a step is reproducible from its seed.

>>> g = torch.Generator().manual_seed(0)
>>> diff_augment(torch.zeros(4, 3, 16, 16), "color,translation,cutout", g).shape
torch.Size([4, 3, 16, 16])
"""

from __future__ import annotations

import torch

from fewlabels.core.errors import ConfigError

OPS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> a tuple of op names; ``""``/``none`` -> no ops."""
    text = policy.strip().lower()
    if text in ("", "none"):
        return ()
    ops = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in ops if p not in OPS]
    if bad:
        raise ConfigError(
            f"unknown augmentation {bad[0]!r} in {policy!r}; use a comma-separated subset of "
            f"{', '.join(OPS)} (or none)"
        )
    return ops


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, 1, 1, 1, generator=g, device=g.device)
    return (lo + (hi - lo) * u).to(like.device, like.dtype)


def color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5), per sample."""
    n = x.shape[0]
    x = x + _uniform(n, -0.5, 0.5, x, g)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * _uniform(n, 0.0, 2.0, x, g) + mean_c
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean_all) * _uniform(n, 0.5, 1.5, x, g) + mean_all


def translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sy, sy + 1, (n,), generator=g, device=g.device).to(x.device)
    dx = torch.randint(-sx, sx + 1, (n,), generator=g, device=g.device).to(x.device)
    padded = torch.nn.functional.pad(x, (sx, sx, sy, sy))
    rows = torch.arange(h, device=x.device)[None, :] + sy - dy[:, None]  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + sx - dx[:, None]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of ``ratio`` of the image size at a random centre in each image."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = torch.randint(0, h + (1 - ch % 2), (n,), generator=g, device=g.device).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n,), generator=g, device=g.device).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :] - (cy[:, None] - ch // 2)  # (N, H)
    xs = torch.arange(w, device=x.device)[None, :] - (cx[:, None] - cw // 2)
    inside_y = (ys >= 0) & (ys < ch)
    inside_x = (xs >= 0) & (xs < cw)
    hole = inside_y[:, :, None] & inside_x[:, None, :]  # (N, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)


_FUNCS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    x: torch.Tensor, policy: str | tuple[str, ...], g: torch.Generator
) -> torch.Tensor:
    """Apply the ops of ``policy`` (in the order color, translation, cutout as given)."""
    ops = parse_policy(policy) if isinstance(policy, str) else policy
    for op in ops:
        x = _FUNCS[op](x, g)
    return x.contiguous(memory_format=torch.channels_last) if ops else x
