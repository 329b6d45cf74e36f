"""Batched image operations with per-sample random parameters.

Every op takes float images ``x`` (N, C, H, W) in [0, 1] on any device and a
``torch.Generator`` on that device, draws one set of parameters per sample, and works on
the whole batch at once (loops run over op types or a handful of values, never over
samples). The exceptions are the ``*_u8`` gathers, which work on uint8 images before
conversion so the weak policy touches a quarter of the bytes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def _rand(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * _rand(n, gen, dev)


def _mask(n: int, p: float, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    return _rand(n, gen, dev) < p


def _bcast(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror left-right with probability ``p`` per sample."""
    m = _mask(len(x), p, gen, x.device)
    return torch.where(_bcast(m), x.flip(3), x)


def vflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror top-bottom with probability ``p`` per sample."""
    m = _mask(len(x), p, gen, x.device)
    return torch.where(_bcast(m), x.flip(2), x)


def _reflect(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad indices (``dcb|abcd|cba``) into [0, size)."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def flip_pad_crop_u8(
    x: torch.Tensor, gen: torch.Generator, pad: int, flip_p: float = 0.5
) -> torch.Tensor:
    """Random translation by up to ``pad`` px (reflect padding) and horizontal flip, in one
    gather on uint8 (N, C, H, W). Returns (N, C, H, W) in channels_last layout."""
    n, _, h, w = x.shape
    dev = x.device
    dy = torch.randint(-pad, pad + 1, (n,), generator=gen, device=dev)
    dx = torch.randint(-pad, pad + 1, (n,), generator=gen, device=dev)
    flip = _mask(n, flip_p, gen, dev)
    cols = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], w - 1 - cols, cols)  # flip first, then shift
    rows = _reflect(torch.arange(h, device=dev)[None] + dy[:, None], h)
    cols = _reflect(cols + dx[:, None], w)
    flat_rows = (torch.arange(n, device=dev)[:, None] * h + rows).reshape(-1)
    nhwc = x.permute(0, 2, 3, 1)  # a view; the gather below reads (N*H, W, C) rows
    out = nhwc.reshape(n * h, w, -1)[flat_rows].view(n, h, w, -1)
    out = torch.gather(out, 2, cols[:, None, :, None].expand(n, h, w, out.shape[-1]))
    return out.permute(0, 3, 1, 2)


def pad_crop(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels with reflect padding, per sample."""
    n, c, h, w = x.shape
    dev = x.device
    dy = torch.randint(-pad, pad + 1, (n,), generator=gen, device=dev)
    dx = torch.randint(-pad, pad + 1, (n,), generator=gen, device=dev)
    rows = _reflect(torch.arange(h, device=dev)[None] + dy[:, None], h)
    cols = _reflect(torch.arange(w, device=dev)[None] + dx[:, None], w)
    out = torch.gather(x, 2, rows[:, None, :, None].expand(n, c, h, w))
    return torch.gather(out, 3, cols[:, None, None, :].expand(n, c, h, w))


def _affine(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int] | None = None,
            padding: str = "reflection") -> torch.Tensor:  # fmt: skip
    n, c, h, w = x.shape
    oh, ow = size or (h, w)
    grid = F.affine_grid(theta.to(x.dtype), [n, c, oh, ow], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def random_resized_crop(
    x: torch.Tensor,
    gen: torch.Generator,
    size: int | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.0,
) -> torch.Tensor:
    """Crop a random area fraction and aspect ratio per sample, resize to ``size`` (bilinear);
    optionally mirror in the same resampling (``flip_p``)."""
    n, _, h, w = x.shape
    dev = x.device
    area = _uniform(n, scale[0], scale[1], gen, dev)
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen, dev)
    r = torch.exp(logr)
    cw = torch.sqrt(area * r).clamp(max=1.0)  # crop width, fraction of the image
    ch = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - cw) * (2 * _rand(n, gen, dev) - 1)  # centre in [-1+cw, 1-cw]
    cy = (1 - ch) * (2 * _rand(n, gen, dev) - 1)
    sx = torch.where(_mask(n, flip_p, gen, dev), -cw, cw)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = ch, cy
    side = size or h
    return _affine(x, theta, (side, side) if size else (h, w), padding="border")


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    wts = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * wts).sum(1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``b + factor * (a - b)``, clamped: factor 1 gives ``a``, 0 gives ``b``."""
    return (b + _bcast(factor) * (a - b)).clamp_(0, 1)


def _hue_rotate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` turns in YIQ space (per sample)."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        device=x.device,
        dtype=x.dtype,
    )
    from_yiq = torch.linalg.inv(to_yiq)
    ang = 2 * math.pi * shift
    cos, sin = torch.cos(ang), torch.sin(ang)
    rot = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    mat = from_yiq @ rot @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", mat, x).clamp_(0, 1)


def color_jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue factors drawn per sample; applied to a
    fraction ``p`` of the samples (the others keep identity factors)."""
    n, dev = len(x), x.device
    on = _mask(n, p, gen, dev).to(x.dtype)

    def factor(strength: float) -> torch.Tensor:
        f = _uniform(n, max(0.0, 1 - strength), 1 + strength, gen, dev)
        return 1 + on * (f - 1)

    b, c, s = factor(brightness), factor(contrast), factor(saturation)
    h = on * _uniform(n, -hue, hue, gen, dev)
    x = (x * _bcast(b)).clamp_(0, 1) if brightness > 0 else x
    if contrast > 0:
        x = _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), c)
    if x.shape[1] == 3:
        if saturation > 0:
            x = _blend(x, _gray(x), s)
        if hue > 0:
            x = _hue_rotate(x, h)
    return x


