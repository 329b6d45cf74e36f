"""Fuzzing every reader of user files with hypothesis: arbitrary bytes give a valid result or
a one-line ``FewlabelsError``, never another exception and never a hang.

Hypothesis draws one byte string per example; each example becomes ``PER_EXAMPLE`` inputs
to the reader: the bytes themselves, a well-formed input built from them (a reader-specific
generator: records, annotation lines, a study over the real keys, a CSV over known ids, a
real checkpoint) and mutations of both (cut short, bytes overwritten, chunks repeated,
tokens of the format inserted, random bytes). Drawing is most of hypothesis's cost, so this
keeps 10,000 inputs per reader within seconds: ``FUZZ_EXAMPLES`` (1,000 by default; set
``FEWLABELS_FUZZ_EXAMPLES``) times ``PER_EXAMPLE`` (10). Derandomized: CI runs the same
inputs every time. The parsers take bytes, so only the label-CSV and checkpoint readers
touch the disk (one small temp file).
"""

from __future__ import annotations

import io
import os
import random
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.errors import FewlabelsError
from fewlabels.data import cifar, stl10
from fewlabels.data.folder import parse_val_annotations
from fewlabels.data.imageset import Dataset, ImageSet
from fewlabels.data.sources import parse_spec
from fewlabels.study.spec import StudyPlan, parse_study

FUZZ_EXAMPLES = int(os.environ.get("FEWLABELS_FUZZ_EXAMPLES", "1000"))
PER_EXAMPLE = 10
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SEEDS = st.binary(max_size=48)
Make = Callable[[random.Random], bytes]


def mutate(data: bytes, rng: random.Random, tokens: list[bytes]) -> bytes:
    """One random edit: cut, overwrite, repeat a chunk, insert a token, or random bytes."""
    n = len(data)
    kind = rng.randrange(5)
    if kind == 0:
        return data[: rng.randrange(n + 1)]
    if kind == 1:
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if b:
                b[rng.randrange(n)] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        i, j = sorted((rng.randrange(n + 1), rng.randrange(n + 1)))
        return data[:j] + data[i:j] * rng.randint(1, 3) + data[j:]
    if kind == 3 and tokens:
        i = rng.randrange(n + 1)
        return data[:i] + rng.choice(tokens) + data[i:]
    return rng.randbytes(rng.randrange(2 * n + 8))


def inputs(seed: bytes, make: Make, tokens: list[bytes] = ()) -> list[bytes]:
    """``PER_EXAMPLE`` inputs from one drawn byte string (deterministic in it)."""
    rng = random.Random(zlib.crc32(seed) ^ len(seed))
    out = [seed, make(rng)]
    while len(out) < PER_EXAMPLE:
        out.append(mutate(rng.choice(out), rng, list(tokens)))
    return out


def one_line(e: FewlabelsError) -> None:
    assert str(e) and "\n" not in str(e)


