"""Shared fixtures: the real data in ../shared/data, and tiny fake data sets written to disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the data cache of the whole test session out of the user's home folder."""
    old = os.environ.get("FEWLABELS_CACHE")
    os.environ["FEWLABELS_CACHE"] = str(tmp_path_factory.mktemp("fewlabels-cache"))
    yield
    if old is None:
        os.environ.pop("FEWLABELS_CACHE", None)
    else:
        os.environ["FEWLABELS_CACHE"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real CIFAR-10 and Tiny-ImageNet subsets)."""
    path = (REPO / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


def cifar_records(labels: list[int], label_bytes: int = 1) -> tuple[bytes, np.ndarray]:
    """CIFAR binary records; image k has every red byte = k, green = 100 + k, blue = 200."""
    images = np.zeros((len(labels), 3, 32, 32), np.uint8)
    out = bytearray()
    for k, lab in enumerate(labels):
        images[k, 0], images[k, 1], images[k, 2] = k, 100 + k, 200
        images[k, 0, 0, 1] = 250  # a marker at row 0, column 1 of the red plane
        head = bytes([lab]) if label_bytes == 1 else bytes([lab % 20, lab])
        out += head + images[k].tobytes()
    return bytes(out), images


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    """A fake CIFAR-10 download: batches 1 and 3 (5 + 3 images), a test batch of 4."""
    d = tmp_path / "cifar" / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    (d / "data_batch_1.bin").write_bytes(cifar_records([0, 1, 2, 3, 9])[0])
    (d / "data_batch_3.bin").write_bytes(cifar_records([4, 5, 6])[0])
    (d / "test_batch.bin").write_bytes(cifar_records([7, 8, 9, 0])[0])
    return tmp_path / "cifar"


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    """A fake CIFAR-100 binary download with fine and coarse label names."""
    d = tmp_path / "c100" / "cifar-100-binary"
    d.mkdir(parents=True)
    (d / "train.bin").write_bytes(cifar_records([0, 55, 99, 23], label_bytes=2)[0])
    (d / "test.bin").write_bytes(cifar_records([42, 7], label_bytes=2)[0])
    (d / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)) + "\n")
    (d / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)))
    return tmp_path / "c100"


def stl_image(k: int) -> np.ndarray:
    """An asymmetric (3, 96, 96) image: a bright row 3 in red, a bright column 70 in green."""
    img = np.full((3, 96, 96), k, np.uint8)
    img[0, 3, :] = 255
    img[1, :, 70] = 254
    img[2, 10, 20] = 253
    return img


@pytest.fixture
def stl10_dir(tmp_path: Path) -> Path:
    """Fake STL-10 binary files in the real (column-major) layout, under stl10_binary/."""
    d = tmp_path / "stl" / "stl10_binary"
    d.mkdir(parents=True)

    def write_x(name: str, ks: list[int]) -> None:
        # each channel is stored column by column: write the transpose of (H, W)
        (d / name).write_bytes(b"".join(stl_image(k).transpose(0, 2, 1).tobytes() for k in ks))

    write_x("train_X.bin", [1, 2, 3])
    (d / "train_y.bin").write_bytes(bytes([1, 10, 5]))
    write_x("test_X.bin", [4, 5])
    (d / "test_y.bin").write_bytes(bytes([2, 3]))
    write_x("unlabeled_X.bin", [6, 7, 8, 9])
    return tmp_path / "stl"


def save_image(path: Path, array: np.ndarray, **kw) -> Path:
    """Write a uint8 (H, W) or (H, W, C) array with PIL (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Classes cat and dog (nested, mixed PNG/JPEG, grey/RGB/RGBA) and a deep unlabeled tree."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    save_image(root / "cat" / "a.png", rgb)
    save_image(root / "cat" / "sub" / "deep" / "b.jpg", rgb, quality=95)
    save_image(root / "dog" / "c.png", np.full((12, 12), 77, np.uint8))  # grayscale
    rgba = np.dstack([rgb, np.full((12, 12), 128, np.uint8)])
    save_image(root / "dog" / "D.PNG", rgba)
    save_image(root / "unlabeled" / "x" / "y" / "z" / "e.png", rgb)
    save_image(root / "unlabeled" / "f.bmp", rgb)
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def tiny_imagenet_dir(tmp_path: Path) -> Path:
    """The Tiny-ImageNet layout with two wnids, 3 training and 4 validation images."""
    root = tmp_path / "tiny"
    wnids = ["n02", "n01"]
    for w, n in zip(wnids, (2, 1), strict=True):
        for k in range(n):
            img = np.full((8, 8, 3), 10 * k + (100 if w == "n01" else 0), np.uint8)
            save_image(root / "train" / w / "images" / f"{w}_{k}.JPEG", img)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
    ann = []
    for k, w in enumerate(["n01", "n02", "n02", "n01"]):
        save_image(root / "val" / "images" / f"val_{k}.JPEG", np.full((8, 8), 50, np.uint8))
        ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    return root
