"""Colour ops: colour jitter, grayscale, solarize, and the luma and blend helpers.

Every op takes float images ``x`` (N, C, H, W) in [0, 1] and a ``torch.Generator`` and
draws one set of parameters per sample (see :mod:`fewlabels.augment.ops`).
"""

from __future__ import annotations

import math

import torch

from fewlabels.augment.sampling import _bc, _mask, _on_subset, _uniform

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma

Tensor = torch.Tensor


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
