"""Reliability, round two: odd data files (links, 16-bit, EXIF, TIFF, FIFOs, bombs), npz
labels, the decode cache's key, and creating one study store from many processes at once.

Items about the command line run the real ``fewlabels`` script in a subprocess: exit code
2, exactly one ``error: ...`` line naming the file or value, no traceback, nothing written.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_image
from PIL import Image, ImageOps

from fewlabels.core.checkpoint import save_checkpoint
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import load_dataset
from fewlabels.evaluate.inference import find_images, read_images
from fewlabels.models import Network

REPO = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("fewlabels")


def _load(spec: str, tmp_path: Path, **kw):
    return load_dataset(spec, cache_dir=tmp_path / "cache", **kw)


def _cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    env["FEWLABELS_CACHE"] = str(cwd / "cache")
    return subprocess.run(
        [str(EXE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` (except the data cache) with its size and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        if "cache" in p.relative_to(root).parts or not (p.is_file() or p.is_symlink()):
            continue
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    text = r.stdout + r.stderr
    assert r.returncode == 2, text
    assert "Traceback" not in text, text
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _grey(path: Path, value: int, side: int = 8) -> Path:
    return save_image(path, np.full((side, side), value, np.uint8))


@pytest.fixture
def grey_model(tmp_path: Path) -> Path:
    """A (random) 1-channel 8x8 classifier of classes a and b, written as model.pt."""
    torch.manual_seed(0)
    net = Network("convnet", 1, 8, 2)
    path = tmp_path / "model.pt"
    save_checkpoint(
        {
            "kind": "model",
            "network_config": net.config,
            "state_dict": net.state_dict(),
            "class_names": ["a", "b"],
        },
        path,
    )
    return path


# -- item 2: a link back to the data root ---------------------------------------------
def test_a_link_back_into_the_data_does_not_make_other_classes_count(tmp_path):
    root = tmp_path / "imgs"
    for c, n in (("cat", 2), ("dog", 3), ("emu", 1)):
        for k in range(n):
            _grey(root / c / f"{k}.png", 10 * k)
    (root / "cat" / "up").symlink_to(root, target_is_directory=True)
    (root / "dog" / "sibling").symlink_to(root / "emu", target_is_directory=True)
    (root / "emu" / "parent").symlink_to(tmp_path, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"did not follow the folder link .*up.* \(and 2 more\)"):
        ds = _load(f"folder:{root}", tmp_path)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert ds.train.counts() == [2, 3, 1]
    # a link that leaves the data folder is followed
    outside = tmp_path / "more_cats"
    _grey(outside / "x.png", 99)
    (root / "cat" / "extra").symlink_to(outside, target_is_directory=True)
    with pytest.warns(UserWarning, match="did not follow"):
        assert _load(f"folder:{root}", tmp_path).train.counts() == [3, 3, 1]
    # predict walks a folder the same way
    assert len(find_images([root])) == 7


# -- item 4 and 14: one decoder for training and prediction ----------------------------
def test_16_bit_png_is_scaled_the_same_for_training_and_prediction(tmp_path):
    values = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    values[0, :3] = (200, 0xFF80, 65535)
    root = tmp_path / "deep"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.fromarray(values).save(root / c / "x.png")
    assert Image.open(root / "a" / "x.png").mode.startswith("I")
    expect = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    ds = _load(f"folder:{root}", tmp_path)
    assert np.array_equal(ds.train.images[0, 0].numpy(), expect)
    x, bad = read_images([root / "a" / "x.png"], 1, 8)  # the predict path
    assert not bad and np.array_equal(x[0, 0].numpy(), expect)
    x3, _ = read_images([root / "a" / "x.png"], 3, 8)
    assert all(np.array_equal(x3[0, k].numpy(), expect) for k in range(3))


def test_exif_orientation_is_applied_and_tiff_is_read(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(6, 4) * 10  # 4 wide, 6 high
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(pixels).save(root / "a" / "turned.png", exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(root / "a" / "turned.png")))
    assert upright.shape == (4, 6)
    Image.fromarray(upright).save(root / "b" / "scan.tif")
    Image.fromarray(upright).save(root / "b" / "scan2.TIFF")
    ds = _load(f"folder:{root}", tmp_path)
    assert ds.train.counts() == [1, 2]
    assert ds.train.images.shape[2:] == (4, 6)
    for k in range(3):
        assert np.array_equal(ds.train.images[k, 0].numpy(), upright)
    x, bad = read_images([root / "a" / "turned.png"], 1, 4)
    assert not bad and np.array_equal(
        x[0, 0].numpy(),
        np.asarray(Image.fromarray(upright).resize((4, 4), Image.Resampling.BILINEAR)),
    )


def _bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1x1 grey PNG whose header says ``width`` x ``height``: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    idat = zlib.compress(b"\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_skipped_by_training_and_by_predict(tmp_path, grey_model):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        _grey(root / c / "ok.png", 50)
    (root / "b" / "bomb.png").write_bytes(_bomb_png())
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): .*bomb.png"):
        assert _load(f"folder:{root}", tmp_path).train.counts() == [1, 1]
    out = tmp_path / "pred.csv"
    r = _cli("predict", str(grey_model), str(root), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"warning: skipped 1 unreadable image(s): {root / 'b' / 'bomb.png'}"
    ]
    assert len(out.read_text().strip().splitlines()) == 3  # header + the two readable images


# -- item 13: FIFOs are refused before anything opens them ------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifos_are_refused_not_waited_on(tmp_path, grey_model):
    fifo = tmp_path / "model_fifo.pt"
    os.mkfifo(fifo)
    before = _files(tmp_path)
    r = _cli("evaluate", str(fifo), "--data", "digits", cwd=tmp_path, timeout=60)
    _one_line_error(r, str(fifo), "FIFO")
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "model.pt")
    r = _cli("predict", str(run), str(tmp_path), cwd=tmp_path, timeout=60)
    _one_line_error(r, str(run / "model.pt"), "FIFO")
    img = tmp_path / "photo.png"
    os.mkfifo(img)
    r = _cli("predict", str(grey_model), str(img), cwd=tmp_path, timeout=60)
    _one_line_error(r, str(img), "FIFO")
    assert _files(tmp_path) == before  # FIFOs are no files: nothing else appeared
    assert not (tmp_path / "predictions.csv").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_checkpoint_is_refused_wherever_it_is_read(tmp_path):
    """probe, embed and --init read checkpoints through load_checkpoint, not load_model:
    a FIFO there is refused before torch.load would wait for a writer."""
    fifo = tmp_path / "enc.pt"
    os.mkfifo(fifo)
    before = _files(tmp_path)
    for args in (
        ("probe", str(fifo), "--data", "digits", "--out", str(tmp_path / "p")),
        ("embed", str(fifo), "--data", "digits"),
        ("train", "--init", str(fifo), "--budget", "2steps", "--out", str(tmp_path / "t")),
    ):
        r = _cli(*args, cwd=tmp_path, timeout=60)
        _one_line_error(r, str(fifo), "FIFO")
    assert _files(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifos_among_data_files(tmp_path, cifar10_dir):
    batches = cifar10_dir / "cifar-10-batches-bin"
    os.mkfifo(batches / "data_batch_2.bin")
    with pytest.raises(DataError, match=r"data_batch_2.bin is a FIFO"):
        _load(f"cifar10:{cifar10_dir}", tmp_path)
    os.mkfifo(tmp_path / "x.npz")
    with pytest.raises(DataError, match=r"x.npz is a FIFO"):
        _load(f"npz:{tmp_path / 'x.npz'}", tmp_path)
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        _grey(root / c / "ok.png", 5)
    os.mkfifo(root / "a" / "pipe.png")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): .*pipe.png"):
        assert _load(f"folder:{root}", tmp_path).train.counts() == [1, 1]
    with pytest.raises(DataError, match=r"pipe.png: a FIFO"):
        _load(f"folder:{root}", tmp_path, strict=True)


# -- item 14: classes whose images are all unreadable; the cache retries fixed files -----
def test_a_class_of_unreadable_images_is_refused(tmp_path):
    root = tmp_path / "imgs"
    for k in range(2):
        _grey(root / "cat" / f"{k}.png", 5)
    (root / "dog").mkdir()
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    before = _files(tmp_path)
    sheet = tmp_path / "sheet.png"
    r = _cli("data", "inspect", f"folder:{root}", "--sheet", str(sheet), cwd=tmp_path)
    _one_line_error(r, "'dog'", "no readable images", "2 unreadable")
    assert _files(tmp_path) == before


def test_a_file_made_readable_again_is_decoded_again(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        _grey(root / c / "0.png", 7)
    good = (root / "b" / "0.png").read_bytes()
    late = root / "b" / "late.png"
    late.write_bytes(b"\x00" * len(good))  # not yet readable (e.g. still being copied)
    st = late.stat()
    with pytest.warns(UserWarning, match="late.png"):
        assert _load(f"folder:{root}", tmp_path).train.counts() == [1, 1]
    late.write_bytes(good)  # same size; the copy tool then restores the original mtime
    os.utime(late, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert late.stat().st_mtime_ns == st.st_mtime_ns and late.stat().st_size == st.st_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _load(f"folder:{root}", tmp_path).train.counts() == [1, 2]


# -- items 11 and 14: npz labels and members -----------------------------------------
def _npz(path: Path, **arrays) -> Path:
    arrays.setdefault("images", np.zeros((len(arrays.get("labels", [0, 1])), 8, 8), np.uint8))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"labels": [0, 1, 255], "class_names": ["a", "b", "c"]}, "label 255 but there are 3"),
        ({"labels": [0, 1, 255]}, "label 255 but no image has label 2"),
        ({"labels": [0, 1], "test_images": np.zeros((1, 8, 8), np.uint8), "test_labels": [9]},
         "label 9 but no image has label 2"),
        ({"labels": [0, 10**6]}, "holds label 1000000; at most 100000 classes"),
        ({"labels": [0, 1], "class_names": np.array([b"ok", b"\xff\xfe"])},
         "[class_names] name 1 is not UTF-8"),
    ],
)  # fmt: skip
def test_npz_labels_outside_the_classes_are_refused(arrays, needle, tmp_path):
    path = _npz(tmp_path / "d.npz", **arrays)
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        _load(f"npz:{path}", tmp_path)
    assert needle in str(e.value) and "d.npz" in str(e.value)
    assert time.perf_counter() - t0 < 10


def test_npz_classes_option_bounds_the_labels(tmp_path):
    path = _npz(tmp_path / "d.npz", labels=[0, 3])
    with pytest.raises(DataError, match=r"label 3 but classes=3"):
        _load(f"npz:{path},classes=3", tmp_path)
    assert _load(f"npz:{path},classes=5", tmp_path).class_names == ["0", "1", "2", "3", "4"]
    with pytest.raises(ConfigError, match="at most 100000"):
        _load(f"npz:{path},classes=1000000", tmp_path)
    gappy = _npz(tmp_path / "g.npz", labels=[0, 2], class_names=["a", "b", "c"])
    assert _load(f"npz:{gappy}", tmp_path).train.counts() == [1, 0, 1]  # named: allowed


def test_npz_errors_at_the_cli(tmp_path):
    path = _npz(tmp_path / "d.npz", labels=[0, 1, 255])
    before = _files(tmp_path)
    r = _cli("data", "inspect", f"npz:{path}", "--sheet", str(tmp_path / "s.png"), cwd=tmp_path)
    _one_line_error(r, "d.npz[labels]", "255")
    path = _npz(tmp_path / "m.npz", labels=[0, 1])
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("notes.txt", "not an array")
    before = _files(tmp_path)
    r = _cli("data", "inspect", f"npz:{path}", "--sheet", str(tmp_path / "s.png"), cwd=tmp_path)
    _one_line_error(r, "m.npz", "'notes.txt' is not a .npy array")
    assert _files(tmp_path) == before


# -- item 12: many processes creating one new store ------------------------------------
def _open_stores(paths: list[str], starts: list[float], q) -> None:
    from fewlabels.study.store import Store

    errors = []
    for path, start in zip(paths, starts, strict=True):
        while time.time() < start:
            pass
        try:
            s = Store(path)
            s.counts()
            s.close()
        except Exception as e:  # every failure is reported to the test
            errors.append(f"{type(e).__name__}: {e}")
    q.put(errors)


def test_many_processes_create_the_same_new_store_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    errors: list[str] = []
    stores = 0
    t_end = time.monotonic() + 4.0
    rnd = 0
    while time.monotonic() < t_end:
        paths = [str(tmp_path / f"r{rnd}_{i}" / "study.sqlite") for i in range(40)]
        for p in paths:
            Path(p).parent.mkdir()
        base = time.time() + 0.3
        starts = [base + 0.01 * i for i in range(len(paths))]
        q = ctx.Queue()
        procs = [ctx.Process(target=_open_stores, args=(paths, starts, q)) for _ in range(12)]
        for p in procs:
            p.start()
        results = [q.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        errors += [e for r in results for e in r]
        stores += len(paths)
        rnd += 1
    assert stores >= 40
    assert not errors, f"{len(errors)} of {12 * stores} opens failed, first: {errors[0]}"
