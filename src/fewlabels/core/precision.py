"""Mixed precision: bf16 autocast where the device supports it."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Literal

import torch

from fewlabels.core.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> Literal["bf16", "fp32"]:
    """Turn ``auto`` into the fastest precision the device runs natively."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"precision {precision!r} is not one of auto, bf16, fp32")
    if precision != "auto":
        return precision  # type: ignore[return-value]
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def slow_precision_warning(precision: str, device: torch.device) -> str | None:
    """A warning when bf16 was asked for on a CPU without native bf16 instructions: there
    it is emulated (on an AVX2-only CPU, a VICReg step on fastnet-s took 38.6 s against
    0.75-2.1 s in fp32), which ``auto`` avoids by choosing fp32."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        return (
            "warning: this CPU has no native bf16 instructions, so bf16 runs far slower "
            "than fp32 here (precision auto picks fp32)"
        )
    return None


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast context for ``bf16``; a no-op for ``fp32``."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