# -- CIFAR ---------------------------------------------------------------------------------
def make_cifar(label_bytes: int) -> Make:
    def make(rng: random.Random) -> bytes:
        recs = b"".join(
            bytes([rng.choice([0, 9, 10, 99, 100, 255])] * label_bytes)
            + rng.randbytes(8) * (cifar.IMAGE_BYTES // 8)
            for _ in range(rng.randint(1, 3))
        )
        return recs

    return make


def make_names(rng: random.Random) -> bytes:
    names = [
        rng.choice(["cat", " dog ", "", "a\tb", "ünï", "x" * 30]) for _ in range(rng.randint(8, 12))
    ]
    return "\n".join(names).encode()


@FUZZ
@given(seed=SEEDS, label_bytes=st.sampled_from([1, 2]))
def test_fuzz_cifar_records(seed, label_bytes):
    classes = 10 if label_bytes == 1 else 100
    for blob in inputs(seed, make_cifar(label_bytes)):
        try:
            x, y = cifar.parse_records(blob, "batch.bin", label_bytes, label_bytes - 1, classes)
        except FewlabelsError as e:
            one_line(e)
            continue
        n = len(blob) // (label_bytes + cifar.IMAGE_BYTES)
        assert x.shape == (n, 3, 32, 32) and x.dtype == np.uint8 and y.shape == (n,)
        assert n > 0 and int(y.min()) >= 0 and int(y.max()) < classes


@FUZZ
@given(seed=SEEDS)
def test_fuzz_cifar_class_names(seed):
    for blob in inputs(seed, make_names, [b"\n", b"\r\n", b"\xff", b"  "]):
        try:
            names = cifar.parse_names(blob, "batches.meta.txt", 10)
        except FewlabelsError as e:
            one_line(e)
            continue
        assert len(names) == 10 and all(n and n == n.strip() for n in names)


# -- STL-10 ------------------------------------------------------------------------------
def make_stl_labels(rng: random.Random) -> bytes:
    return bytes(rng.choice([0, 1, 5, 10, 11]) for _ in range(rng.randint(0, 6)))


@FUZZ
@given(seed=SEEDS, classes=st.integers(1, 12))
def test_fuzz_stl10_sizes_and_labels(seed, classes):
    rng = random.Random(len(seed))
    for blob in inputs(seed, make_stl_labels):
        size = rng.choice([0, len(blob) * stl10.IMAGE_BYTES, rng.randrange(10**12)])
        try:
            n = stl10.image_count(size, "train_X.bin")
        except FewlabelsError as e:
            one_line(e)
            n = len(blob)
        else:
            assert n > 0 and n * stl10.IMAGE_BYTES == size
        try:
            y = stl10.parse_labels(blob, "train_y.bin", n, "train_X.bin", classes)
        except FewlabelsError as e:
            one_line(e)
            continue
        assert len(y) == n and (n == 0 or (int(y.min()) >= 0 and int(y.max()) < classes))


@FUZZ
@given(seed=SEEDS)
def test_fuzz_stl10_class_names(seed):
    for blob in inputs(seed, make_names, [b"\n", b"\xc3", b"\x00"]):
        try:
            names = stl10.parse_class_names(blob, "class_names.txt")
        except FewlabelsError as e:
            one_line(e)
            continue
        assert names and all(names)


# -- Tiny-ImageNet val_annotations.txt -----------------------------------------------------
_WNIDS = {"n01443537": 0, "n01629819": 1}


def make_annotations(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 5)):
        name = rng.choice(["val_0.JPEG", "a b.JPEG", "../x", "", ".", "x\x00y", "é.png", "/abs"])
        wnid = rng.choice([*_WNIDS, "n99", ""])
        box = [str(rng.randint(-5, 80)) for _ in range(rng.randint(0, 4))]
        lines.append(rng.choice(["\t", " ", "\t\t"]).join([name, wnid, *box]))
    return rng.choice(["\n", "\r\n"]).join(lines).encode()


@FUZZ
@given(seed=SEEDS)
def test_fuzz_tiny_imagenet_annotations(seed):
    for blob in inputs(seed, make_annotations, [b"\t", b"\n", b"n01443537", b"/", b"\xff"]):
        try:
            rows = parse_val_annotations(blob, "val_annotations.txt", _WNIDS)
        except FewlabelsError as e:
            one_line(e)
            continue
        for fname, label in rows:
            assert fname and "/" not in fname and "\0" not in fname and label in (0, 1)


# -- study YAML ----------------------------------------------------------------------------
_VALID = {
    "data": "digits",
    "budget": "2steps",
    "grid": {"labels_per_class": [2], "unlabeled": [20], "seeds": [0]},
    "methods": ["supervised"],
}
_SCALARS = [None, True, 0, -1, 2, 2**70, 0.5, float("nan"), float("inf"), "", "x", "rest",
            "1:3", "2steps", "-1steps", "1m", "supervised", "fixmatch", "simclr", "linear",
            "nosuch", [], {}, [1, 2], {"a": 1}]  # fmt: skip
