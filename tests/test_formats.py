"""Data in the formats users already have: csv:, hf: and CIFAR's Python version."""

from __future__ import annotations

import importlib.abc
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import cifar_records
from PIL import Image

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import hf, load_dataset

REPO = Path(__file__).resolve().parents[1]
FEWLABELS = Path(sys.executable).with_name("fewlabels")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(FEWLABELS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


# -- csv: ----------------------------------------------------------------------------------
def _image(k: int) -> np.ndarray:
    """An asymmetric 16x16 RGB image unique to ``k``."""
    a = np.full((16, 16, 3), (k * 7) % 256, np.uint8)
    a[k % 16, :, 0] = 255
    a[:, 3, 1] = k % 256
    return a


def _csv_images(root: Path, n: int = 30) -> dict[str, np.ndarray]:
    """``n`` PNGs under root/imgs/...; path (relative to root) -> pixels."""
    out = {}
    for k in range(n):
        rel = f"imgs/{'ab'[k % 2]}/{k:02d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(k)).save(root / rel)
        out[rel] = _image(k)
    return out


@pytest.fixture
def csv_data(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """30 images in three classes (bird, cat, dog); images 27-29 are unlabeled."""
    images = _csv_images(tmp_path)
    rows = ["path,label,note"]
    for k, rel in enumerate(images):
        label = "" if k >= 27 else ["dog", "cat", "bird"][k % 3]
        rows.append(f"{rel},{label},row {k}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "list.csv", images


def test_csv_source_reads_labels_unlabeled_rows_and_pixels(csv_data):
    path, images = csv_data
    ds = load_dataset(f"csv:{path}")
    assert ds.name == "csv:list"
    assert ds.class_names == ["bird", "cat", "dog"]
    assert len(ds.train) == 27 and ds.unlabeled is not None and len(ds.unlabeled) == 3
    rels = list(images)
    assert ds.train.ids == rels[:27] and ds.unlabeled.ids == rels[27:]
    want = [["dog", "cat", "bird"][k % 3] for k in range(27)]
    assert [ds.class_names[y] for y in ds.train.labels.tolist()] == want
    assert ds.train.images.shape == (27, 3, 16, 16)
    for k in (0, 13, 26):
        assert np.array_equal(ds.train.images[k].numpy().transpose(1, 2, 0), images[rels[k]])
    assert np.array_equal(ds.unlabeled.images[2].numpy().transpose(1, 2, 0), images[rels[29]])
    assert ds.unlabeled.labels.tolist() == [-1, -1, -1]


def test_csv_other_column_names_root_option_and_size(tmp_path):
    images = _csv_images(tmp_path / "pics", 4)
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = ["Class,Image"] + [f"{'xy'[k % 2]},{rel}" for k, rel in enumerate(images)]
    (lists / "l.csv").write_text("\r\n".join(rows))
    ds = load_dataset(f"csv:{lists / 'l.csv'},root={tmp_path / 'pics'},size=8")
    assert ds.class_names == ["x", "y"] and ds.train.labels.tolist() == [0, 1, 0, 1]
    assert ds.train.images.shape == (4, 3, 8, 8)
    with pytest.raises(DataError, match=r"l\.csv, row 2: no such image file"):
        load_dataset(f"csv:{lists / 'l.csv'}")  # paths are relative to the CSV's folder


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"file,category\na.png,x\n", "row 1: no 'label' column (also accepted: 'class')"),
        (b"label\nx\n", "row 1: no 'path' column (also accepted: 'image', 'file')"),
        (b"path,label\nimgs/a/00.png,x\n\nimgs/nope.png,y\n", "row 4: no such image file"),
        (b"path,label\nimgs/a/00.png,x\nimgs/b/01.png\n", "row 3: 1 field(s)"),
        (b"path,label\nimgs/a/00.png,x\nimgs/b/01.png,\xff\n", "row 3: not UTF-8 text"),
        (b"path,label\nimgs/a/00.png," + b"x" * 140_000 + b"\n", "row 2: a field over 128 KB"),
        (b"path,label\nimgs/a/00.png,x\nimgs/a/00.png,y\n", "row 3: imgs/a/00.png is listed again"),
        (b"path,label\nimgs/a/00.png,\n", "has no labeled rows"),
        (b"path,label\n,x\n", "row 2: the image path is empty"),
        (b"", "is empty; expected a header row"),
    ],
)
def test_csv_bad_input_names_the_file_and_row(tmp_path, content, needle):
    _csv_images(tmp_path, 2)
    (tmp_path / "bad.csv").write_bytes(content)
    with pytest.raises(DataError) as err:
        load_dataset(f"csv:{tmp_path / 'bad.csv'}")
    assert str(tmp_path / "bad.csv") in str(err.value)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_csv_options_are_checked(tmp_path, csv_data):
    path, _ = csv_data
    with pytest.raises(ConfigError, match="unknown option 'labels' for csv"):
        load_dataset(f"csv:{path},labels=x")
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(f"csv:{path},root={tmp_path / 'missing'}")
    with pytest.raises(DataError, match="is not a file; csv:FILE"):
        load_dataset(f"csv:{tmp_path}")


