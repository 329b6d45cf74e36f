"""Batched, seeded augmentation on the tensor's own device."""

from fewlabels.augment.ops import (
    color_jitter,
    cutout,
    gaussian_blur,
    gaussian_noise,
    grayscale,
    hflip,
    pad_crop,
    rand_augment,
    random_resized_crop,
    rot90,
    solarize,
    vflip,
)
from fewlabels.augment.policies import POLICIES, Policy, build_policy, parse_policy, unmirrored

__all__ = [
    "POLICIES",
    "Policy",
    "build_policy",
    "color_jitter",
    "cutout",
    "gaussian_blur",
    "gaussian_noise",
    "grayscale",
    "hflip",
    "pad_crop",
    "parse_policy",
    "rand_augment",
    "random_resized_crop",
    "rot90",
    "solarize",
    "unmirrored",
    "vflip",
]
