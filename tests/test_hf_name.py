"""``hf:NAME``: a dataset in the local Hugging Face cache by its Hub name (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewlabels.core.errors import DataError
from fewlabels.data import load_dataset


def _png(path: Path, k: int) -> None:
    rng = np.random.default_rng(k)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)


def test_hf_name_reads_the_local_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    for c in ("cat", "dog"):
        (tmp_path / "src" / "train" / c).mkdir(parents=True)
        for k in range(3):
            _png(tmp_path / "src" / "train" / c / f"{k}.png", k + 3 * (c == "dog"))
    cache = tmp_path / "hfcache"
    datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "src"), cache_dir=str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no folder named imagefolder here
    ds = load_dataset("hf:imagefolder", cache_dir=tmp_path / "fl")
    assert ds.class_names == ["cat", "dog"]
    assert sorted(ds.train.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert ds.train.images.shape == (6, 3, 16, 16)
    # HF_HOME/datasets is the cache when HF_DATASETS_CACHE is unset
    monkeypatch.delenv("HF_DATASETS_CACHE")
    (tmp_path / "home").mkdir()
    cache.rename(tmp_path / "home" / "datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    again = load_dataset("hf:imagefolder", cache_dir=tmp_path / "fl")
    assert np.array_equal(again.train.images, ds.train.images)


def test_hf_name_missing_from_the_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        load_dataset("hf:owner/no-such-set", cache_dir=tmp_path / "fl")
    msg = str(e.value)
    assert "\n" not in msg
    assert "owner/no-such-set" in msg and "local Hugging Face cache" in msg
    assert "downloaded" in msg
    # a path that looks like a folder (not a Hub name) keeps the plain message
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"hf:{tmp_path / 'missing'}", cache_dir=tmp_path / "fl")
