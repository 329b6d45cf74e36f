"""Data sources: spec parsing, every loader on tiny fake files, the cache, the real data."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cifar_records, save_image, stl_image
from PIL import Image

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import UNLABELED, load_dataset, parse_spec
from fewlabels.data import sources as sources_mod


def _load(spec: str, tmp_path: Path, **kw):
    return load_dataset(spec, cache_dir=tmp_path / "cache", **kw)


# --- specs ---------------------------------------------------------------------------


def test_parse_spec():
    assert parse_spec("digits") == ("digits", None, {})
    assert parse_spec("CIFAR10:/a/b") == ("cifar10", "/a/b", {})
    assert parse_spec("folder:/imgs,size=64") == ("folder", "/imgs", {"size": "64"})
    assert parse_spec("folder:/a,b/c,size=8") == ("folder", "/a,b/c", {"size": "8"})
    assert parse_spec("npz:x.npz,classes=3") == ("npz", "x.npz", {"classes": "3"})


@pytest.mark.parametrize(
    ("spec", "error", "needle"),
    [
        (
            "imagenet:/x",
            ConfigError,
            "valid kinds: cifar10, cifar100, csv, digits, folder, hf, npz",
        ),
        ("", ConfigError, "empty"),
        ("folder:/x,colour=yes", ConfigError, "unknown option 'colour' for folder"),
        ("folder:/x,size=8,size=9", ConfigError, "twice"),
        ("digits:/x", ConfigError, "takes no path"),
        ("cifar10", ConfigError, "needs a path"),
        ("cifar10:/no/such/dir", DataError, "no such file or directory: /no/such/dir"),
        ("folder:/no/such", DataError, "no such file or directory"),
    ],
)
def test_bad_specs(spec, error, needle, tmp_path):
    with pytest.raises(error, match=needle) as e:
        _load(spec, tmp_path)
    assert "\n" not in str(e.value)


def test_bad_option_values(image_folder, tmp_path):
    with pytest.raises(ConfigError, match="positive whole number"):
        _load(f"folder:{image_folder},size=0", tmp_path)
    with pytest.raises(DataError, match="no such file"):
        _load(f"folder:{image_folder},unlabeled={tmp_path / 'nope'}", tmp_path)


# --- digits ---------------------------------------------------------------------------


def test_digits():
    ds = load_dataset("digits")
    assert ds.train.images.shape == (1437, 1, 8, 8) and ds.test.images.shape == (360, 1, 8, 8)
    assert ds.train.images.dtype == torch.uint8 and int(ds.train.images.max()) == 255
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.unlabeled is None and ds.fingerprint
    assert min(ds.test.counts()) >= 35  # stratified
    assert not set(ds.train.ids) & set(ds.test.ids)
    from sklearn.datasets import load_digits

    raw = load_digits().images
    i = int(ds.train.ids[0].split(":")[1])
    expect = np.rint(raw[i] * 255 / 16).astype(np.uint8)
    assert np.array_equal(ds.train.images[0, 0].numpy(), expect)


# --- CIFAR ----------------------------------------------------------------------------


def test_cifar10_any_subset_of_batches(cifar10_dir, tmp_path):
    for path in (cifar10_dir, cifar10_dir / "cifar-10-batches-bin"):
        ds = _load(f"cifar10:{path}", tmp_path)
        assert ds.train.images.shape == (8, 3, 32, 32) and ds.test.images.shape == (4, 3, 32, 32)
        assert ds.train.labels.tolist() == [0, 1, 2, 3, 9, 4, 5, 6]
        assert ds.test.labels.tolist() == [7, 8, 9, 0]
        assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
        assert ds.train.ids[5] == "data_batch_3:0"
    _, expect = cifar_records([4, 5, 6])
    assert np.array_equal(ds.train.images[5:].numpy(), expect)
    assert int(ds.train.images[6, 0, 0, 1]) == 250 and int(ds.train.images[6, 0, 1, 0]) == 1


def test_cifar10_names_file_and_errors(cifar10_dir, tmp_path):
    d = cifar10_dir / "cifar-10-batches-bin"
    (d / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    assert _load(f"cifar10:{d}", tmp_path).class_names[3] == "c3"
    with open(d / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 10)
    with pytest.raises(DataError, match=r"CIFAR file .*3.bin is truncated .*: 9229 bytes is"):
        _load(f"cifar10:{d}", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no cifar10 batch files"):
        _load(f"cifar10:{empty}", tmp_path)


def test_cifar100_fine_and_coarse(cifar100_dir, tmp_path):
    ds = _load(f"cifar100:{cifar100_dir}", tmp_path)
    assert ds.train.labels.tolist() == [0, 55, 99, 23] and ds.test.labels.tolist() == [42, 7]
    assert ds.class_names[55] == "fine55" and len(ds.class_names) == 100
    coarse = _load(f"cifar100:{cifar100_dir},label=coarse", tmp_path)
    assert coarse.train.labels.tolist() == [0, 15, 19, 3] and coarse.class_names[3] == "coarse3"
    assert coarse.fingerprint != ds.fingerprint
    with open(cifar100_dir / "cifar-100-binary" / "test.bin", "ab") as f:
        f.write(b"\x01")
    with pytest.raises(DataError, match="not a multiple of 3074"):
        _load(f"cifar100:{cifar100_dir}", tmp_path)


# --- STL-10 ---------------------------------------------------------------------------


def test_stl10_orientation_labels_and_unlabeled(stl10_dir, tmp_path):
    ds = _load(f"stl10:{stl10_dir}", tmp_path)
    assert ds.train.images.shape == (3, 3, 96, 96) and len(ds.test) == 2
    assert ds.train.labels.tolist() == [0, 9, 4] and ds.test.labels.tolist() == [1, 2]
    for k in range(3):
        assert np.array_equal(ds.train.images[k].numpy(), stl_image(k + 1))
    img = ds.train.images[0]
    assert int(img[0, 3, 50]) == 255 and int(img[0, 50, 3]) == 1  # a row, not a column
    assert int(img[2, 10, 20]) == 253 and int(img[2, 20, 10]) == 1
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert ds.unlabeled is not None and len(ds.unlabeled) == 4
    assert (ds.unlabeled.labels == UNLABELED).all()
    assert np.array_equal(ds.unlabeled.images[3].numpy(), stl_image(9))


def test_stl10_errors(stl10_dir, tmp_path):
    d = stl10_dir / "stl10_binary"
    (d / "test_y.bin").write_bytes(bytes([1]))
    with pytest.raises(DataError, match="1 labels for the 2 images"):
        _load(f"stl10:{stl10_dir}", tmp_path)
    (d / "test_y.bin").write_bytes(bytes([1, 11]))
    with pytest.raises(DataError, match=r"labels 1\.\.11"):
        _load(f"stl10:{stl10_dir}", tmp_path)
    (d / "test_y.bin").write_bytes(bytes([1, 2]))
    with open(d / "unlabeled_X.bin", "ab") as f:
        f.write(b"\x00" * 5)
    with pytest.raises(DataError, match=r"STL-10 file .* is truncated"):
        _load(f"stl10:{stl10_dir}", tmp_path)


# --- folders --------------------------------------------------------------------------


def test_folder_classes_mixed_modes_and_unlabeled(image_folder, tmp_path):
    ds = _load(f"folder:{image_folder}", tmp_path)
    assert ds.class_names == ["cat", "dog"]
    assert ds.train.images.shape == (4, 3, 12, 12)  # one colour image makes all RGB
    assert ds.train.ids == ["cat/a.png", "cat/sub/deep/b.jpg", "dog/D.PNG", "dog/c.png"]
    assert ds.train.labels.tolist() == [0, 0, 1, 1]
    rgb = np.asarray(Image.open(image_folder / "cat" / "a.png"))
    assert np.array_equal(ds.train.images[0].numpy(), rgb.transpose(2, 0, 1))
    assert np.array_equal(ds.train.images[2].numpy(), rgb.transpose(2, 0, 1))  # alpha dropped
    assert (ds.train.images[3] == 77).all()  # grey copied to 3 channels
    assert ds.unlabeled is not None and len(ds.unlabeled) == 2
    assert ds.unlabeled.ids == ["unlabeled/f.bmp", "unlabeled/x/y/z/e.png"]
    assert (ds.unlabeled.labels == UNLABELED).all() and ds.test is None


def test_folder_grey_only_is_one_channel(tmp_path):
    root = tmp_path / "g"
    for c in ("a", "b"):
        save_image(root / c / "1.png", np.full((5, 6), 9, np.uint8))
    ds = _load(f"folder:{root}", tmp_path)
    assert ds.train.images.shape == (2, 1, 5, 6)


def test_folder_corrupt_image_warns_or_fails_strict(image_folder, tmp_path):
    (image_folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): .*broken.jpg"):
        ds = _load(f"folder:{image_folder}", tmp_path)
    assert len(ds.train) == 4
    with pytest.raises(DataError, match=r"unreadable image .*dog/broken.jpg"):
        _load(f"folder:{image_folder}", tmp_path, strict=True)  # also from the cache
    with pytest.raises(DataError, match=r"broken\.jpg"):
        _load(f"folder:{image_folder}", tmp_path / "fresh", strict=True)


def test_folder_size_mismatch_and_resize(image_folder, tmp_path):
    save_image(image_folder / "dog" / "big.png", np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(DataError, match=r"big.png is 30x20 .* add ,size=N"):
        _load(f"folder:{image_folder}", tmp_path)
    ds = _load(f"folder:{image_folder},size=16", tmp_path)
    assert ds.train.images.shape == (5, 3, 16, 16) and ds.unlabeled.images.shape[1:] == (3, 16, 16)


def test_folder_empty_and_loose_files(tmp_path):
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found in"):
        _load(f"folder:{empty}", tmp_path)
    loose = tmp_path / "loose"
    save_image(loose / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no class folders"):
        _load(f"folder:{loose}", tmp_path)


def test_folder_symlink_loop_terminates(image_folder, tmp_path):
    (image_folder / "cat" / "sub" / "loop").symlink_to(
        image_folder / "cat", target_is_directory=True
    )
    (image_folder / "unlabeled" / "x" / "up").symlink_to("..", target_is_directory=True)
    (image_folder / "dog" / "dangling.png").symlink_to(tmp_path / "missing.png")
    ds = _load(f"folder:{image_folder}", tmp_path)
    assert len(ds.train) == 4 and len(ds.unlabeled) == 2


def test_folder_train_and_val_splits(tmp_path):
    root = tmp_path / "s"
    for split, n in (("train", 3), ("val", 2)):
        for c in ("b", "a"):
            for k in range(n):
                save_image(root / split / c / f"{k}.png", np.full((4, 4), k, np.uint8))
    save_image(root / "unlabeled" / "u.png", np.zeros((4, 4), np.uint8))
    ds = _load(f"folder:{root}", tmp_path)
    assert ds.class_names == ["a", "b"] and len(ds.train) == 6 and len(ds.test) == 4
    assert ds.test.ids[0] == "val/a/0.png" and len(ds.unlabeled) == 1
    save_image(root / "val" / "zebra" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="val/zebra has no counterpart"):
        _load(f"folder:{root}", tmp_path)


def test_unlabeled_option(image_folder, tmp_path):
    other = tmp_path / "more"
    for k in range(3):
        save_image(other / "deep" / f"{k}.png", np.zeros((12, 12, 3), np.uint8))
    ds = _load(f"folder:{image_folder},unlabeled={other}", tmp_path)
    assert len(ds.unlabeled) == 3 and ds.unlabeled.ids[0] == "deep/0.png"


def test_tiny_imagenet_layout(tiny_imagenet_dir, tmp_path):
    ds = _load(f"folder:{tiny_imagenet_dir}", tmp_path)
    again = _load(f"tinyimagenet:{tiny_imagenet_dir}", tmp_path)
    assert ds.fingerprint == again.fingerprint  # the same layout, the same cache entry
    assert ds.name == "tinyimagenet" and ds.class_names == ["n01", "n02"]
    assert ds.train.labels.tolist() == [0, 1, 1]
    assert ds.train.ids[0] == "train/n01/images/n01_0.JPEG"
    assert ds.test.labels.tolist() == [0, 1, 1, 0] and ds.test.ids[0] == "val/images/val_0.JPEG"
    assert ds.train.channels == 3 and ds.test.image_size == (8, 8)
    ann = tiny_imagenet_dir / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_9.JPEG\tn77\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="'n77' is not among"):
        _load(f"tinyimagenet:{tiny_imagenet_dir}", tmp_path)


def test_tinyimagenet_kind_needs_train(image_folder, tmp_path):
    with pytest.raises(DataError, match="no train/ folder"):
        _load(f"tinyimagenet:{image_folder}", tmp_path)


# --- npz ------------------------------------------------------------------------------


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "a.npz", images=nhwc, labels=labels, class_names=np.array(["x", "y", "z"]))
    ds = _load(f"npz:{tmp_path / 'a.npz'}", tmp_path)
    assert np.array_equal(ds.train.images.numpy(), nhwc.transpose(0, 3, 1, 2))
    assert ds.class_names == ["x", "y", "z"] and ds.test is None
    nchw = nhwc.transpose(0, 3, 1, 2)
    np.savez(tmp_path / "b.npz", x=nchw, y=labels, test_images=nchw[:2], test_labels=[2, 2])
    ds = _load(f"npz:{tmp_path / 'b.npz'}", tmp_path)
    assert np.array_equal(ds.train.images.numpy(), nchw) and ds.class_names == ["0", "1", "2"]
    assert ds.test.labels.tolist() == [2, 2] and np.array_equal(ds.test.images.numpy(), nchw[:2])
    np.savez(tmp_path / "b2.npz", x=nchw, test_images=nhwc[:2, :, :, 0], test_labels=[2, 2])
    with pytest.raises(DataError, match=r"test_images\] holds \(1, 5, 7\) images"):
        _load(f"npz:{tmp_path / 'b2.npz'}", tmp_path)
    np.savez(tmp_path / "c.npz", images=nhwc[:, :, :, 0] / 255.0)  # NHW floats, no labels
    ds = _load(f"npz:{tmp_path / 'c.npz'},classes=4", tmp_path)
    assert ds.train.images.shape == (6, 1, 5, 7) and (ds.train.labels == UNLABELED).all()
    assert np.array_equal(ds.train.images[:, 0].numpy(), nhwc[:, :, :, 0])
    assert ds.class_names == ["0", "1", "2", "3"]
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(DataError, match=r"shape \(4, 5, 6, 7\)"):
        _load(f"npz:{tmp_path / 'd.npz'}", tmp_path)
    np.savez(tmp_path / "e.npz", labels=labels)
    with pytest.raises(DataError, match="no 'images' array"):
        _load(f"npz:{tmp_path / 'e.npz'}", tmp_path)


# --- cache ----------------------------------------------------------------------------


def _many_images(root: Path, n: int = 150) -> Path:
    rng = np.random.default_rng(0)
    for k in range(n):
        save_image(root / f"c{k % 3}" / f"{k}.png", rng.integers(0, 256, (32, 32, 3), np.uint8))
    return root


def test_cache_hit_is_faster_and_identical(tmp_path, monkeypatch):
    root = _many_images(tmp_path / "many")
    spec = f"folder:{root}"
    t0 = time.perf_counter()
    first = _load(spec, tmp_path)
    t1 = time.perf_counter()
    second = _load(spec, tmp_path)
    t2 = time.perf_counter()
    assert t2 - t1 < t1 - t0
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 64
    assert torch.equal(first.train.images, second.train.images)
    assert first.train.ids == second.train.ids
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert [p.name for p in entries] == [first.fingerprint]
    # a hit never decodes
    src = sources_mod.SOURCES["folder"]
    boom = type(src)(src.scan, lambda *a: pytest.fail("decoded on a cache hit"), src.options)
    monkeypatch.setitem(sources_mod.SOURCES, "folder", boom)
    _load(spec, tmp_path)
    monkeypatch.undo()
    # the tensors are writable and private: editing one never touches the cache
    second.train.images[0].zero_()
    assert torch.equal(_load(spec, tmp_path).train.images, first.train.images)
    # touching a file changes the fingerprint
    f = root / "c0" / "0.png"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert _load(spec, tmp_path).fingerprint != first.fingerprint


def test_corrupt_cache_is_rebuilt(cifar10_dir, tmp_path):
    spec = f"cifar10:{cifar10_dir}"
    ref = _load(spec, tmp_path)
    entry = tmp_path / "cache" / ref.fingerprint
    (entry / "meta.json").write_text("{not json")
    assert torch.equal(_load(spec, tmp_path).train.images, ref.train.images)
    (entry / "train_images.npy").unlink()
    assert torch.equal(_load(spec, tmp_path).test.images, ref.test.images)
    with open(entry / "test_images.npy", "r+b") as fh:
        fh.truncate(200)
    assert torch.equal(_load(spec, tmp_path).test.images, ref.test.images)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["fingerprint"] == ref.fingerprint


def test_unwritable_cache_still_loads(cifar10_dir, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = load_dataset(f"cifar10:{cifar10_dir}", cache_dir=blocker / "cache")
    assert len(ds.train) == 8 and any("could not write the data cache" in str(x.message) for x in w)


def test_env_cache_dir(cifar10_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWLABELS_CACHE", str(tmp_path / "envcache"))
    ds = load_dataset(f"cifar10:{cifar10_dir}")
    assert (tmp_path / "envcache" / ds.fingerprint / "meta.json").is_file()


# --- the real data in ../shared/data --------------------------------------------------


def test_real_cifar10(shared_data, tmp_path):
    path = shared_data / "cifar10"
    if not path.is_dir():
        pytest.skip("no shared CIFAR-10")
    spec = f"cifar10:{path}"
    _load(spec, tmp_path)
    t = time.perf_counter()
    ds = _load(spec, tmp_path)
    assert time.perf_counter() - t < 2.0
    assert ds.train.images.shape == (20000, 3, 32, 32) and len(ds.test) == 10000
    assert ds.test.counts() == [1000] * 10 and ds.class_names[6] == "frog"
    assert ds.train.labels[:5].tolist() == [6, 9, 9, 4, 1]


@pytest.mark.slow
def test_real_tiny_imagenet(shared_data, tmp_path):
    path = shared_data / "tiny-imagenet-200"
    if not path.is_dir():
        pytest.skip("no shared Tiny-ImageNet")
    ds = _load(f"folder:{path}", tmp_path)
    assert ds.name == "tinyimagenet" and ds.train.num_classes == 200
    assert ds.train.images.shape == (10000, 3, 64, 64) and ds.test.images.shape[0] == 10000
    assert ds.train.counts() == [50] * 200 and ds.test.counts() == [50] * 200
    assert ds.class_names == sorted((path / "wnids.txt").read_text().split())
    t = time.perf_counter()
    again = _load(f"tinyimagenet:{path}", tmp_path)
    assert time.perf_counter() - t < 5.0
    assert torch.equal(again.test.images[:100], ds.test.images[:100])