_KEYS = {
    "": ["name", "data", "test", "val", "budget", "train", "grid", "methods", "upper_bound",
         "report", "backbone", "zz"],
    "grid": ["labels_per_class", "labeled_fraction", "unlabeled", "seeds", "lables"],
    "method": ["train", "pretrain", "then", "name", "kwargs", "budget", "then_budget",
               "settings", "x"],
    "train": ["batch_size", "lr", "seed", "budget", "evals", "foo"],
}  # fmt: skip


def _value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 2 and r < 0.15:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and r < 0.25:
        return {rng.choice(_KEYS["train"]): _value(rng, depth + 1) for _ in range(2)}
    return rng.choice(_SCALARS)


def make_study(rng: random.Random) -> bytes:
    doc = {k: v for k, v in _VALID.items() if rng.random() < 0.85}
    for _ in range(rng.randint(0, 3)):
        where = rng.choice(["", "grid", "method", "train"])
        key, value = rng.choice(_KEYS[where]), _value(rng)
        if where == "":
            doc[key] = value
        elif where == "grid" and isinstance(doc.get("grid"), dict):
            doc["grid"] = {**doc["grid"], key: value}
        elif where == "method":
            old = doc.get("methods")
            entry = {key: value, "train": "supervised"}
            doc["methods"] = [*(old if isinstance(old, list) else []), entry]
        else:
            doc["train"] = {key: value}
    return yaml.safe_dump(doc, allow_unicode=True).encode()


_YAML_TOKENS = [b": ", b"- ", b"[", b"]", b"{", b"}", b"&a ", b"*a", b"<<: *a\n", b"\t",
                b"\n  ", b"!!python/object:os.system ", b"---\n", b"%YAML 1.1\n", b"? ",
                b"budget: 1steps\n", b"'", b'"', b"#", b"\xef\xbb\xbf"]  # fmt: skip


@FUZZ
@given(seed=SEEDS)
def test_fuzz_study_yaml(seed):
    for blob in inputs(seed, make_study, _YAML_TOKENS):
        try:
            plan = parse_study(blob, "fuzz.yaml", check_data=False)
        except FewlabelsError as e:
            one_line(e)
            continue
        assert isinstance(plan, StudyPlan) and plan.cells and plan.jobs


def test_the_valid_study_parses():  # the seed of the generated studies is itself valid
    plan = parse_study(yaml.safe_dump(_VALID).encode(), "v.yaml")
    assert len(plan.cells) == 2  # one grid cell and the all-labels upper bound


# -- data specs ----------------------------------------------------------------------------
def make_spec(rng: random.Random) -> bytes:
    kind = rng.choice(["folder", "cifar10", "cifar100", "stl10", "npz", "digits", "x", ""])
    opts = "".join(
        f",{rng.choice(['size', 'unlabeled', 'label', 'classes', 'k', ''])}="
        f"{rng.choice(['8', '0', '-1', 'fine', 'coarse', '', 'a,b'])}"
        for _ in range(rng.randint(0, 3))
    )
    return f"{kind}:{rng.choice(['', '/x', 'a,b', '~/d', ' '])}{opts}".encode()


@FUZZ
@given(seed=SEEDS)
def test_fuzz_data_specs(seed):
    for blob in inputs(seed, make_spec, [b",", b"=", b":", b"size=9"]):
        try:
            kind, _path, options = parse_spec(blob.decode("utf-8", "replace"))
        except FewlabelsError as e:
            one_line(e)
            continue
        assert kind and isinstance(options, dict)


# -- label CSVs (fewlabels data add-labels, --labels) --------------------------------------
_IDS = ["cat/a.png", "cat/b.png", "data_batch_1:0", "dog/c d.png"]


def _universe():
    from fewlabels.select.labels import Universe

    train = ImageSet(
        torch.zeros(4, 1, 4, 4, dtype=torch.uint8),
        torch.tensor([0, -1, 1, -1]),
        ["cat", "dog"],
        list(_IDS),
    )
    return Universe(Dataset("fuzz", train, None, None, "fp"))


