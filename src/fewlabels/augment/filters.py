"""Filtering, noise and occlusion ops: Gaussian blur, Gaussian noise, cutout.

Every op takes float images ``x`` (N, C, H, W) in [0, 1] and a ``torch.Generator`` and
draws one set of parameters per sample (see :mod:`fewlabels.augment.ops`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewlabels.augment.sampling import _bc, _mask, _on_subset, _randint, _uniform

Tensor = torch.Tensor


def default_blur_kernel(side: int) -> int:
    """About 10% of the image side, odd, at least 3 (BYOL/SimCLR: 23 px at 224 px)."""
    k = round(0.1 * side)
    return max(3, k + 1 - k % 2)


def gaussian_blur(
    x: Tensor,
    gen: torch.Generator,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    kernel_size: int | None = None,
) -> Tensor:
    """Separable Gaussian blur, sigma uniform in ``sigma`` (pixels) per sample, on a
    fraction ``p`` of the samples; reflect padding.

    ``kernel_size`` defaults to :func:`default_blur_kernel` of the image side and is capped
    at the largest odd size that fits the image (images under 3 px are returned as is).
    Implemented as two grouped convolutions (groups = selected samples x channels).
    """
    n, c, h, w = x.shape
    dev = x.device
    sig = _uniform(n, sigma[0], sigma[1], gen, dev)
    on = _mask(n, p, gen, dev)
    side = min(h, w)
    k = min(kernel_size or default_blur_kernel(side), side - 1 + side % 2)
    k -= 1 - k % 2  # odd
    if k < 3:
        return x

    def blur(y: Tensor, idx: Tensor) -> Tensor:
        m = len(y)
        r = torch.arange(k, device=dev, dtype=y.dtype) - k // 2
        s = sig[idx].to(y.dtype)[:, None]
        ker = torch.exp(-(r**2) / (2 * s**2))
        ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (m*C, k)
        pad = k // 2
        z = F.pad(y.reshape(1, m * c, h, w), (pad, pad, pad, pad), mode="reflect")
        z = F.conv2d(z, ker.view(m * c, 1, 1, k), groups=m * c)
        z = F.conv2d(z, ker.view(m * c, 1, k, 1), groups=m * c)
        return z.view(m, c, h, w).clamp_(0, 1)  # the kernel sums to 1 up to rounding

    return _on_subset(x, on, blur)


def gaussian_noise(x: Tensor, gen: torch.Generator, std: float = 0.1, p: float = 1.0) -> Tensor:
    """Add N(0, std^2) pixel noise to a fraction ``p`` of the samples, clamped to [0, 1]."""
    m = _bc(_mask(len(x), p, gen, x.device).to(x.dtype))
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    return (x + noise.mul_(m * std)).clamp_(0, 1)


def cutout(
    x: Tensor, gen: torch.Generator, size: int = 16, p: float = 1.0, fill: float = 0.5
) -> Tensor:
    """Fill a ``size`` x ``size`` square centred at a uniform random pixel (clipped at the
    border) with ``fill``, in a fraction ``p`` of the samples."""
    n, _, h, w = x.shape
    dev = x.device
    y0 = _randint(0, h, n, gen, dev) - size // 2
    x0 = _randint(0, w, n, gen, dev) - size // 2
    on = _mask(n, p, gen, dev)
    ys = torch.arange(h, device=dev)
    xs = torch.arange(w, device=dev)
    my = (ys >= y0[:, None]) & (ys < (y0 + size)[:, None]) & on[:, None]
    mx = (xs >= x0[:, None]) & (xs < (x0 + size)[:, None])
    m = my[:, None, :, None] & mx[:, None, None, :]
    return x.masked_fill(m, fill)
