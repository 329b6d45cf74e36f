"""Training methods: one file each, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.methods.autoencoder import Autoencoder, DenoisingAutoencoder
from fewlabels.methods.barlow_twins import BarlowTwins
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.methods.byol import BYOL
from fewlabels.methods.dino import DINO
from fewlabels.methods.fixmatch import FixMatch
from fewlabels.methods.flexmatch import FlexMatch
from fewlabels.methods.freematch import FreeMatch
from fewlabels.methods.mean_teacher import MeanTeacher
from fewlabels.methods.moco import MoCo
from fewlabels.methods.pseudo_label import PseudoLabel
from fewlabels.methods.rotnet import RotNet
from fewlabels.methods.self_classifier import SelfClassifier
from fewlabels.methods.simclr import SimCLR
from fewlabels.methods.softmatch import SoftMatch
from fewlabels.methods.supervised import Supervised
from fewlabels.methods.swav import SwAV
from fewlabels.methods.vae import VAE
from fewlabels.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    "supervised": Supervised,
    "simclr": SimCLR,
    "barlow_twins": BarlowTwins,
    "vicreg": VICReg,
    "byol": BYOL,
    "moco": MoCo,
    "swav": SwAV,
    "self_classifier": SelfClassifier,
    "dino": DINO,
    "rotnet": RotNet,
    "autoencoder": Autoencoder,
    "denoising_autoencoder": DenoisingAutoencoder,
    "vae": VAE,
    "pseudo_label": PseudoLabel,
    "fixmatch": FixMatch,
    "flexmatch": FlexMatch,
    "freematch": FreeMatch,
    "softmatch": SoftMatch,
    "mean_teacher": MeanTeacher,
}

# Methods that orchestrate several trainings rather than define one step; run_training
# dispatches them (teacher_student: fewlabels.train.self_training).
RUN_METHODS: tuple[str, ...] = ("teacher_student",)


def method_names() -> list[str]:
    """Every name ``--method`` accepts: the registered methods and the run-level ones."""
    return sorted([*METHODS, *RUN_METHODS])


def method_class(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    key = name.lower()
    if key in RUN_METHODS:
        raise ConfigError(f"method {name!r} runs several trainings: start it with run_training")
    if key not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(method_names())}")
    return METHODS[key]


def build_method(name: str, network: Any, **options: Any) -> Method:
    """Instantiate a method around ``network``; its ``Config`` validates ``options``, and an
    unknown or invalid one is a one-line ConfigError naming ``method.<option>``."""
    cls: Callable[..., Method] = method_class(name)
    return cls(network, **options)


__all__ = [
    "METHODS",
    "RUN_METHODS",
    "Batch",
    "Method",
    "MethodConfig",
    "build_method",
    "method_class",
    "method_names",
]