def make_csv(rng: random.Random) -> bytes:
    header = rng.choice([["id", "label"], ["ID", " label "], ["id"], ["label", "id", "x"], []])
    cells = [*_IDS, "cat", "dog", "DOG", "", "zebra", '"a,b"', "x"]
    rows = [[rng.choice(cells) for _ in header or [0, 1]] for _ in range(rng.randint(0, 5))]
    return "\n".join(",".join(r) for r in [header, *rows]).encode()


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csv") / "labels.csv"


def test_fuzz_label_csv(csv_path):
    pytest.importorskip("fewlabels.select.labels")
    from fewlabels.select.labels import parse_labels

    uni = _universe()

    @FUZZ
    @given(seed=SEEDS, allow_blank=st.booleans())
    def check(seed, allow_blank):
        for blob in inputs(seed, make_csv, [b",", b'"', b"\n", b"\r", b"\x00", b"\xef\xbb\xbf"]):
            csv_path.write_bytes(blob)
            try:
                labels, blank = parse_labels(csv_path, uni, allow_blank=allow_blank)
            except FewlabelsError as e:
                one_line(e)
                continue
            assert all(0 <= r < len(uni) and k in (0, 1) for r, k in labels.items())
            assert blank >= 0 and (allow_blank or blank == 0)

    check()


# -- checkpoints ---------------------------------------------------------------------------
def _checkpoint(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


_CKPTS = [
    _checkpoint({"format": 1, "kind": "model", "w": torch.arange(6.0)}),
    _checkpoint({"format": 2}),
    _checkpoint({"format": "1"}),
    _checkpoint([1, 2]),
]


def test_fuzz_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"kind": "model"}, path)
    assert load_checkpoint(path)["kind"] == "model"

    @FUZZ
    @given(seed=SEEDS)
    def check(seed):
        for blob in inputs(seed, lambda rng: rng.choice(_CKPTS), [b"PK\x03\x04", b"\x80\x02"]):
            path.write_bytes(blob)
            try:
                obj = load_checkpoint(path)
            except FewlabelsError as e:
                one_line(e)
                continue
            assert isinstance(obj, dict) and isinstance(obj["format"], int)

    check()


# -- npz archives --------------------------------------------------------------------------
def _npz_blob(compressed: bool, extra: str | None = None, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    if extra is not None:
        import zipfile

        with zipfile.ZipFile(buf, "a") as z:
            z.writestr(extra, b"not an array")
    return buf.getvalue()


_IMGS = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
_NPZS = [
    _npz_blob(False, images=_IMGS, labels=[0, 1, 1], class_names=np.array(["a", "b"])),
    _npz_blob(True, images=_IMGS, labels=[0, 2, 255]),
    _npz_blob(True, images=_IMGS / 255.0, y=[0, -1, 1], test_images=_IMGS, test_labels=[1, 0, 1]),
    _npz_blob(False, images=_IMGS, labels=[0, 1, 0], class_names=np.array([b"\xff", b"b"])),
    _npz_blob(True, "notes.txt", images=_IMGS, labels=[0, 1, 0]),
    _npz_blob(False, x=_IMGS[..., None], unlabeled_images=_IMGS),
]


def test_fuzz_npz(tmp_path):
    from fewlabels.data import npz

    path = tmp_path / "d.npz"

    @FUZZ
    @given(seed=SEEDS)
    def check(seed):
        for blob in inputs(seed, lambda rng: rng.choice(_NPZS), [b"PK\x03\x04", b"\x93NUMPY"]):
            path.write_bytes(blob)
            try:
                dec = npz.decode("npz", npz.scan("npz", path, {}), {}, False)
            except FewlabelsError as e:
                one_line(e)
                continue
            x, y = dec.train.images, dec.train.labels
            assert x.dtype == np.uint8 and x.ndim == 4 and y.shape == (len(x),)
            assert len(y) == 0 or -1 <= int(y.min()) <= int(y.max()) < len(dec.class_names)

    check()
