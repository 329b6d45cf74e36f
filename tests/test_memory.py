"""The allocator setting that keeps freed activation memory mapped between steps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fewlabels.core.process import ENV, is_glibc

GLIBC = is_glibc()

# Faults of 20 allocate-touch-free cycles of a 40 MiB buffer (above glibc's largest dynamic
# mmap threshold, 32 MiB), before and after keep_freed_memory().
PROBE = """
import resource, torch
from fewlabels.core.process import keep_freed_memory

def faults():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        x = torch.empty(40 << 20, dtype=torch.uint8)
        x.fill_(1)
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

before = faults()
ok = keep_freed_memory()
faults()  # the heap grows to hold the buffer once
print(before, ok, keep_freed_memory(), faults())
"""


def probe(env_value: str | None) -> tuple[int, str, str, int]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return int(out[0]), out[1], out[2], int(out[3])


PAGES = (40 << 20) // 4096


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_large_buffers_are_reused_without_page_faults() -> None:
    before, ok, again, after = probe(None)
    assert ok == "True" and again == "True"  # in force, and a second call says so too
    assert before >= 10 * PAGES  # each cycle faulted the buffer in afresh
    assert after < PAGES // 2  # reused: not even one buffer's worth of faults in 20 cycles


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_environment_variable_leaves_malloc_alone() -> None:
    before, ok, again, after = probe("0")
    assert ok == "False" and again == "False"
    assert before >= 10 * PAGES and after >= 10 * PAGES  # still faulted in every cycle


def test_off_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from fewlabels.core import process as memory

    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setattr(memory, "is_glibc", lambda: False)
    assert memory.keep_freed_memory() is False  # monkeypatch puts the real _done back
