"""Data bigger than memory: build the decode cache of 100,000 JPEGs, then train from it.

1. Generates a folder of ``--images`` 96x96 JPEGs in 10 class folders (once, in
   ``--folder``; reused when complete), with 2 processes.
2. Builds the decode cache in a fresh process and a fresh cache folder: images/s and the
   peak resident memory (``ru_maxrss``) against the 1.5 GiB target; the decoded size beside
   it. The JPEGs are read from the OS page cache when they were just generated.
3. Trains a small backbone (supervised, every image labeled) for ``--steps`` steps, once
   with the images in memory and once reading each batch from the cache file
   (``--no-data-in-memory``), each in a fresh process: img/s over the steps after warm-up,
   set-up seconds (the in-memory run reads the whole set first) and peak resident memory.

    python scripts/record.py cache -- .venv/bin/python benchmarks/bench_cache.py

Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def _write_jpegs(args: tuple[str, int, int, int]) -> int:
    from PIL import Image

    folder, start, stop, side = args
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        c = i % CLASSES
        fx, fy = rng.uniform(0.5, 3.0, 2) * (c + 1) / CLASSES
        base = np.stack(
            [
                128 + 100 * np.sin(xx * fx / 8 + c),
                128 + 100 * np.cos(yy * fy / 8 - c),
                (xx + yy) * (c + 1) % 256,
            ],
            -1,
        )
        img = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        out = Path(folder) / f"class{c}" / f"{i:06d}.jpg"
        Image.fromarray(img).save(out, quality=90)
    return stop - start


def ensure_folder(folder: Path, n: int, side: int) -> dict:
    """The JPEG folder, generated unless a complete one with the same size is there."""
    marker = folder / ".complete"
    want = {"images": n, "side": side}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return {"generated": False, "seconds": 0.0}
    shutil.rmtree(folder, ignore_errors=True)
    for c in range(CLASSES):
        (folder / f"class{c}").mkdir(parents=True)
    t0 = time.perf_counter()
    chunks = [(str(folder), a, min(n, a + 1000), side) for a in range(0, n, 1000)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        done = sum(pool.imap_unordered(_write_jpegs, chunks))
    assert done == n
    marker.write_text(json.dumps(want))
    return {"generated": True, "seconds": round(time.perf_counter() - t0, 1)}


BUILD = """
import json, resource, sys, time
from fewlabels.data import load_dataset
import torch  # imported before the baseline is taken, as training would
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
base = rss()
t0 = time.perf_counter()
ds = load_dataset("folder:" + sys.argv[1], cache_dir=sys.argv[2])
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"n": len(ds.train), "seconds": dt, "peak": peak, "base": base,
                  "decoded": int(ds.train.images.numel()), "shape": list(ds.train.images.shape)}))
"""

TRAIN = """
import json, resource, sys, time
import torch
from fewlabels.data import SplitConfig, load_dataset, make_splits
from fewlabels.methods import build_method
from fewlabels.train.loop import TrainConfig, Trainer
from fewlabels.train.run import RunConfig, build_network
from fewlabels.core.process import keep_freed_memory
keep_freed_memory()
folder, cache, backbone, steps, batch, in_memory, warm = sys.argv[1:8]
steps, batch, warm = int(steps), int(batch), int(warm)
ds = load_dataset("folder:" + folder, cache_dir=cache)
sp = make_splits(ds, SplitConfig(val="none"))
torch.manual_seed(0)
net = build_network(RunConfig(backbone=backbone), sp.labeled, ds.train.num_classes,
                    ([0.5] * 3, [0.25] * 3))
method = build_method("supervised", net)
cfg = TrainConfig(budget=f"{steps}steps", batch_size=batch, evals=1, precision="auto")
trainer = Trainer(cfg, progress=False, data_in_memory=in_memory == "1")
t0 = time.perf_counter()
fit = trainer.fit(method, sp.labeled, None, None)
wall = time.perf_counter() - t0
ss = fit.step_seconds[warm:]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"images": len(sp.labeled), "steps": fit.steps, "peak": peak,
                  "img_s": batch * len(ss) / sum(ss), "setup_s": wall - sum(fit.step_seconds)}))
"""


def run(script: str, *args: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "OMP_WAIT_POLICY": "PASSIVE", "PATH": "/usr/bin"},
    )
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--side", type=int, default=96)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/fewlabels-bench-jpegs"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fewlabels-bench-cache"))
    ap.add_argument("--backbone", default="convnet")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    mib = 1 << 20

    gen = ensure_folder(a.folder, a.images, a.side)
    shutil.rmtree(a.cache, ignore_errors=True)
    b = run(BUILD, str(a.folder), str(a.cache))
    print(
        json.dumps(
            {
                "bench": "cache",
                "phase": "build",
                "images": b["n"],
                "shape": "x".join(str(s) for s in b["shape"][1:]),
                "generate_s": gen["seconds"],
                "seconds": round(b["seconds"], 1),
                "images_per_s": round(b["n"] / b["seconds"]),
                "decoded_mib": round(b["decoded"] / mib),
                "baseline_rss_mib": round(b["base"] / mib),
                "peak_rss_mib": round(b["peak"] / mib),
                "target_peak_rss_mib": 1536,
            }
        ),
        flush=True,
    )
    for mode in ("memory", "memmap"):
        t = run(
            TRAIN,
            str(a.folder),
            str(a.cache),
            a.backbone,
            str(a.steps),
            str(a.batch),
            "1" if mode == "memory" else "0",
            str(a.warmup),
        )
        print(
            json.dumps(
                {
                    "bench": "cache",
                    "phase": f"train from {mode}",
                    "images": t["images"],
                    "backbone": a.backbone,
                    "batch": a.batch,
                    "steps": t["steps"],
                    "img_per_s": round(t["img_s"], 1),
                    "setup_s": round(t["setup_s"], 1),
                    "peak_rss_mib": round(t["peak"] / mib),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