def test_csv_at_the_command_line_inspect_and_train(csv_data, tmp_path):
    path, _ = csv_data
    r = _cli("data", "inspect", f"csv:{path}", "--sheet", str(tmp_path / "s.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "csv:list: 3x16x16 images, 3 classes" in " ".join(r.stdout.split())
    assert "bird" in r.stdout and "(unlabeled)" in r.stdout
    assert (tmp_path / "s.png").is_file()
    r = _cli(
        "train",
        "--data",
        f"csv:{path}",
        "--labels-per-class",
        "2",
        "--budget",
        "5steps",
        "--out",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "model.pt").is_file()
    (tmp_path / "bad.csv").write_text("path,label\nimgs/missing.png,x\n")
    r = _cli("data", "inspect", f"csv:{tmp_path / 'bad.csv'}", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "bad.csv, row 2: no such image file" in lines[0]


# -- CIFAR, Python version -----------------------------------------------------------------
class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles as Python 2 did for CIFAR: every str and bytes a py2 ``str``."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def py2_pickle(obj) -> bytes:
    """``obj`` pickled the way the CIFAR download's files are (protocol 2, numpy.core)."""
    import io

    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _batch(labels: list[int], key: str = "labels") -> tuple[dict, np.ndarray]:
    _, images = cifar_records(labels)
    return {
        b"batch_label": b"training batch",
        key.encode(): labels,
        b"data": images.reshape(len(labels), -1),
        b"filenames": [b"f%d.png" % k for k in range(len(labels))],
    }, images


def _cifar10_py(root: Path, dump=py2_pickle) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, labels in (("data_batch_1", [0, 1, 2, 3, 9]), ("data_batch_3", [4, 5, 6])):
        (d / name).write_bytes(dump(_batch(labels)[0]))
    (d / "test_batch").write_bytes(dump(_batch([7, 8, 9, 0])[0]))
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer")] + [
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    (d / "batches.meta").write_bytes(dump({b"label_names": names, b"num_vis": 3072}))
    return root


@pytest.mark.parametrize("dump", [py2_pickle, lambda o: pickle.dumps(o, protocol=4)])
def test_cifar10_python_version_matches_the_binary_version(tmp_path, cifar10_dir, dump):
    _cifar10_py(tmp_path / "py", dump)
    ds = load_dataset(f"cifar10:{tmp_path / 'py'}")
    binary = load_dataset(f"cifar10:{cifar10_dir}")
    assert ds.name == binary.name == "cifar10"
    assert ds.class_names[:2] == ["plane", "car"] and len(ds.class_names) == 10
    for a, b in ((ds.train, binary.train), (ds.test, binary.test)):
        assert np.array_equal(a.images.numpy(), b.images.numpy())
        assert a.labels.tolist() == b.labels.tolist()
        assert a.ids == b.ids
    # the folder itself works as well as its parent
    assert (
        load_dataset(f"cifar10:{tmp_path / 'py' / 'cifar-10-batches-py'}").train.ids == ds.train.ids
    )


def test_cifar100_python_version_fine_and_coarse(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    fine = [0, 55, 99, 23]
    obj, images = _batch(fine, "fine_labels")
    obj[b"coarse_labels"] = [f % 20 for f in fine]
    (d / "train").write_bytes(py2_pickle(obj))
    meta = {
        b"fine_label_names": [b"fine%d" % i for i in range(100)],
        b"coarse_label_names": [b"coarse%d" % i for i in range(20)],
    }
    (d / "meta").write_bytes(py2_pickle(meta))
    ds = load_dataset(f"cifar100:{tmp_path}")
    assert ds.train.labels.tolist() == fine and ds.class_names[55] == "fine55"
    assert np.array_equal(ds.train.images.numpy(), images) and ds.test is None
    coarse = load_dataset(f"cifar100:{tmp_path},label=coarse")
    assert coarse.train.labels.tolist() == [0, 15, 19, 3] and coarse.class_names[3] == "coarse3"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [1]}))
    with pytest.raises(DataError) as err:
        load_dataset(f"cifar10:{tmp_path}")
    msg = str(err.value)
    assert f"{d / 'data_batch_1'} was refused" in msg
    assert f"{os.system.__module__}.system" in msg and "could run code" in msg
    assert not marker.exists()
    # a global that builds something harmless-looking is refused too: nothing but numpy's
    (d / "data_batch_1").write_bytes(b"\x80\x02cbuiltins\ngetattr\nq\x00.")
    with pytest.raises(DataError, match=r"would load builtins\.getattr"):
        load_dataset(f"cifar10:{tmp_path}")


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' is float32"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "rows hold 100 bytes"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "has no 'labels' list"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "'labels' must be 2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10 of record 1"),
        ([1, 2], "holds a list, not a CIFAR batch"),
    ],
)
def test_cifar_python_bad_batches(tmp_path, obj, needle):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(py2_pickle(obj))
    with pytest.raises(DataError, match=needle) as err:
        load_dataset(f"cifar10:{tmp_path}")
    assert str(d / "data_batch_1") in str(err.value)


