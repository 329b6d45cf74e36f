"""Geometric ops: flips, translation (pad and crop), rotation by 90 degrees, resized crops.

Every op takes images ``x`` (N, C, H, W) and a ``torch.Generator`` and draws one set of
parameters per sample (see :mod:`fewlabels.augment.ops`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fewlabels.augment.sampling import _bc, _mask, _rand, _randint

PAD_MODES = ("reflect", "replicate", "zeros", "constant")  # constant = zeros

Tensor = torch.Tensor


def hflip(x: Tensor, gen: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror left-right with probability ``p`` per sample (any dtype)."""
    m = _mask(len(x), p, gen, x.device)
    return torch.where(_bc(m), x.flip(3), x)


def vflip(x: Tensor, gen: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror top-bottom with probability ``p`` per sample (any dtype)."""
    m = _mask(len(x), p, gen, x.device)
    return torch.where(_bc(m), x.flip(2), x)


def _fold(idx: Tensor, size: int, mode: str) -> tuple[Tensor, Tensor | None]:
    """Map out-of-range indices into [0, size) as padding ``mode`` would; for ``zeros`` also
    return which indices were inside the image."""
    if mode == "reflect":  # dcb|abcd|cba, periodic for any offset
        if size == 1:
            return torch.zeros_like(idx), None
        period = 2 * (size - 1)
        idx = idx.remainder(period)
        return torch.where(idx >= size, period - idx, idx), None
    if mode == "replicate":
        return idx.clamp(0, size - 1), None
    if mode in ("zeros", "constant"):
        return idx.clamp(0, size - 1), (idx >= 0) & (idx < size)
    raise ValueError(f"unknown padding mode {mode!r}; choose from {', '.join(PAD_MODES)}")


def pad_crop(
    x: Tensor,
    gen: torch.Generator,
    pad: int = 4,
    mode: str = "reflect",
    flip_p: float = 0.0,
) -> Tensor:
    """Random translation by up to ``pad`` px per axis and sample, as padding by ``pad``
    (``reflect``, ``replicate`` or ``zeros``/``constant``) and cropping back; one gather, any dtype.

    ``flip_p`` > 0 also mirrors left-right in the same gather (the weak policy's
    flip + crop for the cost of one pass over uint8 pixels). Offsets 0 give ``x``.
    """
    n, c, h, w = x.shape
    dev = x.device
    dy = _randint(-pad, pad + 1, n, gen, dev)
    dx = _randint(-pad, pad + 1, n, gen, dev)
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip_p > 0:
        cols = torch.where(_mask(n, flip_p, gen, dev)[:, None], w - 1 - cols, cols)
    rows, vr = _fold(torch.arange(h, device=dev) + dy[:, None], h, mode)
    cols, vc = _fold(cols + dx[:, None], w, mode)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w)
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        out = x.reshape(n, c, h * w).gather(2, flat.expand(n, c, h * w)).view(n, c, h, w)
    else:  # keep channels_last inputs in their layout
        nhwc = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        out = nhwc.gather(1, flat.view(n, h * w, 1).expand(n, h * w, c))
        out = out.view(n, h, w, c).permute(0, 3, 1, 2)
    if vr is not None and vc is not None:
        out = out * (vr[:, :, None] & vc[:, None, :])[:, None].to(out.dtype)
    return out


def rot90(x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Rotate each square image by k x 90 degrees counter-clockwise (``torch.rot90``), k
    uniform in {0, 1, 2, 3} per sample; returns ``(rotated, k)`` with k int64."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rot90 needs square images, got {tuple(x.shape[-2:])}")
    k = _randint(0, 4, len(x), gen, x.device)
    out = x.clone()
    for q in (1, 2, 3):
        idx = (k == q).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = torch.rot90(x[idx], q, dims=(2, 3))
    return out, k


def _affine(
    x: Tensor, theta: Tensor, size: tuple[int, int] | None = None, fill: float | None = None
) -> Tensor:
    """Bilinear resampling with per-sample 2x3 ``theta`` (output -> input, normalised
    coordinates). Outside the image: the border pixel (``fill`` None) or ``fill``."""
    n, c, h, w = x.shape
    oh, ow = size or (h, w)
    grid = F.affine_grid(theta.to(x.dtype), [n, c, oh, ow], align_corners=False)
    if fill is None:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return y.add_(fill)


def random_resized_crop(
    x: Tensor,
    gen: torch.Generator,
    size: int | tuple[int, int] | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.0,
) -> Tensor:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` (log-uniform)
    per sample and resize it to ``size`` (default: input size), bilinear, in one
    ``grid_sample``. As torchvision: up to 10 tries for a crop that fits, else the whole
    image. ``flip_p`` mirrors left-right in the same resampling."""
    n, _, h, w = x.shape
    dev = x.device
    tries = 10
    area = scale[0] + (scale[1] - scale[0]) * _rand((n, tries), gen, dev)
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(
        (n, tries), gen, dev
    )
    r = torch.exp(logr)
    fw = torch.sqrt(area * r * h / w)  # crop width as a fraction of the image width
    fh = torch.sqrt(area / r * w / h)
    fits = (fw <= 1) & (fh <= 1)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # first crop that fits
    fw, fh = fw.gather(1, first).squeeze(1), fh.gather(1, first).squeeze(1)
    in_ratio = w / h  # fallback: the whole image, aspect clamped to ``ratio``
    fb_w = min(1.0, h * ratio[1] / w) if in_ratio > ratio[1] else 1.0
    fb_h = min(1.0, w / ratio[0] / h) if in_ratio < ratio[0] else 1.0
    none = ~fits.any(1)
    fw = torch.where(none, torch.full_like(fw, fb_w), fw)
    fh = torch.where(none, torch.full_like(fh, fb_h), fh)
    cx = (1 - fw) * (2 * _rand((n,), gen, dev) - 1)  # crop centre, normalised coordinates
    cy = (1 - fh) * (2 * _rand((n,), gen, dev) - 1)
    sx = torch.where(_mask(n, flip_p, gen, dev), -fw, fw) if flip_p > 0 else fw
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = fh, cy
    out_hw = (size, size) if isinstance(size, int) else (size or (h, w))
    return _affine(x, theta, out_hw).clamp_(0, 1)
