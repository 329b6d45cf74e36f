"""Data bigger than memory: the decode cache is built in one streaming pass, and training
reads its batches from the cache file and gets exactly the batches it gets in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewlabels.data import SplitConfig, load_dataset, make_splits, mapped
from fewlabels.data.mapped import MappedRows
from fewlabels.train.feed import ImageFeed
from fewlabels.train.loop import IndexStream
from fewlabels.train.run import RunConfig, run_training

REPO = Path(__file__).resolve().parents[1]


def make_jpegs(root: Path, n: int, side: int, classes: int = 4, seed: int = 0) -> Path:
    """``n`` random-ish JPEGs (smooth colour gradients plus noise) in ``classes`` folders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        c = i % classes
        base = np.stack([xx * (c + 1), yy * (3 - c % 3), (xx + yy) * 2], -1) % 256
        img = (base + rng.integers(0, 40, (side, side, 3))).clip(0, 255).astype(np.uint8)
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.jpg", quality=85)
    return root


PEAK = """
import json, sys
from pathlib import Path
from fewlabels.data import load_dataset

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

load_dataset("folder:" + sys.argv[2], cache_dir=sys.argv[3])  # warm up: imports, threads
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
except OSError:
    pass
before = hwm()
ds = load_dataset("folder:" + sys.argv[1], cache_dir=sys.argv[3])
print(json.dumps({"before": before, "after": hwm(), "n": len(ds.train),
                  "bytes": int(ds.train.images.numel())}))
"""


def test_cache_build_streams_with_bounded_memory(tmp_path):
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the peak resident memory")
    folder = make_jpegs(tmp_path / "big", 2000, 96)
    warm = make_jpegs(tmp_path / "warm", 8, 96)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", PEAK, str(folder), str(warm), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["n"] == 2000 and m["bytes"] == 2000 * 3 * 96 * 96  # 55 MB decoded
    growth = m["after"] - m["before"]
    # decoding everything first (the old way) grew it by twice the decoded size
    assert growth < m["bytes"] / 4, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    # and the cache holds exactly what Pillow decodes
    ds = load_dataset(f"folder:{folder}", cache_dir=tmp_path / "cache")
    for k in (0, 777, 1999):
        path = folder / ds.train.ids[k]
        want = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(ds.train.images[k].numpy(), want)


def test_grey_rows_are_widened_when_a_colour_image_comes_late(tmp_path):
    root = tmp_path / "mixed"
    for k in range(5):
        (root / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 10 * k, np.uint8)).save(root / "a" / f"{k}.png")
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 2] = 200
    Image.fromarray(colour).save(root / "a" / "z.png")
    ds = load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache")
    x = ds.train.images
    assert tuple(x.shape) == (6, 3, 8, 8)
    assert all(int(x[k, c, 0, 0]) == 10 * k for k in range(5) for c in range(3))
    assert x[5, :, 0, 0].tolist() == [0, 0, 200]
    (root / "a" / "z.png").unlink()
    grey = load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache")
    assert tuple(grey.train.images.shape) == (5, 1, 8, 8)


@pytest.fixture
def lazy(monkeypatch):
    """Every subset of cached images stays on disk, however small."""
    monkeypatch.setattr(mapped, "lazy_min_bytes", 0)


def test_splits_of_cached_images_stay_on_disk_and_feed_the_same_batches(tmp_path, lazy):
    folder = make_jpegs(tmp_path / "imgs", 240, 16)
    ds = load_dataset(f"folder:{folder}", cache_dir=tmp_path / "cache")
    sp = make_splits(ds, SplitConfig(labels_per_class=10, seed=3))
    assert isinstance(sp.unlabeled.images, MappedRows)
    assert isinstance(sp.labeled.images, MappedRows)
    rows = np.array(sp.record["unlabeled_rows"])
    assert torch.equal(sp.unlabeled.images[:], ds.train.images[torch.from_numpy(rows)])
    dev = torch.device("cpu")
    resident = ImageFeed(sp.unlabeled.images, dev, in_memory=True)
    streamed = ImageFeed(sp.unlabeled.images, dev, in_memory=False)
    assert not isinstance(resident.images, MappedRows)  # read once, whole
    stream = IndexStream(len(sp.unlabeled), 64, seed=0, stream=2)
    for step in range(8):  # crosses epoch boundaries: 64 * 8 > 200
        idx = stream.indices(step)
        assert torch.equal(resident.take(idx), streamed.take(idx))


def test_training_from_the_cache_file_equals_training_in_memory(tmp_path, lazy, monkeypatch):
    folder = make_jpegs(tmp_path / "imgs", 240, 16)
    reads = {"whole": 0}
    whole = MappedRows.materialize

    def counting(self, *a, **kw):
        reads["whole"] += 1
        return whole(self, *a, **kw)

    monkeypatch.setattr(MappedRows, "materialize", counting)
    monkeypatch.setenv("FEWLABELS_CACHE", str(tmp_path / "cache"))
    results = {}
    for in_memory in (True, False):
        reads["whole"] = 0
        cfg = RunConfig(
            data=f"folder:{folder}",
            test=f"folder:{folder}",  # the whole folder as a test set: predicted from the file
            labeled_fraction=0.5,
            val="train:0.2",
            backbone="convnet",
            train={"budget": "6steps", "batch_size": 32, "evals": 2, "precision": "fp32"},
            device="cpu",
            out=str(tmp_path / f"run-{in_memory}"),
        )
        res = run_training(cfg, progress=False, log=lambda s: None, data_in_memory=in_memory)
        results[in_memory] = (res, torch.load(res.out_dir / "model.pt", weights_only=True))
        if in_memory:
            assert reads["whole"] >= 1  # the labeled set was read whole, onto the device
        else:
            assert reads["whole"] == 0  # only batches were read, never the whole set
    (a, ma), (b, mb) = results[True], results[False]
    assert a.metrics is not None and b.metrics is not None
    assert a.metrics.accuracy == b.metrics.accuracy
    assert [(r["loss"], r["val_acc"]) for r in a.curve] == [
        (r["loss"], r["val_acc"]) for r in b.curve
    ]
    for k, v in ma["state_dict"].items():
        assert torch.equal(v, mb["state_dict"][k]), k