def test_cifar_python_truncated_and_empty_folder(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    with pytest.raises(DataError, match=r"no cifar10 batch files .* in .*cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path}")
    (d / "data_batch_1").write_bytes(py2_pickle(_batch([1, 2])[0])[:5000])
    with pytest.raises(DataError, match="data_batch_1 is not a readable CIFAR pickle"):
        load_dataset(f"cifar10:{tmp_path}")


def test_binary_version_wins_when_both_are_there(tmp_path, cifar10_dir):
    (cifar10_dir / "cifar-10-batches-py").mkdir()
    (cifar10_dir / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")
    assert len(load_dataset(f"cifar10:{cifar10_dir}").train) == 8


# -- hf: -----------------------------------------------------------------------------------
def _pil(k: int, mode: str = "RGB") -> Image.Image:
    im = Image.fromarray(_image(k))
    return im.convert(mode)


def test_hf_saved_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["ant", "bee", "cow"])}
    )
    train = datasets.Dataset.from_dict(
        {"img": [_pil(k) for k in range(6)], "label": [0, 1, 2, 0, 1, -1]}, features=feats
    )
    test = datasets.Dataset.from_dict(
        {"img": [_pil(k) for k in (10, 11)], "label": [2, 1]}, features=feats
    )
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "d"))
    ds = load_dataset(f"hf:{tmp_path / 'd'}")
    assert ds.class_names == ["ant", "bee", "cow"]
    assert ds.train.labels.tolist() == [0, 1, 2, 0, 1, -1]
    assert ds.test is not None and ds.test.labels.tolist() == [2, 1]
    assert ds.train.images.shape == (6, 3, 16, 16)
    for k in range(6):
        assert np.array_equal(ds.train.images[k].numpy().transpose(1, 2, 0), _image(k))
    assert np.array_equal(ds.test.images[1].numpy().transpose(1, 2, 0), _image(11))
    only = load_dataset(f"hf:{tmp_path / 'd'},split=test")
    assert only.train.labels.tolist() == [2, 1] and only.test is None
    with pytest.raises(DataError, match="has no split 'val' \\(splits: test, train\\)"):
        load_dataset(f"hf:{tmp_path / 'd'},split=val")
    with pytest.raises(DataError, match="has no column 'pixels'"):
        load_dataset(f"hf:{tmp_path / 'd'},image=pixels")


