"""Keep freed activation memory in the process instead of handing it back to the kernel.

A training step allocates and frees the same large activation buffers every step. glibc's
malloc serves blocks above its mmap threshold (adjusted up to 32 MiB at most) with a fresh
``mmap`` and unmaps them on free, and trims the heap's free top beyond twice that; the next
step then faults every page of those buffers in again, zero-filled by the kernel. A 32 px
batch of 512 images already has 33 MiB bf16 maps after fastnet-s's first layer. On a 2-core
Intel Xeon (``benchmarks/bench_malloc.py``) RotNet's step (1,024 images) took 480 ms with
53,712 page faults and 91 ms of kernel time, and 441 ms with 0 faults and 0.8 ms under the
settings below; SimCLR's and Barlow Twins' steps (512 images) kept their time (249-271 ms)
while their faults fell from 7,100-7,900 to 200-400 a step. jemalloc or tcmalloc
(``LD_PRELOAD``), which PyTorch's CPU tuning guide recommends, do the same; this needs
nothing installed. The process then holds its peak memory between steps;
``FEWLABELS_KEEP_FREED_MEMORY=0`` leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
TRIM_THRESHOLD = 1 << 30  # up to 1 GiB free at the heap's top stays mapped
TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time

ENV = "FEWLABELS_KEEP_FREED_MEMORY"  # "0": leave malloc's settings alone

_done: bool | None = None


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (asked of the C library, not read from a file)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks up to 1 GiB rather than unmap them (once per
    process). Returns whether the settings are in force: False off glibc (macOS, Windows,
    musl) or with ``FEWLABELS_KEEP_FREED_MEMORY=0`` (or ``no``), where nothing is changed."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get(ENV, "1").strip().lower() in ("0", "no") or not is_glibc():
        return False  # the off values FEWLABELS_DATA_IN_MEMORY takes too
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
        )
    )
    return _done
