"""Data loading: first (decode) and second (cached) load of the shared CIFAR-10 and
Tiny-ImageNet subsets. Prints one JSON line per source; target: cached CIFAR < 2 s.

    python benchmarks/bench_data.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from fewlabels.data import load_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        for spec, target in (
            (f"cifar10:{DATA / 'cifar10'}", 2.0),
            (f"folder:{DATA / 'tiny-imagenet-200'}", None),
        ):
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                ds = load_dataset(spec, cache_dir=cache)
                times.append(time.perf_counter() - t0)
            print(
                json.dumps(
                    {
                        "source": spec.split(":")[0],
                        "train": len(ds.train),
                        "test": len(ds.test) if ds.test is not None else 0,
                        "first_load_s": round(times[0], 3),
                        "cached_load_s": round(times[1], 3),
                        "target_cached_s": target,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