def grayscale(x: torch.Tensor, gen: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace a fraction ``p`` of the samples by their luma (channel count kept)."""
    m = _mask(len(x), p, gen, x.device)
    if x.shape[1] == 1:
        return x
    return torch.where(_bcast(m), _gray(x).expand_as(x), x)


def gaussian_blur(
    x: torch.Tensor,
    gen: torch.Generator,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    reference_size: int = 96,
) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma on a fraction ``p`` of the samples.

    ``sigma`` is in pixels at ``reference_size`` and scales with the image side (at least
    x0.25), so a 32 px image is blurred as much, relatively, as a 96 px one.
    """
    n, c, h, w = x.shape
    dev = x.device
    scale = max(min(h, w) / reference_size, 0.25)
    smax = sigma[1] * scale
    k = min(2 * math.ceil(3 * smax) + 1, (min(h, w) // 2) * 2 - 1)
    if k < 3:
        return x
    sig = _uniform(n, sigma[0] * scale, smax, gen, dev)
    on = _mask(n, p, gen, dev)
    sig = torch.where(on, sig, torch.full_like(sig, 1e-3))
    r = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
    ker = torch.exp(-(r[None] ** 2) / (2 * sig[:, None].to(x.dtype) ** 2))
    ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, k)
    y = x.reshape(1, n * c, h, w)
    pad = k // 2
    y = F.pad(y, (pad, pad, 0, 0), mode="reflect")
    y = F.conv2d(y, ker.view(n * c, 1, 1, k), groups=n * c)
    y = F.pad(y, (0, 0, pad, pad), mode="reflect")
    y = F.conv2d(y, ker.view(n * c, 1, k, 1), groups=n * c)
    return y.view(n, c, h, w)


def solarize(
    x: torch.Tensor, gen: torch.Generator, p: float = 0.2, threshold: float = 0.5
) -> torch.Tensor:
    """Invert pixels at or above ``threshold`` in a fraction ``p`` of the samples."""
    m = _bcast(_mask(len(x), p, gen, x.device))
    return torch.where(m & (x >= threshold), 1 - x, x)


def gaussian_noise(
    x: torch.Tensor, gen: torch.Generator, std: float = 0.1, p: float = 1.0
) -> torch.Tensor:
    """Add N(0, std^2) noise to a fraction ``p`` of the samples, clamped to [0, 1]."""
    m = _bcast(_mask(len(x), p, gen, x.device).to(x.dtype))
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return (x + m * std * noise).clamp_(0, 1)


def rot90(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each (square) image by k x 90 degrees, k uniform in {0,1,2,3}; returns (x, k)."""
    k = torch.randint(0, 4, (len(x),), generator=gen, device=x.device)
    out = x.clone()
    for q in (1, 2, 3):
        m = k == q
        if bool(m.any()):
            out[m] = torch.rot90(x[m], q, dims=(2, 3))
    return out, k


def cutout(
    x: torch.Tensor, gen: torch.Generator, size: int = 16, p: float = 1.0, fill: float = 0.5
) -> torch.Tensor:
    """Fill a ``size`` x ``size`` square at a random centre (clipped at the border)."""
    n, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (n,), generator=gen, device=dev)
    cx = torch.randint(0, w, (n,), generator=gen, device=dev)
    on = _mask(n, p, gen, dev)
    ys = torch.arange(h, device=dev)[None]
    xs = torch.arange(w, device=dev)[None]
    my = (ys >= (cy - size // 2)[:, None]) & (ys < (cy - size // 2 + size)[:, None])
    mx = (xs >= (cx - size // 2)[:, None]) & (xs < (cx - size // 2 + size)[:, None])
    m = (my[:, :, None] & mx[:, None, :]) & on[:, None, None]
    return torch.where(m[:, None], torch.full_like(x, fill), x)


# ---- RandAugment ------------------------------------------------------------------
# Colour ops: identity, autocontrast, brightness, colour (saturation), contrast,
# equalize-like (autocontrast per channel on a stretched histogram is not equalize; we
# use per-channel autocontrast as its batched stand-in), posterize, sharpness, solarize.
# Geometric ops (rotate, shear x/y, translate x/y) share one affine resampling.
COLOR_OPS = (
    "identity",
    "autocontrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "posterize",
    "sharpness",
    "solarize",
)
GEOM_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
RAND_OPS = COLOR_OPS + GEOM_OPS


def _autocontrast(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    dims = (2, 3) if per_channel else (1, 2, 3)
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-3)).clamp_(0, 1)


def _sharpen(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
    return _blend(x, smooth, factor)


def _color_op(name: str, x: torch.Tensor, mag: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Apply colour op ``name`` with magnitudes ``mag`` in [0, 1] (signed by ``sign``)."""
    if name == "identity":
        return x
    if name == "autocontrast":
        return _autocontrast(x, per_channel=False)
    if name == "equalize":
        return _autocontrast(x, per_channel=True)
    if name == "brightness":
        return (x * _bcast(1 + 0.9 * mag * sign)).clamp_(0, 1)
    if name == "color":
        return _blend(x, _gray(x), 1 + 0.9 * mag * sign)
    if name == "contrast":
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), 1 + 0.9 * mag * sign)
    if name == "posterize":
        shift = torch.round(4 * mag).clamp(0, 4)  # keep 8 - shift bits
        q = _bcast(2.0**shift) / 255.0
        return torch.floor(x / q) * q
    if name == "sharpness":
        return _sharpen(x, 1 + 0.9 * mag * sign)
    if name == "solarize":
        thr = _bcast(1 - mag)
        return torch.where(x >= thr, 1 - x, x)
    raise ValueError(name)


def rand_augment(
    x: torch.Tensor, gen: torch.Generator, num_ops: int = 2, magnitude: float = 1.0
) -> torch.Tensor:
    """RandAugment with random magnitudes: each sample gets ``num_ops`` ops drawn uniformly
    from ``RAND_OPS``, each with a magnitude uniform in [0, ``magnitude``] (1 = strongest),
    as in FixMatch's RandAugment variant."""
    n, dev = len(x), x.device
    for _ in range(num_ops):
        op = torch.randint(0, len(RAND_OPS), (n,), generator=gen, device=dev)
        mag = magnitude * _rand(n, gen, dev)
        sign = torch.where(_mask(n, 0.5, gen, dev), 1.0, -1.0)
        out = x.clone()
        for j, name in enumerate(COLOR_OPS):
            m = op == j
            if name != "identity" and bool(m.any()):
                out[m] = _color_op(name, x[m], mag[m], sign[m]).to(out.dtype)
        geo = op >= len(COLOR_OPS)
        if bool(geo.any()):
            g = op[geo] - len(COLOR_OPS)
            mg, sg = mag[geo] * sign[geo], torch.ones_like(mag[geo])
            theta = torch.zeros(len(g), 2, 3, device=dev)
            theta[:, 0, 0] = sg
            theta[:, 1, 1] = sg
            ang = torch.where(g == 0, mg * math.radians(30), torch.zeros_like(mg))
            theta[:, 0, 0], theta[:, 0, 1] = torch.cos(ang), -torch.sin(ang)
            theta[:, 1, 0], theta[:, 1, 1] = torch.sin(ang), torch.cos(ang)
            theta[:, 0, 1] += torch.where(g == 1, 0.3 * mg, torch.zeros_like(mg))
            theta[:, 1, 0] += torch.where(g == 2, 0.3 * mg, torch.zeros_like(mg))
            theta[:, 0, 2] = torch.where(g == 3, 0.6 * mg, torch.zeros_like(mg))
            theta[:, 1, 2] = torch.where(g == 4, 0.6 * mg, torch.zeros_like(mg))
            out[geo] = _affine(x[geo], theta, padding="zeros").to(out.dtype)
        x = out
    return x
