"""Step-indexed, seeded sampling: which images a step draws, and the seeds it uses.

Everything random in a step is seeded from ``(seed, stream, step)`` through ``mix_seed``,
so any step can be recomputed on its own: a resumed run continues exactly as if it had
never stopped.
"""

from __future__ import annotations

import torch

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch

__all__ = ["IndexStream", "count_images", "mix_seed"]


def mix_seed(*xs: int) -> int:
    """A 61-bit seed mixed from integers (FNV-style), stable across runs and machines."""
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (int(x) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 61)
    return h


class IndexStream:
    """Step-indexed sampling without replacement: epoch ``e`` is a seeded permutation.

    Batch ``s`` covers positions ``s*B .. s*B+B-1`` of the endless concatenation of
    epoch permutations, so any step's indices can be recomputed from ``(seed, s)``.
    Under DDP each rank takes its contiguous slice of the global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, stream: int) -> None:
        if n <= 0:
            raise ConfigError("cannot sample batches from an empty set")
        self.n, self.batch_size, self.seed, self.stream = n, batch_size, seed, stream
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.stream, epoch))
            self._cache[epoch] = torch.randperm(self.n, generator=g)
        return self._cache[epoch]

    def indices(self, step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """Host indices of step ``step``'s batch (this rank's slice of it)."""
        per = self.batch_size // world
        start = step * self.batch_size + rank * per
        pos = torch.arange(start, start + per)
        epochs, offsets = pos // self.n, pos % self.n
        out = torch.empty(per, dtype=torch.long)
        for e in epochs.unique().tolist():
            m = epochs == e
            out[m] = self._perm(int(e))[offsets[m]]
        return out

    def epoch(self, step: int) -> float:
        """Passes over the set after ``step`` steps."""
        return step * self.batch_size / self.n


def count_images(batch: Batch, unlabeled_copies: int = 1) -> int:
    """Images through the backbone in a step: the rows of every 4-D tensor of every view,
    unlabeled ones ``unlabeled_copies`` times (a method's ``Method.unlabeled_copies``)."""
    n = 0
    for copies, entries in ((1, batch.labeled), (unlabeled_copies, batch.unlabeled)):
        for entry in entries:
            for t in entry if isinstance(entry, (tuple, list)) else (entry,):
                if isinstance(t, torch.Tensor) and t.ndim == 4:
                    n += copies * t.shape[0]
    return n
