"""Batched image operations with per-sample random parameters.

Every op takes images ``x`` (N, C, H, W), float in [0, 1] unless noted, and a
``torch.Generator``, draws one set of parameters per sample and transforms the whole batch
at once: Python loops run over op types or a handful of values, never over samples.
Parameters are drawn on the generator's device and moved to the images' device, so a
generator on the data's device (fastest) or a CPU generator both work, and the output is a
function of the generator state alone.

The ops live in :mod:`~fewlabels.augment.geometric` (flips, translation, rotation,
resized crops), :mod:`~fewlabels.augment.color` (colour jitter, grayscale, solarize),
:mod:`~fewlabels.augment.filters` (blur, noise, cutout) and
:mod:`~fewlabels.augment.randaugment`; this module gathers them in one namespace.
"""

from __future__ import annotations

from fewlabels.augment.color import GRAY_WEIGHTS, color_jitter, grayscale, solarize
from fewlabels.augment.filters import cutout, default_blur_kernel, gaussian_blur, gaussian_noise
from fewlabels.augment.geometric import (
    PAD_MODES,
    hflip,
    pad_crop,
    random_resized_crop,
    rot90,
    vflip,
)
from fewlabels.augment.randaugment import (
    COLOR_OPS,
    GEOM_OPS,
    MAX_ENHANCE,
    MAX_ROTATE_DEG,
    MAX_SHEAR,
    MAX_TRANSLATE,
    RAND_OPS,
    rand_augment,
)

__all__ = [
    "COLOR_OPS",
    "GEOM_OPS",
    "GRAY_WEIGHTS",
    "MAX_ENHANCE",
    "MAX_ROTATE_DEG",
    "MAX_SHEAR",
    "MAX_TRANSLATE",
    "PAD_MODES",
    "RAND_OPS",
    "color_jitter",
    "cutout",
    "default_blur_kernel",
    "gaussian_blur",
    "gaussian_noise",
    "grayscale",
    "hflip",
    "pad_crop",
    "rand_augment",
    "random_resized_crop",
    "rot90",
    "solarize",
    "vflip",
]
