"""Named augmentation policies: uint8 batch in, float32 [0, 1] channels_last view(s) out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fewlabels.augment import ops
from fewlabels.errors import ConfigError

CL = torch.channels_last


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).div_(255)


def _out(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=CL)


@dataclass
class Policy:
    """A callable ``policy(x_uint8, generator)``; ``num_views`` tensors come back (a tuple
    when more than one, e.g. two SSL views, or image and rotation label)."""

    name: str
    fn: Callable[[torch.Tensor, torch.Generator], Any]
    num_views: int = 1
    description: str = ""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> Any:
        if x.dtype != torch.uint8:
            raise ConfigError(f"policy {self.name!r} expects uint8 images, got {x.dtype}")
        return self.fn(x, gen)


def _none(size: int, **kw: Any) -> Policy:
    return Policy("none", lambda x, g: _out(_to_float(x)), 1, "no augmentation")


def _weak(size: int, pad: int | None = None, **kw: Any) -> Policy:
    pad = pad if pad is not None else max(1, size // 8)

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return _out(_to_float(ops.flip_pad_crop_u8(x, g, pad)))

    return Policy("weak", fn, 1, f"horizontal flip + translation by up to {pad} px (reflect)")


def _strong(size: int, num_ops: int = 2, magnitude: float = 1.0, **kw: Any) -> Policy:
    pad = max(1, size // 8)
    cut = max(1, size // 2)

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        y = _to_float(ops.flip_pad_crop_u8(x, g, pad))
        y = ops.rand_augment(y, g, num_ops=num_ops, magnitude=magnitude)
        return _out(ops.cutout(y, g, size=cut, p=1.0))

    return Policy(
        "strong", fn, 1, f"weak + RandAugment ({num_ops} ops, random magnitude) + cutout {cut}px"
    )


def _ssl_view(
    x: torch.Tensor,
    g: torch.Generator,
    size: int,
    min_scale: float,
    blur_p: float,
    solarize_p: float,
    jitter: tuple[float, float, float, float],
) -> torch.Tensor:
    y = ops.random_resized_crop(_to_float(x), g, size=size, scale=(min_scale, 1.0), flip_p=0.5)
    y = ops.color_jitter(y, g, *jitter, p=0.8)
    y = ops.grayscale(y, g, p=0.2)
    if blur_p > 0:
        y = ops.gaussian_blur(y, g, p=blur_p)
    if solarize_p > 0:
        y = ops.solarize(y, g, p=solarize_p)
    return _out(y)


def _twoview(
    size: int,
    min_scale: float = 0.08,
    blur: tuple[float, float] = (1.0, 0.1),
    solarize: tuple[float, float] = (0.0, 0.2),
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
    **kw: Any,
) -> Policy:
    def fn(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            _ssl_view(x, g, size, min_scale, blur[0], solarize[0], jitter),
            _ssl_view(x, g, size, min_scale, blur[1], solarize[1], jitter),
        )

    return Policy(
        "twoview",
        fn,
        2,
        "BYOL / Barlow Twins views: resized crop, flip, colour jitter, grayscale; "
        f"blur p={blur[0]}/{blur[1]}, solarize p={solarize[0]}/{solarize[1]}",
    )


def _simclr(size: int, min_scale: float = 0.08, **kw: Any) -> Policy:
    jit = (0.4, 0.4, 0.4, 0.1)

    def fn(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            _ssl_view(x, g, size, min_scale, 0.5, 0.0, jit),
            _ssl_view(x, g, size, min_scale, 0.5, 0.0, jit),
        )

    return Policy("simclr", fn, 2, "SimCLR views: symmetric, blur p=0.5, no solarize")


def _rotation(size: int, **kw: Any) -> Policy:
    def fn(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y, k = ops.rot90(ops.hflip(_to_float(x), g), g)
        return _out(y), k

    return Policy("rotation", fn, 1, "RotNet: flip, then rotation by k x 90 degrees; returns k")


def _denoise(size: int, std: float = 0.1, **kw: Any) -> Policy:
    def fn(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        clean = ops.vflip(ops.hflip(_to_float(x), g), g, p=0.5)
        return _out(ops.gaussian_noise(clean, g, std=std)), _out(clean)

    return Policy(
        "denoise", fn, 1, f"denoising AE (report 000): flips, Gaussian noise std {std}; "
        "returns (noisy, clean)"
    )  # fmt: skip


POLICIES: dict[str, Callable[..., Policy]] = {
    "none": _none,
    "weak": _weak,
    "strong": _strong,
    "twoview": _twoview,
    "simclr": _simclr,
    "rotation": _rotation,
    "denoise": _denoise,
}


def build_policy(name: str, *, image_size: int | None = None, **kw: Any) -> Policy:
    """The policy ``name`` for square images of side ``image_size`` (default 32)."""
    if name not in POLICIES:
        raise ConfigError(
            f"unknown augmentation policy {name!r}; choose from {', '.join(POLICIES)}"
        )
    try:
        return POLICIES[name](image_size or 32, **kw)
    except TypeError as e:
        raise ConfigError(f"augmentation policy {name!r}: {e}") from None
