"""RandAugment: per-sample random colour and geometric ops at a chosen magnitude.

Colour ops act on the samples that drew them (one masked subset per op type); the
geometric ops share one per-sample affine matrix and a single ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fewlabels.augment.color import _blend, _gray, _gray_mean
from fewlabels.augment.geometric import _affine
from fewlabels.augment.sampling import _bc, _mask, _rand, _randint

Tensor = torch.Tensor

COLOR_OPS = (
    "identity",
    "autocontrast",
    "equalize",
    "brightness",
    "color",
    "contrast",
    "posterize",
    "sharpness",
    "solarize",
)
GEOM_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
RAND_OPS = COLOR_OPS + GEOM_OPS
MAX_ROTATE_DEG = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3  # fraction of the image side (FixMatch's RandAugment)
MAX_ENHANCE = 0.9  # brightness/colour/contrast/sharpness factor in [0.1, 1.9]


def _quantize(x: Tensor) -> Tensor:
    return (x * 255).round_().clamp_(0, 255)


def _autocontrast(x: Tensor) -> Tensor:
    """Stretch each channel to [0, 1]; constant channels stay as they are."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1 / (hi - lo).clamp_min(1e-6))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return ((x - lo) * scale).clamp_(0, 1)


def _equalize(x: Tensor) -> Tensor:
    """Histogram equalisation per image and channel on 256 levels (PIL's algorithm),
    batched with one ``bincount``."""
    n, c, h, w = x.shape
    m, hw = n * c, h * w
    q = _quantize(x).to(torch.int64).reshape(m, hw)
    levels = torch.arange(256, device=x.device)
    if x.is_cuda and torch.are_deterministic_algorithms_enabled():  # no atomics: sort
        cdf = torch.searchsorted(q.sort(1).values, levels.expand(m, 256).contiguous(), right=True)
        hist = torch.diff(cdf, dim=1, prepend=torch.zeros_like(cdf[:, :1]))
    else:
        offs = torch.arange(m, device=x.device)[:, None] * 256
        hist = torch.bincount((q + offs).reshape(-1), minlength=m * 256).view(m, 256)
        cdf = hist.cumsum(1)
    last = torch.where(hist > 0, levels, -1).amax(1, keepdim=True)  # top non-empty level
    step = (hw - hist.gather(1, last)) // 255
    lut = (cdf + step // 2) // step.clamp_min(1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp_(0, 255)
    out = lut.gather(1, q).to(x.dtype).div_(255)
    out = torch.where(step == 0, x.reshape(m, hw), out)
    return out.view(n, c, h, w)


def _sharpen(x: Tensor, f: Tensor) -> Tensor:
    """Blend with PIL's smoothing filter (border pixels kept); f > 1 sharpens."""
    c = x.shape[1]
    if min(x.shape[-2:]) < 3:
        return x
    k = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, k.expand(c, 1, 3, 3), groups=c)
    return _blend(x, smooth, f)


def _color_op(name: str, x: Tensor, v: Tensor) -> Tensor:
    """Colour op ``name`` at signed strength ``v`` in [-1, 1] per sample (the sign is
    ignored by the one-sided ops)."""
    if name == "autocontrast":
        return _autocontrast(x)
    if name == "equalize":
        return _equalize(x)
    if name == "brightness":
        return (x * _bc(1 + MAX_ENHANCE * v)).clamp_(0, 1)
    if name == "color":
        return _blend(x, _gray(x), 1 + MAX_ENHANCE * v)
    if name == "contrast":
        return _blend(x, _gray_mean(x), 1 + MAX_ENHANCE * v)
    if name == "posterize":  # keep 8 - round(4|v|) bits
        div = _bc(2.0 ** torch.round(4 * v.abs()))
        return (torch.floor(_quantize(x) / div) * div).div_(255)
    if name == "sharpness":
        return _sharpen(x, 1 + MAX_ENHANCE * v)
    if name == "solarize":
        return torch.where(x >= _bc(1 - v.abs()), 1 - x, x)
    raise ValueError(f"unknown colour op {name!r}")


def _geom_theta(kind: Tensor, v: Tensor, h: int, w: int) -> Tensor:
    """Per-sample affine matrices (output -> input, normalised coordinates) for geometric
    op ``GEOM_OPS[kind]`` at signed strength ``v``; aspect-correct for non-square images."""
    zero = torch.zeros_like(v)
    ang = torch.where(kind == 0, v * math.radians(MAX_ROTATE_DEG), zero)
    shx = torch.where(kind == 1, v * MAX_SHEAR, zero)
    shy = torch.where(kind == 2, v * MAX_SHEAR, zero)
    theta = torch.zeros(len(v), 2, 3, device=v.device, dtype=v.dtype)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = (shx - sin) * (h / w)
    theta[:, 1, 0] = (shy + sin) * (w / h)
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = torch.where(kind == 3, 2 * MAX_TRANSLATE * v, zero)
    theta[:, 1, 2] = torch.where(kind == 4, 2 * MAX_TRANSLATE * v, zero)
    return theta


def rand_augment(
    x: Tensor,
    gen: torch.Generator,
    num_ops: int = 2,
    magnitude: float | None = 10,
    max_magnitude: float = 30,
    fill: float = 0.5,
) -> Tensor:
    """RandAugment: each sample gets ``num_ops`` ops drawn uniformly (with replacement) from
    ``RAND_OPS``, applied in sequence.

    ``magnitude`` is on a 0..``max_magnitude`` scale (10 of 30 by default; 30 = rotate by
    30 degrees, shear 0.3, translate 0.3 of the side, enhance factor 1 +- 0.9, solarize
    threshold 0, posterize to 4 bits); ``None`` draws a magnitude uniform over the whole
    range per sample and op (FixMatch's RandAugment). Directions are random. Areas moved
    in by geometric ops are filled with ``fill``.
    """
    n, _, h, w = x.shape
    dev = x.device
    n_color = len(COLOR_OPS)
    for _ in range(num_ops):
        op = _randint(0, len(RAND_OPS), n, gen, dev)
        u = _rand((n,), gen, dev)
        mag = u if magnitude is None else torch.full_like(u, min(magnitude / max_magnitude, 1))
        v = torch.where(_mask(n, 0.5, gen, dev), mag, -mag)
        out = x.clone()
        for j, name in enumerate(COLOR_OPS):
            if name == "identity":
                continue
            idx = (op == j).nonzero().squeeze(1)
            if idx.numel():
                out[idx] = _color_op(name, x[idx], v[idx]).to(out.dtype)
        idx = (op >= n_color).nonzero().squeeze(1)
        if idx.numel():
            theta = _geom_theta(op[idx] - n_color, v[idx], h, w)
            out[idx] = _affine(x[idx], theta, fill=fill).clamp_(0, 1).to(out.dtype)
        x = out
    return x
