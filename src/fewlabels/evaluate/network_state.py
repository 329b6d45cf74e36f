"""Checks of a saved network before it is built: the pieces a checkpoint must hold.

``load_model``, ``load_encoder`` and ``read_init`` (train.warm_start) read a network
config, a state dict and class names out of a ``model.pt`` or ``checkpoint.pt``. A file
edited by hand, written by another tool or saved from a diverged run can hold a config that
is not a mapping, class names that do not match the classifier's outputs, or weights that
are NaN; each is a one-line ``CheckpointError`` naming the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fewlabels.core.errors import CheckpointError


def check_network_config(path: str | Path, cfg: Any) -> dict[str, Any]:
    """``cfg`` when it is a mapping, else a one-line ``CheckpointError``."""
    if not isinstance(cfg, dict):
        raise CheckpointError(
            f"{path}: its network_config is a {type(cfg).__name__}, not a mapping of "
            "architecture settings; the file was not written by fewlabels or was edited"
        )
    return cfg


def check_finite(path: str | Path, state: dict[str, Any]) -> None:
    """A one-line ``CheckpointError`` naming the first weight holding NaN or infinity."""
    for name, t in state.items():
        floats = isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0
        if floats and not bool(torch.isfinite(t).all()):
            what = "NaN" if bool(torch.isnan(t).any()) else "infinite"
            raise CheckpointError(
                f"{path}: weight {name!r} holds {what} values (saved from a diverged "
                "run?); use an earlier checkpoint"
            )


def check_class_names(path: str | Path, names: Any, num_classes: int) -> list[str] | None:
    """The class names as a list when they are strings, one per classifier output (or
    absent: None); else a one-line ``CheckpointError``."""
    if names is None:
        return None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: its class_names are not a list of strings")
    if num_classes and len(names) != num_classes:
        raise CheckpointError(
            f"{path} names {len(names)} classes but its classifier head has {num_classes} outputs"
        )
    return list(names)


def num_classes_of(path: str | Path, cfg: dict[str, Any]) -> int:
    """The config's ``num_classes`` as an int >= 0, else a one-line ``CheckpointError``."""
    k = cfg.get("num_classes", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise CheckpointError(f"{path}: its network_config has num_classes {k!r}")
    return k
