"""Batched image operations with per-sample random parameters.

Every op takes images ``x`` (N, C, H, W), float in [0, 1] unless noted, and a
``torch.Generator``, draws one set of parameters per sample and transforms the whole batch
at once: Python loops run over op types or a handful of values, never over samples.
Parameters are drawn on the generator's device and moved to the images' device, so a
generator on the data's device (fastest) or a CPU generator both work, and the output is a
function of the generator state alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma
PAD_MODES = ("reflect", "replicate", "zeros", "constant")  # constant = zeros

Tensor = torch.Tensor


# ---- random parameters ------------------------------------------------------------------
def _rand(shape: tuple[int, ...], gen: torch.Generator, dev: torch.device) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).to(dev)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, dev: torch.device) -> Tensor:
    return lo + (hi - lo) * _rand((n,), gen, dev)


def _randint(lo: int, hi: int, n: int, gen: torch.Generator, dev: torch.device) -> Tensor:
    """Integers uniform in [lo, hi)."""
    return torch.randint(lo, hi, (n,), generator=gen, device=gen.device).to(dev)


def _mask(n: int, p: float, gen: torch.Generator, dev: torch.device) -> Tensor:
    return _rand((n,), gen, dev) < p


def _bc(v: Tensor) -> Tensor:
    """(N,) -> (N, 1, 1, 1) for broadcasting over images."""
    return v.view(-1, 1, 1, 1)


def _on_subset(x: Tensor, on: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn(x[idx], idx)`` written back for the selected samples; the others are unchanged.

    Cheaper than computing ``fn`` on the whole batch and blending with ``torch.where``
    when only a fraction of the samples is selected.
    """
    idx = on.nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    if idx.numel() == len(x):
        return fn(x, idx)
    out = x.clone()
    out[idx] = fn(x[idx], idx).to(out.dtype)
    return out


# ---- flips, translation, rotation by 90 degrees -----------------------------------------
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


# ---- resampling --------------------------------------------------------------------------
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


# ---- colour --------------------------------------------------------------------------------
def _gray(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W); a 1-channel image is its own luma."""
    if x.shape[1] == 1:
        return x
    n, c, h, w = x.shape
    wts = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 1, 3)
    return torch.matmul(wts, x.reshape(n, c, h * w)).view(n, 1, h, w)


def _gray_mean(x: Tensor) -> Tensor:
    """Mean luma per sample, (N, 1, 1, 1)."""
    means = x.mean(dim=(2, 3))
    if x.shape[1] == 1:
        return _bc(means)
    wts = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype)
    return _bc(means @ wts)


def _blend(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """``f * a + (1 - f) * b`` with per-sample ``f``, clamped to [0, 1]; f = 1 gives ``a``
    exactly."""
    f = _bc(f).to(a.dtype)
    return torch.addcmul(b * (1 - f), a, f).clamp_(0, 1)


def _yiq_mats(dev: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=torch.float64,
    )
    return to_yiq.to(dev, dtype), torch.linalg.inv(to_yiq).to(dev, dtype)


def _color_matrix(sat: Tensor, hue: Tensor, dtype: torch.dtype) -> Tensor:
    """Per-sample 3x3 RGB matrix: saturation blend with luma, then hue rotation by ``hue``
    turns in YIQ space."""
    n, dev = len(sat), sat.device
    to_yiq, from_yiq = _yiq_mats(dev, dtype)
    wts = to_yiq[0]
    eye = torch.eye(3, device=dev, dtype=dtype)
    s = sat.to(dtype).view(n, 1, 1)
    sat_m = s * eye + (1 - s) * wts.view(1, 1, 3)  # rows: s * e_i + (1 - s) * w
    ang = 2 * math.pi * hue.to(dtype)
    cos, sin = torch.cos(ang), torch.sin(ang)
    rot = torch.zeros(n, 3, 3, device=dev, dtype=dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    hue_m = from_yiq @ rot @ to_yiq
    hue_m = torch.where((hue == 0).view(n, 1, 1), eye, hue_m)  # exact identity when off
    return hue_m @ sat_m


def color_jitter(
    x: Tensor,
    gen: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 1.0,
) -> Tensor:
    """Colour jitter with per-sample factors, on a fraction ``p`` of the samples.

    Brightness, contrast and saturation factors are uniform in [1 - s, 1 + s], the hue
    shift uniform in [-hue, hue] turns (hue rotation in YIQ space, an approximation of the
    HSV hue shift). Applied in this fixed order (torchvision shuffles it per call);
    saturation and hue are one 3x3 matrix per sample. 1-channel images get brightness and
    contrast only. Zero strengths give ``x`` unchanged.
    """
    n, dev = len(x), x.device
    on = _mask(n, p, gen, dev).to(x.dtype)

    def factor(strength: float) -> Tensor:
        f = _uniform(n, max(0.0, 1 - strength), 1 + strength, gen, dev)
        return 1 + on * (f - 1)

    b, c, s = factor(brightness), factor(contrast), factor(saturation)
    h = on * _uniform(n, -hue, hue, gen, dev)
    if brightness > 0:
        x = (x * _bc(b)).clamp_(0, 1)
    if contrast > 0:
        x = _blend(x, _gray_mean(x), c)
    if x.shape[1] == 3 and (saturation > 0 or hue > 0):
        mat = _color_matrix(s, h, x.dtype)
        nn_, _, hh, ww = x.shape
        y = torch.bmm(mat, x.reshape(nn_, 3, hh * ww)).view(nn_, 3, hh, ww).clamp_(0, 1)
        x = y.contiguous(memory_format=torch.channels_last) if _is_cl(x) else y
    return x


def _is_cl(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def grayscale(x: Tensor, gen: torch.Generator, p: float = 0.2) -> Tensor:
    """Replace a fraction ``p`` of the samples by their luma (ITU-R 601 weights), keeping
    the channel count (all channels equal)."""
    m = _mask(len(x), p, gen, x.device)
    if x.shape[1] == 1:
        return x
    return _on_subset(x, m, lambda y, _: _gray(y).expand_as(y).contiguous())


def solarize(x: Tensor, gen: torch.Generator, p: float = 0.2, threshold: float = 0.5) -> Tensor:
    """Invert pixels at or above ``threshold`` (``1 - x``) in a fraction ``p`` of the
    samples."""
    m = _mask(len(x), p, gen, x.device)
    return _on_subset(x, m, lambda y, _: torch.where(y >= threshold, 1 - y, y))


# ---- filtering, noise, occlusion -----------------------------------------------------------
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


# ---- RandAugment -----------------------------------------------------------------------
# Colour ops act on the samples that drew them (one masked subset per op type); the
# geometric ops share one per-sample affine matrix and a single grid_sample.
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
        hist = torch.bincount((q + offs).view(-1), minlength=m * 256).view(m, 256)
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
