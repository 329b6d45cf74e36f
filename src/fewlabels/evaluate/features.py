"""Frozen features: batched no-grad extraction, loading an encoder, and an on-disk cache.

Features are extracted once per (weights, images, precision) and cached as ``.npy`` under
``$FEWLABELS_CACHE/features``. The key hashes the network's weights (so a checkpoint file
rewritten with the same weights hits the cache, and a retrained one never does) and the
uint8 images themselves (which pins both the data source and the split's indices).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fewlabels.core.checkpoint import atomic_write_bytes, load_checkpoint
from fewlabels.core.errors import CheckpointError
from fewlabels.core.precision import autocast
from fewlabels.core.progress import Progress
from fewlabels.data.cache import cache_root
from fewlabels.evaluate.network_state import (
    check_class_names,
    check_finite,
    check_network_config,
    num_classes_of,
)
from fewlabels.models import Network


@torch.no_grad()
def extract_features(
    network: Network,
    images: torch.Tensor,
    *,
    batch_size: int = 256,  # faster than 1024 on 2 CPU cores (cache-sized batches)
    device: torch.device | str | None = None,
    precision: str = "fp32",
    progress: bool | None = None,
) -> torch.Tensor:
    """``network.features`` of uint8 NCHW ``images``: (N, feature_dim) fp32 on the CPU.

    Eval mode, no gradients, channels_last, bf16 autocast when ``precision`` is ``bf16``.
    ``progress``: a bar with the time left (None: when stderr is a terminal and it takes
    more than a second).
    """
    device = torch.device(device) if device is not None else next(network.parameters()).device
    was_training = network.training
    network.eval()
    out = []
    bar = Progress("features", len(images), enabled=progress, unit="images")
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            x = x.to(torch.float32, memory_format=torch.channels_last).div_(255)
            with autocast(precision, device):
                out.append(network.features(x).float().cpu())
            bar.advance(len(x))
    finally:
        bar.close()
        network.train(was_training)
    if not out:
        return torch.empty(0, int(getattr(network, "feature_dim", 0)))
    return torch.cat(out)


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():  # flat first: a channels_last 1x1 kernel is "contiguous" with stride 3
        flat = t.detach().cpu().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes())


def network_fingerprint(network: nn.Module) -> str:
    """A hash of the architecture config and every weight and buffer."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(getattr(network, "config", type(network).__name__)).encode())
    for name, t in sorted(network.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()


def images_fingerprint(images: torch.Tensor) -> str:
    """A hash of a uint8 image tensor (its shape and every byte)."""
    h = hashlib.blake2b(digest_size=16)
    _hash_tensor(h, images)
    return h.hexdigest()


def cached_features(
    network: Network,
    images: torch.Tensor,
    *,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    net_fp: str | None = None,
    progress: bool | None = None,
) -> tuple[torch.Tensor, bool]:
    """``extract_features`` through the on-disk cache; returns (features, was_cached)."""
    compute: Callable[[], torch.Tensor] = lambda: extract_features(  # noqa: E731
        network, images, device=device, precision=precision, progress=progress
    )
    if not use_cache:
        return compute(), False
    parts = (net_fp or network_fingerprint(network), images_fingerprint(images), precision)
    key = hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()
    path = cache_root(cache_dir) / "features" / f"{key}.npy"
    if path.exists():
        try:
            return torch.from_numpy(np.load(path)), True
        except (OSError, ValueError):
            pass  # a damaged entry is recomputed
    feats = compute()
    buf = io.BytesIO()
    np.save(buf, feats.numpy())
    atomic_write_bytes(path, buf.getvalue())
    return feats, False


def load_encoder(path: str | Path) -> tuple[Network, dict[str, Any]]:
    """The Network stored in a ``model.pt``, a ``checkpoint.pt`` or a run folder.

    Returns the network (on the CPU, eval mode) and the file's other entries. A file
    without a network (or whose weights do not fit its architecture) is a one-line
    ``CheckpointError``; a network without a classifier head is fine here.
    """
    obj = load_checkpoint(path, map_location="cpu")
    cfg = obj.get("network_config")
    if obj.get("kind") == "training" and isinstance(obj.get("method"), dict):
        method = obj["method"]
        state = {
            k.removeprefix("network."): v for k, v in method.items() if k.startswith("network.")
        }
    else:
        state = obj.get("state_dict")
    if not cfg or not state:
        raise CheckpointError(f"{path} holds no encoder (no network config or weights)")
    cfg = check_network_config(path, cfg)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its weights are a {type(state).__name__}, not a mapping")
    try:
        net = Network.from_config(cfg)
        net.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:150] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} does not match its architecture: {first}") from None
    check_finite(path, state)
    names = obj.get("class_names")
    check_class_names(path, names, num_classes_of(path, cfg))
    meta = {
        k: v
        for k, v in obj.items()
        if k not in ("state_dict", "optimizer", "ema") and not isinstance(v, dict | list)
    }
    if obj.get("kind") == "training":
        meta["method"] = obj.get("method_name")
    return net.eval(), meta
