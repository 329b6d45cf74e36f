"""Start a network from pretrained weights (``--init``): the backbone, optionally the head.

The source is a ``model.pt``, a training ``checkpoint.pt`` or a run folder (its
``model.pt`` first). Only the backbone is taken by default, loaded strictly; the head
of the new network stays fresh, so the class count may differ from the source's. The
input normalisation (mean/std) travels with the backbone, since its weights were
trained on inputs normalised that way.

>>> init = read_init("runs/simclr")                      # doctest: +SKIP
>>> net = Network("convnet", 1, 8, 10, mean=init.mean, std=init.std)  # doctest: +SKIP
>>> apply_init(net, init)                                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import CheckpointError
from fewlabels.evaluate.network_state import check_finite, check_network_config
from fewlabels.models import Network


@dataclass
class InitWeights:
    """The weights a run starts from, and the architecture they belong to."""

    source: str
    network_config: dict[str, Any]
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    mean: list[float]
    std: list[float]
    method: str | None = None


def architecture(config: dict[str, Any]) -> str:
    """A short human name of a network's backbone, e.g. ``convnet (1 channel)``."""
    name = str(config.get("backbone", "?"))
    extra = [f"{k}={v}" for k, v in sorted((config.get("backbone_kwargs") or {}).items())]
    if config.get("stem", "auto") != "auto":
        extra.append(f"stem={config['stem']}")
    c = int(config.get("in_channels", 0))
    extra.append(f"{c} channel{'s' if c != 1 else ''}")
    return f"{name} ({', '.join(extra)})"


def _same_architecture(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("backbone", "stem", "in_channels")
    return all(a.get(k) == b.get(k) for k in keys) and (a.get("backbone_kwargs") or {}) == (
        b.get("backbone_kwargs") or {}
    )


def read_init(path: str | Path) -> InitWeights:
    """Read the network weights of a model file, training checkpoint or run folder."""
    obj = load_checkpoint(path, map_location="cpu")
    if obj.get("kind") == "training":
        method_state = obj.get("method") or {}
        state = {
            k.removeprefix("network."): v
            for k, v in method_state.items()
            if k.startswith("network.")
        }
        method = obj.get("method_name")
    else:
        state, method = obj.get("state_dict") or {}, obj.get("method")
    cfg = obj.get("network_config")
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    if not cfg or not backbone:
        raise CheckpointError(f"`init` {path} holds no network weights to start from")
    cfg = check_network_config(path, cfg)
    check_finite(path, state)
    head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
    mean = state["mean"].flatten().tolist() if "mean" in state else list(cfg.get("mean") or [])
    std = state["std"].flatten().tolist() if "std" in state else list(cfg.get("std") or [])
    return InitWeights(str(path), dict(cfg), backbone, head, mean, std, method)


def _first_problem(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = next((ln for ln in lines[1:] if ln), lines[0] if lines else type(err).__name__)
    return detail[:160]


def apply_init(network: Network, init: InitWeights, *, head: bool = False) -> None:
    """Load ``init``'s backbone (and with ``head`` its classifier) into ``network`` strictly.

    A different architecture is a one-line ``CheckpointError`` naming both.
    """
    src, dst = init.network_config, network.config
    if not _same_architecture(src, dst):
        raise CheckpointError(
            f"`init` {init.source} holds a {architecture(src)} backbone but this run "
            f"builds {architecture(dst)}; choose the same `backbone`"
        )
    try:
        network.backbone.load_state_dict(init.backbone, strict=True)
        if head:
            network.head.load_state_dict(init.head, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"`init` {init.source}: its {architecture(src)} backbone at "
            f"{src.get('image_size')} px does not fit this run's {architecture(dst)} at "
            f"{dst.get('image_size')} px ({_first_problem(e)})"
        ) from None
    with torch.no_grad():
        if len(init.mean) == network.mean.numel() and len(init.std) == network.std.numel():
            network.mean.copy_(torch.tensor(init.mean).view_as(network.mean))
            network.std.copy_(torch.tensor(init.std).view_as(network.std))
