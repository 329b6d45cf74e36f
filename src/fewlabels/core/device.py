"""torch.distributed set-up for runs started with ``torchrun`` (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fewlabels.core.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device | None = None) -> DistInfo:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and (device is None or device.type == "cuda")
        if use_nccl:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return DistInfo(rank, world, local)


def pick_device(requested: str = "auto", info: DistInfo | None = None) -> torch.device:
    """``auto`` picks the local GPU when there is one, else the CPU; any other device is
    checked to exist here (a one-line ``ConfigError`` naming the ``device`` setting)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank if info else 0)
        return torch.device("cpu")
    return check_device(requested)


def check_device(requested: str) -> torch.device:
    """The device ``requested`` names, refused when this machine cannot compute on it:
    an unknown name (``tpu``), CUDA without a GPU, ``cuda:N`` past the last GPU."""
    try:
        dev = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(
            f"device {requested!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(
                f"device {requested!r}: this machine has no CUDA GPU (or this PyTorch was "
                "built without CUDA); use device auto or cpu"
            )
        if dev.index is not None and dev.index >= n:
            raise ConfigError(
                f"device {requested!r}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}"
            )
        return dev
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    raise ConfigError(f"device {requested!r} is not available here; use auto, cpu, cuda or cuda:N")


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """Mean of a Python float over ranks (identity for one process)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size