def test_hf_arrays_string_labels_and_grey_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    arrays = [_image(k) for k in range(4)]
    d = datasets.Dataset.from_dict(
        {"pixels": arrays, "species": ["owl", "emu", "", "owl"], "other": [1, 2, 3, 4]}
    )
    d.save_to_disk(str(tmp_path / "a"))
    ds = load_dataset(f"hf:{tmp_path / 'a'},image=pixels,label=species")
    assert ds.class_names == ["emu", "owl"]
    assert ds.train.labels.tolist() == [1, 0, -1, 1]
    assert np.array_equal(ds.train.images[3].numpy().transpose(1, 2, 0), arrays[3])
    grey = datasets.Dataset.from_dict(
        {"image": [_pil(k, "L") for k in range(3)], "label": [0, 1, 1]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    grey.save_to_disk(str(tmp_path / "g"))
    g = load_dataset(f"hf:{tmp_path / 'g'},size=8")
    assert g.train.images.shape == (3, 1, 8, 8) and g.class_names == ["0", "1"]
    with pytest.raises(DataError, match=r"no label column .*name it with label="):
        load_dataset(f"hf:{tmp_path / 'a'},image=pixels")


def test_hf_cache_folder_of_a_builder(tmp_path):
    datasets = pytest.importorskip("datasets")
    for c in ("x", "y"):
        (tmp_path / "src" / "train" / c).mkdir(parents=True)
        for k in range(3):
            _pil(k + 3 * (c == "y")).save(tmp_path / "src" / "train" / c / f"{k}.png")
    datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "src"), cache_dir=str(tmp_path / "cache")
    )
    ds = load_dataset(f"hf:{tmp_path / 'cache' / 'imagefolder'}")
    assert ds.class_names == ["x", "y"] and sorted(ds.train.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert ds.train.images.shape == (6, 3, 16, 16)


def test_hf_cache_folder_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "c"))
    (tmp_path / "c" / "owner___my_data_set").mkdir(parents=True)
    (tmp_path / "c" / "cifar10").mkdir()
    assert hf.cache_folder("Owner/MyDataSet") is None  # the owner keeps its case
    assert hf.cache_folder("owner/MyDataSet") == tmp_path / "c" / "owner___my_data_set"
    assert hf.cache_folder("cifar10") == tmp_path / "c" / "cifar10"
    assert hf.cache_folder("mnist") is None
    assert hf.cache_folder("../etc") is None and hf.cache_folder("a/b/c") is None
    monkeypatch.delenv("HF_DATASETS_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "datasets" / "cifar10").mkdir(parents=True)
    assert hf.cache_folder("cifar10") == tmp_path / "home" / "datasets" / "cifar10"


def test_hf_errors(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a save_to_disk folder"):
        load_dataset(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match="expected a column or split name"):
        load_dataset(f"hf:{tmp_path / 'empty'},label=a b")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(
        DataError, match=r"needs the datasets package: pip install 'fewlabels\[hf\]'"
    ):
        load_dataset(f"hf:{tmp_path / 'd'}")
    monkeypatch.delitem(sys.modules, "datasets")
    monkeypatch.setattr(sys, "meta_path", [_BrokenDatasets(), *sys.meta_path])
    with pytest.raises(DataError, match=r"datasets package cannot be imported: libarrow\.so\.26"):
        load_dataset(f"hf:{tmp_path / 'd'}")


class _BrokenDatasets(importlib.abc.MetaPathFinder):
    """``datasets`` installed but broken (a missing shared library)."""

    def find_spec(self, name, path=None, target=None):
        if name == "datasets":
            raise ImportError("libarrow.so.26: cannot open shared object file")
        return None
