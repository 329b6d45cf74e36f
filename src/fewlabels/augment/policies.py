"""Named augmentation policies: a uint8 batch in, float32 [0, 1] channels_last image(s) out.

``build_policy(name, image_size=...)`` returns a :class:`Policy`, called as
``policy(x_uint8_nchw, generator)`` on the images' own device. Single-view policies return
a tensor; the others a tuple (two SSL views, image and rotation label, noisy and clean).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fewlabels.augment import ops
from fewlabels.core.errors import ConfigError

Tensor = torch.Tensor
Out = Tensor | tuple[Tensor, ...]


def to_float(x: Tensor) -> Tensor:
    """uint8 (or float in [0, 1]) images -> float32 in [0, 1]."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255)
    if x.is_floating_point():
        return x.to(torch.float32)
    raise TypeError(f"expected uint8 or float images, got {x.dtype}")


def _cl(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _cl_float(x: Tensor) -> Tensor:
    """to_float and channels_last in one copy."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32, memory_format=torch.channels_last).div_(255)
    return _cl(to_float(x))


@dataclass(frozen=True)
class Policy:
    """A named augmentation, called as ``policy(x, generator)``.

    ``x`` is (N, C, H, W) uint8 (float in [0, 1] is accepted too); all randomness comes
    from ``generator``. ``outputs`` names what comes back: one name -> a tensor, several ->
    a tuple in that order. ``num_views`` counts the augmented images among them.
    """

    name: str
    fn: Callable[..., Out]
    outputs: tuple[str, ...] = ("image",)
    num_views: int = 1
    description: str = ""
    # fn also takes the training progress in [0, 1] (e.g. crops that grow as it goes on)
    uses_progress: bool = False

    def __call__(self, x: Tensor, gen: torch.Generator, progress: float = 1.0) -> Out:
        """Augment ``x``; ``progress`` (the fraction of the training budget done, 1.0 when
        not training) matters only to policies with ``uses_progress``."""
        if x.dim() != 4:
            raise ValueError(f"policy {self.name!r} expects (N, C, H, W) images, got {x.shape}")
        return self.fn(x, gen, progress) if self.uses_progress else self.fn(x, gen)


def _pad(size: int) -> int:
    return max(1, size // 8)


def _none(size: int) -> Policy:
    return Policy("none", lambda x, g: _cl_float(x), description="conversion to float only")


def _weak(size: int, pad: int | None = None, mode: str = "reflect", flip: float = 0.5) -> Policy:
    pad = _pad(size) if pad is None else pad

    def fn(x: Tensor, g: torch.Generator) -> Tensor:  # flip + crop in one gather on uint8
        return _cl_float(ops.pad_crop(x, g, pad, mode=mode, flip_p=flip))

    flipped = f"horizontal flip (p={flip}) + " if flip > 0 else ""
    return Policy("weak", fn, description=f"{flipped}translation by up to {pad} px ({mode})")


def _strong(
    size: int,
    num_ops: int = 2,
    magnitude: float | None = None,
    cutout: int | None = None,
    flip: float = 0.5,
) -> Policy:
    pad, cut = _pad(size), max(1, size // 2) if cutout is None else cutout
    mag = "random magnitude" if magnitude is None else f"magnitude {magnitude}/30"

    def fn(x: Tensor, g: torch.Generator) -> Tensor:
        y = to_float(ops.pad_crop(x, g, pad, flip_p=flip))
        y = ops.rand_augment(y, g, num_ops=num_ops, magnitude=magnitude)
        return _cl(ops.cutout(y, g, size=cut, p=1.0) if cut > 0 else y)

    base = "weak" if flip > 0 else "translation"
    return Policy(
        "strong", fn, description=f"{base} + RandAugment ({num_ops} ops, {mag}) + cutout {cut} px"
    )


def _ssl_view(
    x: Tensor,
    g: torch.Generator,
    size: int,
    min_scale: float,
    jitter: tuple[float, float, float, float],
    blur_p: float,
    solarize_p: float,
    flip: float,
) -> Tensor:
    y = ops.random_resized_crop(x, g, size=size, scale=(min_scale, 1.0), flip_p=flip)
    y = ops.color_jitter(y, g, *jitter, p=0.8)
    y = ops.grayscale(y, g, p=0.2)
    if blur_p > 0:
        y = ops.gaussian_blur(y, g, p=blur_p)
    if solarize_p > 0:
        y = ops.solarize(y, g, p=solarize_p)
    return _cl(y)


def _two_views(
    name: str,
    side: Callable[[float], int],
    min_scale: float,
    jitter: tuple[float, float, float, float],
    blur: tuple[float, float],
    solarize: tuple[float, float],
    flip: float,
    description: str,
    uses_progress: bool,
) -> Policy:
    def fn(x: Tensor, g: torch.Generator, progress: float = 1.0) -> tuple[Tensor, Tensor]:
        xf, size = to_float(x), side(progress)
        return (
            _ssl_view(xf, g, size, min_scale, jitter, blur[0], solarize[0], flip),
            _ssl_view(xf, g, size, min_scale, jitter, blur[1], solarize[1], flip),
        )

    return Policy(name, fn, ("view1", "view2"), 2, description, uses_progress)


# A growing crop side reaches its final value at this fraction of training (as FFCV's
# progressive resizing ends before the last epochs) and stays there.
RAMP_END = 0.85
RAMP_STEP = 4  # px: the side grows in steps, so the backbone sees a few shapes only


def _out_side(size: int, out_size: int | str | None) -> tuple[Callable[[float], int], bool, str]:
    """The side the SSL crops are resized to, as a function of training progress; whether
    it depends on progress; a description. ``None``: the image's own side. An int: that
    side (smaller is cheaper: the backbone's cost scales with pixels, and its global pool
    still takes full-size images when probed). ``"A..B"``: from A px at the start, in
    steps of 4 px, to B px at 85% of training and after (progressive resizing)."""

    def bad() -> ConfigError:
        return ConfigError(
            f"out_size must be a side in pixels >= 8 or a range 'A..B' of them, got {out_size!r}"
        )

    if out_size is None:
        return (lambda p: size), False, ""
    if isinstance(out_size, int) and not isinstance(out_size, bool):
        if out_size < 8:
            raise bad()
        side = out_size
        return (lambda p: side), False, f", resized to {side} px"
    a, dots, b = str(out_size).partition("..")
    try:
        lo, hi = int(a), int(b)
    except ValueError:
        raise bad() from None
    if not dots or lo < 8 or hi < lo:
        raise bad()
    if lo == hi:
        return (lambda p: hi), False, f", resized to {hi} px"

    def ramp(p: float) -> int:
        r = min(1.0, max(0.0, p) / RAMP_END)
        return hi if r >= 1.0 else lo + int((hi - lo) * r) // RAMP_STEP * RAMP_STEP

    return ramp, True, f", resized to {lo} px growing to {hi} px at {RAMP_END:.0%} of training"


def _small(size: int) -> bool:
    """CIFAR-sized or smaller: the SSL recipes for 32 px images (SimCLR's CIFAR-10 setup,
    solo-learn's and lightly's CIFAR configs) leave Gaussian blur out."""
    return size <= 32


def _twoview(
    size: int,
    min_scale: float = 0.08,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
    blur: tuple[float, float] | None = None,
    solarize: tuple[float, float] = (0.0, 0.2),
    flip: float = 0.5,
    out_size: int | str | None = None,
) -> Policy:
    if blur is None:  # BYOL's (1.0, 0.1) on larger images, none at 32 px and below
        blur = (0.0, 0.0) if _small(size) else (1.0, 0.1)
    side, grows, px = _out_side(size, out_size)
    return _two_views(
        "twoview",
        side,
        min_scale,
        jitter,
        blur,
        solarize,
        flip,
        f"BYOL / Barlow Twins: resized crop (scale {min_scale}..1{px}), flip p={flip}, "
        f"colour jitter {jitter} p=0.8, grayscale p=0.2; blur p={blur[0]}/{blur[1]}, "
        f"solarize p={solarize[0]}/{solarize[1]}",
        grows,
    )


def _simclr(
    size: int,
    min_scale: float = 0.08,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    blur_p: float | None = None,
    flip: float = 0.5,
    out_size: int | str | None = None,
) -> Policy:
    if blur_p is None:  # SimCLR's 0.5 on larger images, none at 32 px and below
        blur_p = 0.0 if _small(size) else 0.5
    side, grows, px = _out_side(size, out_size)
    return _two_views(
        "simclr",
        side,
        min_scale,
        jitter,
        (blur_p, blur_p),
        (0.0, 0.0),
        flip,
        f"SimCLR: two symmetric views, resized crop (scale {min_scale}..1{px}), "
        f"flip p={flip}, colour jitter {jitter} p=0.8, grayscale p=0.2, blur p={blur_p}, "
        "no solarize",
        grows,
    )


def _rotation(size: int, flip: float = 0.5) -> Policy:
    def fn(x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        y, k = ops.rot90(ops.hflip(x, g, flip) if flip > 0 else x, g)
        return _cl_float(y), k

    return Policy(
        "rotation",
        fn,
        ("image", "k"),
        1,
        f"RotNet: flip (p={flip}), then rotation by k x 90 degrees; returns (image, k)",
    )


def _denoise(size: int, std: float = 0.1, flip: float = 0.5) -> Policy:
    def fn(x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        clean = _cl_float(ops.hflip(x, g, flip) if flip > 0 else x)
        return _cl(ops.gaussian_noise(clean, g, std=std)), clean

    return Policy(
        "denoise",
        fn,
        ("noisy", "clean"),
        1,
        f"denoising autoencoder: flip (p={flip}), Gaussian noise std {std}; returns (noisy, clean)",
    )


def _flips(size: int, flip: float = 0.5) -> Policy:
    def fn(x: Tensor, g: torch.Generator) -> Tensor:  # both flips on uint8, then one copy
        if flip <= 0:
            return _cl_float(x)
        return _cl_float(ops.vflip(ops.hflip(x, g, flip), g, flip))

    return Policy(
        "flips",
        fn,
        description=f"autoencoders (report 000): horizontal and vertical flips (p={flip} each)",
    )


POLICIES: dict[str, Callable[..., Policy]] = {
    "none": _none,
    "weak": _weak,
    "strong": _strong,
    "twoview": _twoview,
    "simclr": _simclr,
    "rotation": _rotation,
    "denoise": _denoise,
    "flips": _flips,
}


def parse_policy(spec: str) -> tuple[str, dict[str, Any]]:
    """``"strong:flip=0,cutout=2"`` -> ``("strong", {"flip": 0, "cutout": 2})``: a policy
    name with options (numbers, ``true``/``false``/``none``, or words)."""
    name, _, opts = spec.partition(":")
    kw: dict[str, Any] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"augmentation policy {spec!r}: expected key=value, got {item!r}")
        raw = raw.strip()
        value: Any = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
        if value is raw:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        kw[key.strip()] = value
    return name.strip(), kw


def unmirrored(spec: str) -> str:
    """``spec`` with ``flip=0`` added when its policy mirrors images and ``spec`` does not
    set ``flip`` itself: the views of data whose mirror image is not of its class (digits,
    text). ``"weak"`` -> ``"weak:flip=0"``; ``"weak:flip=0.5"`` and ``"none"`` unchanged."""
    name, opts = parse_policy(spec)
    fn = POLICIES.get(name)
    if fn is None or "flip" in opts or "flip" not in inspect.signature(fn).parameters:
        return spec
    return f"{spec}{',' if ':' in spec else ':'}flip=0"


def build_policy(name: str, *, image_size: int | None = None, **kw: Any) -> Policy:
    """The policy ``name`` for square images of side ``image_size`` (default 32); ``kw``
    are the policy's options (e.g. ``min_scale`` for ``twoview``), which ``name`` may also
    carry as ``"weak:flip=0,pad=1"``."""
    name, opts = parse_policy(name)
    kw = {**opts, **kw}
    if name not in POLICIES:
        raise ConfigError(
            f"unknown augmentation policy {name!r}; choose from {', '.join(POLICIES)}"
        )
    try:
        return POLICIES[name](image_size or 32, **kw)
    except TypeError as e:
        raise ConfigError(f"augmentation policy {name!r}: {e}") from None
