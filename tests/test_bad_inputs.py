"""The bad-input corpus: every malformed input gets its exact one-line error at the CLI.

Each case builds its inputs in a fresh folder and runs the CLI in-process. The answer must
be exit code 2 and exactly one line on stderr, ``error: ...``, holding the expected text
(which names the file or key); no traceback; and nothing written or half-written: the
folder's files are the same afterwards and the data cache holds no temp files.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
from pathlib import Path

import bad_inputs_more  # noqa: F401  (registers its cases)
import bad_inputs_runs  # noqa: F401  (registers its cases)
import numpy as np
import pytest
import torch
from bad_input_kit import (
    CASES,
    STUDY,
    a_file,
    a_training_run,
    case,
    grey,
    inspect,
    lying_png,
    model_file,
    nan_model,
    png,
    runner,
    study,
    train,
    two_classes,
)
from PIL import Image

from fewlabels.cli import app
from fewlabels.data import load_dataset
from fewlabels.study.store import STORE_NAME, Store


# -- builders ----------------------------------------------------------------------------
def cifar_bytes(labels: list[int], label_bytes: int = 1) -> bytes:
    out = bytearray()
    for lab in labels:
        head = bytes([lab]) if label_bytes == 1 else bytes([lab % 20, lab])
        out += head + bytes(range(256)) * 12
    return bytes(out)


def cifar_dir(root: Path, **files: bytes) -> Path:
    d = root / "cifar"
    d.mkdir()
    for name, data in files.items():
        (d / name.replace("__", ".")).write_bytes(data)
    return d


STL_IMAGE = 3 * 96 * 96


def stl_dir(root: Path, **files: bytes) -> Path:
    d = root / "stl"
    d.mkdir()
    for name, data in files.items():
        (d / name.replace("__", ".")).write_bytes(data)
    return d


def tiny_imagenet(root: Path, annotations: bytes) -> Path:
    d = root / "tiny"
    for w in ("n01", "n02"):
        png(d / "train" / w / "images" / f"{w}_0.png", grey(8))
    png(d / "val" / "images" / "val_0.png", grey(8))
    (d / "val" / "val_annotations.txt").write_bytes(annotations)
    return d


class _Payload:
    """Unpickling this runs ``exec``: it would create the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


# -- CIFAR ---------------------------------------------------------------------------------
@case("CIFAR file {root}/cifar/data_batch_1.bin is truncated or has extra bytes: 6046 bytes")
def cifar_truncated(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([0, 1])[:-100])
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case(
    "data_batch_1.bin is truncated or has extra bytes: 6156 bytes is not a multiple of 3073 "
    "(2 records + 10 bytes)"
)
def cifar_oversized(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([0, 1]) + b"\x00" * 10)
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case("label 10 of record 1 in {root}/cifar/data_batch_1.bin is out of range for 10 classes")
def cifar_label_out_of_range(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([3, 10, 2]))
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case("label 255 of record 0 in {root}/cifar/test_batch.bin is out of range")
def cifar_label_255_in_test_batch(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([1]), test_batch__bin=cifar_bytes([255]))
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case("CIFAR file {root}/cifar/data_batch_2.bin is empty (0 bytes)")
def cifar_zero_byte_batch(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([1]), data_batch_2__bin=b"")
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case("label 100 of record 1 in {root}/cifar-100-binary/train.bin is out of range for 100 classes")
def cifar100_fine_label_out_of_range(root):
    cifar_dir(root, train__bin=cifar_bytes([5, 100], label_bytes=2))
    (root / "cifar").rename(root / "cifar-100-binary")
    return inspect(f"cifar100:{root}", root)


@case("{root}/cifar/batches.meta.txt is not UTF-8 text (bad byte at offset 3)")
def cifar_names_file_not_text(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([1]), batches__meta__txt=b"cat\xff\xfe")
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case("{root}/cifar/batches.meta.txt lists 3 class names, not 10")
def cifar_names_file_too_short(root):
    cifar_dir(root, data_batch_1__bin=cifar_bytes([1]), batches__meta__txt=b"a\nb\nc\n")
    return inspect(f"cifar10:{root / 'cifar'}", root)


@case("{root}/cifar-10-batches-py/data_batch_1 is not a readable CIFAR pickle")
def cifar_python_version_corrupt(root):
    (root / "cifar-10-batches-py").mkdir()
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04pickle")
    return inspect(f"cifar10:{root}", root)


# -- STL-10 ------------------------------------------------------------------------------
@case("STL-10 file {root}/stl/train_X.bin is truncated or has extra bytes: 55196 bytes")
def stl_truncated_images(root):
    stl_dir(root, train_X__bin=b"\x01" * (2 * STL_IMAGE), train_y__bin=b"\x01\x02")
    (root / "stl" / "train_X.bin").write_bytes(b"\x01" * (2 * STL_IMAGE - 100))
    return inspect(f"stl10:{root / 'stl'}", root)


@case(
    "train_X.bin is truncated or has extra bytes: 55303 bytes is not a multiple of 27648 "
    "(2 images + 7 bytes)"
)
def stl_oversized_images(root):
    stl_dir(root, train_X__bin=b"\x01" * (2 * STL_IMAGE + 7), train_y__bin=b"\x01\x02")
    return inspect(f"stl10:{root / 'stl'}", root)


@case("{root}/stl/train_y.bin holds labels 0..2; STL-10 labels are 1..10")
def stl_label_zero(root):
    stl_dir(root, train_X__bin=b"\x01" * (2 * STL_IMAGE), train_y__bin=b"\x00\x02")
    return inspect(f"stl10:{root / 'stl'}", root)


@case("{root}/stl/test_y.bin holds labels 1..11; STL-10 labels are 1..10")
def stl_label_eleven(root):
    stl_dir(
        root,
        train_X__bin=b"\x01" * STL_IMAGE,
        train_y__bin=b"\x01",
        test_X__bin=b"\x01" * (2 * STL_IMAGE),
        test_y__bin=b"\x01\x0b",
    )
    return inspect(f"stl10:{root / 'stl'}", root)


@case("{root}/stl/train_y.bin has 3 labels for the 2 images in train_X.bin")
def stl_more_labels_than_images(root):
    stl_dir(root, train_X__bin=b"\x01" * (2 * STL_IMAGE), train_y__bin=b"\x01\x02\x03")
    return inspect(f"stl10:{root / 'stl'}", root)


@case("{root}/stl/train_X.bin has no labels file train_y.bin beside it")
def stl_missing_labels_file(root):
    stl_dir(root, train_X__bin=b"\x01" * STL_IMAGE)
    return inspect(f"stl10:{root / 'stl'}", root)


@case("STL-10 file {root}/stl/unlabeled_X.bin is empty (0 bytes)")
def stl_zero_byte_unlabeled(root):
    stl_dir(root, train_X__bin=b"\x01" * STL_IMAGE, train_y__bin=b"\x01", unlabeled_X__bin=b"")
    return inspect(f"stl10:{root / 'stl'}", root)


# -- image folders -----------------------------------------------------------------------
@case("unreadable image {root}/imgs/dog/empty.jpg")
def folder_zero_byte_jpeg_strict(root):
    d = two_classes(root)
    (d / "dog" / "empty.jpg").write_bytes(b"")
    return inspect(f"folder:{d}", root, "--strict")


@case("no readable images found in {root}/imgs (2 unreadable, first: {root}/imgs/cat/a.jpg)")
def folder_only_zero_byte_jpegs(root):
    for c in ("cat", "dog"):
        (root / "imgs" / c).mkdir(parents=True)
        (root / "imgs" / c / "a.jpg").write_bytes(b"")
    return inspect(f"folder:{root / 'imgs'}", root)


@case("unreadable image {root}/imgs/cat/lie.png")
def folder_png_with_lying_header_strict(root):
    d = two_classes(root)
    (d / "cat" / "lie.png").write_bytes(lying_png(4000, 4000))
    return inspect(f"folder:{d}", root, "--strict")


@case("unreadable image {root}/imgs/cat/huge.png")
def folder_png_header_claims_a_decompression_bomb(root):
    d = two_classes(root)
    (d / "cat" / "huge.png").write_bytes(lying_png(60000, 60000))
    return inspect(f"folder:{d}", root, "--strict")


@case("unreadable image {root}/imgs/dog/text.png")
def folder_text_file_named_png_strict(root):
    d = two_classes(root)
    (d / "dog" / "text.png").write_text("this is not a picture\n")
    return inspect(f"folder:{d}", root, "--strict")


@case("images are 1x1 pixels ({root}/imgs/cat/0.png); fewlabels needs at least 4x4")
def folder_of_1x1_images(root):
    d = root / "imgs"
    for c in ("cat", "dog"):
        png(d / c / "0.png", grey(1))
    return inspect(f"folder:{d}", root)


@case("image {root}/imgs/dog/tiny.png is 1x1 but cat/0.png is 12x12; add ,size=N")
def folder_1x1_image_among_others(root):
    d = two_classes(root)
    png(d / "dog" / "tiny.png", grey(1))
    return inspect(f"folder:{d}", root)


@case("class folder 'dog' in {root}/imgs holds no images; add images or remove the folder")
def folder_empty_class_folder(root):
    d = root / "imgs"
    png(d / "cat" / "0.png", grey())
    (d / "dog").mkdir()
    (d / "dog" / "notes.txt").write_text("nothing here")
    return inspect(f"folder:{d}", root)


@case("no images found in {root}/imgs")
def folder_every_class_folder_empty(root):
    for c in ("cat", "dog", "emu"):
        (root / "imgs" / c).mkdir(parents=True)
    return inspect(f"folder:{root / 'imgs'}", root)


@case("the unlabeled folder {root}/imgs/unlabeled holds no images")
def folder_unlabeled_folder_without_images(root):
    d = two_classes(root)
    (d / "unlabeled" / "sub").mkdir(parents=True)
    (d / "unlabeled" / "readme.txt").write_text("to do")
    return inspect(f"folder:{d}", root)


@case("the unlabeled folder {root}/pool holds no images")
def folder_unlabeled_option_without_images(root):
    d = two_classes(root)
    (root / "pool").mkdir()
    return inspect(f"folder:{d},unlabeled={root / 'pool'}", root)


@case("{root}/loop is a broken symbolic link or a symlink loop")
def folder_root_is_a_symlink_loop(root):
    (root / "loop").symlink_to(root / "loop")
    return inspect(f"folder:{root / 'loop'}", root)


@case("no images found in {root}/imgs")
def folder_class_folders_are_symlink_loops(root):
    d = root / "imgs"
    d.mkdir()
    (d / "a").symlink_to(d / "b")
    (d / "b").symlink_to(d / "a")
    return inspect(f"folder:{d}", root)


@case("folder option size='2': expected an image side from 8 to 4096 pixels")
def folder_size_option_too_small(root):
    return inspect(f"folder:{two_classes(root)},size=2", root)


# -- Tiny-ImageNet annotations -----------------------------------------------------------
@case("{root}/tiny/val/val_annotations.txt:2: class 'n99' is not among the train/ class folders")
def tiny_annotation_unknown_class(root):
    d = tiny_imagenet(root, b"val_0.png\tn01\t0\t0\t7\t7\nval_0.png\tn99\t0\t0\t7\t7\n")
    return inspect(f"tinyimagenet:{d}", root)


@case("{root}/tiny/val/val_annotations.txt is not UTF-8 text (bad byte at offset 9)")
def tiny_annotations_not_text(root):
    d = tiny_imagenet(root, b"val_0.png\xff\tn01\n")
    return inspect(f"tinyimagenet:{d}", root)


@case("val_annotations.txt:1: '../../../etc/passwd' is not a plain file name")
def tiny_annotation_escapes_the_folder(root):
    d = tiny_imagenet(root, b"../../../etc/passwd\tn01\t0\t0\t7\t7\n")
    return inspect(f"tinyimagenet:{d}", root)


@case("val_annotations.txt:1: expected 'file<TAB>wnid<TAB>box', got 'val_0.png'")
def tiny_annotation_missing_column(root):
    d = tiny_imagenet(root, b"val_0.png\n")
    return inspect(f"tinyimagenet:{d}", root)


# -- study files ---------------------------------------------------------------------------
@case("{root}/study.yaml line 8: unknown key 'lables_per_class' in grid")
def study_unknown_key(root):
    return study(root, "  lables_per_class: [2]", "  labels_per_class: [2]")


@case("{root}/study.yaml line 4: duplicate key 'budget' (first given on line 3)")
def study_duplicate_key(root):
    return study(root, "budget: 2steps\nbudget: 9steps", "budget: 2steps")


@case("{root}/study.yaml line 10: grid.seeds.0: Input should be a valid integer")
def study_seed_of_the_wrong_type(root):
    return study(root, "  seeds: [zero]", "  seeds: [0]")


@case("{root}/study.yaml line 10: grid.seeds: Value error, seeds takes numbers, got [True]")
def study_seed_that_yaml_reads_as_a_boolean(root):
    return study(root, "  seeds: [yes]", "  seeds: [0]")


@case("grid.labels_per_class: Value error, labels_per_class takes numbers, got [False]")
def study_labels_per_class_that_yaml_reads_as_a_boolean(root):
    return study(root, "  labels_per_class: [no]", "  labels_per_class: [2]")


@case("{root}/study.yaml line 11: methods: Input should be a valid list")
def study_methods_not_a_list(root):
    return study(root, "methods: supervised\n", "methods:\n  - supervised\n")


@case("{root}/study.yaml line 7: grid: Input should be a valid dictionary")
def study_grid_not_a_mapping(root):
    grid = "grid:\n  labels_per_class: [2]\n  unlabeled: [20]\n  seeds: [0]\n"
    return study(root, "grid: 5\n", grid)


@case("{root}/study.yaml line 3: budget '-5steps' is not understood")
def study_negative_budget(root):
    return study(root, "budget: -5steps", "budget: 2steps")


@case("{root}/study.yaml line 3: budget '0steps' must be positive")
def study_zero_budget(root):
    return study(root, "budget: 0steps", "budget: 2steps")


@case("{root}/study.yaml line 8: labels_per_class -2 cannot exist")
def study_negative_labels_per_class(root):
    return study(root, "  labels_per_class: [-2]", "  labels_per_class: [2]")


@case(
    "{root}/study.yaml line 8: cell 'supervised | labels_per_class=500 | unlabeled=0 | "
    "seed=0' cannot exist: 500 labels per class is more than class"
)
def study_more_labels_per_class_than_a_class_has(root):
    return study(root, "  labels_per_class: [500]", "  labels_per_class: [2]")


@case("{root}/study.yaml line 10: seed -1 must be from 0 to 2**63-1")
def study_negative_seed(root):
    return study(root, "  seeds: [-1]", "  seeds: [0]")


@case("{root}/study.yaml: not UTF-8 text (bad byte at offset 7)")
def study_not_utf8(root):
    return study(root, STUDY.encode().replace(b"tiny", b"t\xe9ny"))


@case("{root}/study.yaml line 10: not valid YAML: expected ',' or ']', but got ':'")
def study_not_yaml(root):
    return study(root, "  unlabeled: [20", "  unlabeled: [20]")


@case("{root}/study.yaml: its aliases expand to more than 100,000 values")
def study_billion_laughs(root):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 7):
        prev, name = chr(96 + k), chr(97 + k)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return study(root, "\n".join(lines) + "\n" + STUDY)


@case("{root}/study.yaml: nested too deeply to be a study file")
def study_nested_too_deeply(root):
    return study(root, "grid: " + "[" * 20000 + "]" * 20000 + "\n")


@case("{root}/study.yaml: a study file must hold a mapping of settings")
def study_empty_file(root):
    return study(root, "")


@case("{root}/study.yaml line 1: name '../escape' must be a plain folder name")
def study_name_with_a_slash(root):
    return study(root, "name: ../escape", "name: tiny")


@case("{root}/study.yaml line 5: train.lr: Value error, lr must be above 0, got -0.5")
def study_negative_learning_rate(root):
    return study(root, "train:\n  lr: -0.5", "train:")


@case("{root}/out holds study 'another', not 'tiny'; use another --out folder")
def study_out_folder_holds_another_study(root):
    (root / "out").mkdir()
    store = Store(root / "out" / STORE_NAME)
    with store.tx():
        store._set_meta("study_name", "another")
    store.close()
    return study(root, STUDY)


# -- training options ----------------------------------------------------------------------
@case("budget '-5steps' is not understood")
def train_negative_budget(root):
    return train(root, "--budget", "-5steps")


@case("1000 labels per class is more than class")
def train_labels_per_class_larger_than_a_class(root):
    return train(root, "--labels-per-class", "1000", "--budget", "1steps")


@case("labels per class must be positive, got -3")
def train_negative_labels_per_class(root):
    return train(root, "--labels-per-class", "-3", "--budget", "1steps")


@case("invalid setting train.seed: Value error, seed must be at least 0")
def train_negative_seed(root):
    return train(root, "--seed", "-1", "--budget", "1steps")


@case("invalid setting train.lr: Value error, lr must be above 0, got -0.1")
def train_negative_learning_rate(root):
    return train(root, "--lr", "-0.1", "--budget", "1steps")


@case("config file {root}/c.yaml line 2: duplicate key 'backbone' (first given on line 1)")
def train_config_with_duplicate_keys(root):
    (root / "c.yaml").write_text("backbone: convnet\nbackbone: fastnet\n")
    return train(root, "--config", str(root / "c.yaml"), "--budget", "1steps")


@case("config file {root}/c.yaml: not UTF-8 text (bad byte at offset 0)")
def train_config_not_utf8(root):
    (root / "c.yaml").write_bytes(b"\xffbackbone: convnet\n")
    return train(root, "--config", str(root / "c.yaml"))


@case("config file {root}/c.yaml: 'train' must be a mapping of settings")
def train_config_with_a_list_for_train(root):
    (root / "c.yaml").write_text("train: [1, 2]\n")
    return train(root, "--config", str(root / "c.yaml"))


@case("config file {root}/c.yaml line 1: unknown key 'lables_per_class'")
def train_config_unknown_key(root):
    (root / "c.yaml").write_text("lables_per_class: 5\n")
    return train(root, "--config", str(root / "c.yaml"))


# -- checkpoints ---------------------------------------------------------------------------
@case("{root}/cut.pt is not a readable checkpoint (truncated or corrupt")
def checkpoint_truncated(root):
    data = model_file(root / "m.pt").read_bytes()
    (root / "m.pt").unlink()
    (root / "cut.pt").write_bytes(data[: len(data) // 2])
    return ["evaluate", str(root / "cut.pt")]


@case("{root}/empty.pt is not a readable checkpoint (truncated or corrupt")
def checkpoint_zero_bytes(root):
    (root / "empty.pt").write_bytes(b"")
    return ["evaluate", str(root / "empty.pt")]


@case("{root}/noise.pt is not a readable checkpoint (truncated or corrupt")
def checkpoint_random_bytes(root):
    (root / "noise.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    return ["evaluate", str(root / "noise.pt")]


@case("{root}/other.pt does not match its architecture")
def checkpoint_from_another_backbone(root):
    m = model_file(root / "other.pt")
    obj = torch.load(m, weights_only=True)
    obj["network_config"] = {**obj["network_config"], "backbone": "fastnet"}
    torch.save(obj, m)
    return ["evaluate", str(m)]


@case("--init {root}/fast.pt holds a fastnet (1 channel) backbone but this run builds convnet")
def checkpoint_init_from_another_backbone(root):
    model_file(root / "fast.pt", backbone="fastnet")
    # a backbone given (left out, the run would take the init's)
    return train(
        root, "--init", str(root / "fast.pt"), "--budget", "1steps", "--backbone", "convnet"
    )


@case("{root}/out holds a run with other settings (backbone: 'convnet' there, 'fastnet' now)")
def checkpoint_resumed_with_another_backbone(root):
    first = train(root, "--budget", "1steps", "--labels-per-class", "2", "--evals", "0")
    r = runner.invoke(app, first, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (root / "out" / "checkpoint.pt").exists()
    return train(
        root, "--budget", "1steps", "--labels-per-class", "2", "--evals", "0",
        "--backbone", "fastnet",
    )  # fmt: skip


@case("{root}/evil.pt was refused: it is not a plain-weights checkpoint")
def checkpoint_raw_pickle_with_code(root):
    with open(root / "evil.pt", "wb") as f:
        pickle.dump({"format": 1, "x": _Payload(root / "PWNED")}, f)
    return ["evaluate", str(root / "evil.pt")]


@case("{root}/evil.pt was refused: it is not a plain-weights checkpoint")
def checkpoint_torch_zip_with_code(root):
    torch.save({"format": 1, "x": _Payload(root / "PWNED")}, root / "evil.pt")
    return ["predict", str(root / "evil.pt"), str(root)]


@case("{root}/new.pt has checkpoint format 99, newer than this fewlabels (1)")
def checkpoint_from_a_newer_fewlabels(root):
    model_file(root / "new.pt", format=99)
    return ["evaluate", str(root / "new.pt")]


@case("{root}/t.pt is not a fewlabels checkpoint")
def checkpoint_that_is_a_bare_tensor(root):
    torch.save(torch.zeros(3), root / "t.pt")
    return ["evaluate", str(root / "t.pt")]


# -- study stores --------------------------------------------------------------------------
@case(
    "{root}/s/study.sqlite was written by a newer fewlabels (store schema 99, this version "
    "reads up to 1)"
)
def store_from_a_newer_schema(root):
    (root / "s").mkdir()
    con = sqlite3.connect(root / "s" / STORE_NAME)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    con.commit()
    con.close()
    return ["report", str(root / "s")]


@case("{root}/s/study.sqlite is not a readable study store (file is not a database)")
def store_that_is_not_a_database(root):
    (root / "s").mkdir()
    (root / "s" / STORE_NAME).write_bytes(b"definitely not sqlite" * 100)
    return ["report", str(root / "s")]


@case("{root}/s holds no study (study.sqlite is missing)")
def store_missing(root):
    (root / "s").mkdir()
    return ["report", str(root / "s")]


# -- issue 32 (round two, b): label files ------------------------------------------------------
@case("{root}/big.csv line 2: not a valid CSV row (field larger than field limit (131072))")
def labels_csv_field_over_128_kb(root):
    d = two_classes(root)
    (root / "big.csv").write_text("id,label\n" + "x" * 140_000 + ",cat\n")
    labels = str(root / "labels.csv")
    return [
        "data",
        "add-labels",
        str(root / "big.csv"),
        "--data",
        f"folder:{d}",
        "--labels",
        labels,
    ]


# -- issue 32 (round two, b): checkpoints whose pieces do not fit ----------------------------------
@case("{root}/m.pt names 3 classes but its classifier head has 10 outputs")
def checkpoint_class_names_do_not_match_the_head(root):
    model_file(root / "m.pt", class_names=["a", "b", "c"])
    return ["evaluate", str(root / "m.pt")]


@case("{root}/m.pt names 3 classes but its classifier head has 10 outputs")
def checkpoint_class_names_do_not_match_the_head_at_predict(root):
    model_file(root / "m.pt", class_names=["a", "b", "c"])
    png(root / "p" / "x.png", grey(8))
    return ["predict", str(root / "m.pt"), str(root / "p")]


@case("{root}/m.pt: its network_config is a str, not a mapping")
def checkpoint_network_config_is_a_string(root):
    model_file(root / "m.pt", network_config="convnet")
    return ["evaluate", str(root / "m.pt")]


@case("{root}/m.pt: its network_config is a str, not a mapping")
def checkpoint_network_config_is_a_string_at_init(root):
    model_file(root / "m.pt", network_config="convnet")
    return train(root, "--init", str(root / "m.pt"), "--budget", "1steps")


@case("{root}/m.pt: its network_config is a str, not a mapping")
def checkpoint_network_config_is_a_string_as_encoder(root):
    model_file(root / "m.pt", network_config="convnet")
    out = str(root / "req.csv")
    return [
        "select",
        "--encoder",
        str(root / "m.pt"),
        "--no-source-labels",
        "--budget",
        "2",
        "--out",
        out,
    ]


@case("{root}/m.pt: weight 'backbone.")
def checkpoint_nan_weights_as_encoder(root):
    nan_model(root / "m.pt")
    out = str(root / "req.csv")
    return [
        "select",
        "--encoder",
        str(root / "m.pt"),
        "--no-source-labels",
        "--budget",
        "2",
        "--out",
        out,
    ]


@case("holds NaN values (saved from a diverged run?)")
def checkpoint_nan_weights_at_evaluate(root):
    nan_model(root / "m.pt")
    return ["evaluate", str(root / "m.pt")]


@case("{root}/m.pt: weight 'backbone.")
def checkpoint_nan_weights_at_init(root):
    nan_model(root / "m.pt")
    return train(root, "--init", str(root / "m.pt"), "--budget", "1steps")


@case("{root}/m.pt: weight 'backbone.")
def checkpoint_nan_weights_at_probe(root):
    nan_model(root / "m.pt")
    out = str(root / "probe")
    return ["probe", str(root / "m.pt"), "--labels-per-class", "2", "--out", out]


# -- issue 32 (round two, b): messages that sent the user the wrong way ----------------------------
@case("{root}/lying.npz member 'images' claims an array too large for memory in its .npy header")
def npz_header_claims_an_array_too_large_for_memory(root):
    import io
    import zipfile

    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**7, 10**6, 10)}
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 100)
    with zipfile.ZipFile(root / "lying.npz", "w") as z:
        z.writestr("images.npy", buf.getvalue())
    return inspect(f"npz:{root / 'lying.npz'}", root)


@case("config file {root}/conf is a folder, not a YAML file")
def train_config_is_a_folder(root):
    (root / "conf").mkdir()
    return train(root, "--config", str(root / "conf"))


# -- output paths, devices, batch sizes (reliability round two) ------------------------------
@case("out is empty; give a folder for the results")
def train_out_is_empty(root):
    return ["train", "--budget", "1steps", "--out", "", "--no-progress"]


@case("out {root}/f is a file, not a folder")
def train_out_is_a_file(root):
    return ["train", "--budget", "1steps", "--out", str(a_file(root)), "--no-progress"]


@case("out {root}/f/x cannot be created: {root}/f is a file, not a folder")
def pretrain_out_under_a_file(root):
    return ["pretrain", "--budget", "1steps", "--out", str(a_file(root) / "x"), "--no-progress"]


@case("out {root}/f is a file, not a folder")
def study_out_is_a_file(root):
    args = study(root, STUDY)
    return [*args[:-1], str(a_file(root))]


@case("out {root}/f is a file, not a folder")
def evaluate_out_is_a_file(root):
    return ["evaluate", str(model_file(root / "m.pt")), "--out", str(a_file(root))]


@case("out {root}/f is a file, not a folder")
def probe_out_is_a_file(root):
    m = str(model_file(root / "m.pt"))
    return ["probe", m, "--labels-per-class", "2", "--out", str(a_file(root)), "--no-progress"]


@case("out {root}/f is a file, not a folder")
def embed_out_is_a_file(root):
    return ["embed", str(model_file(root / "m.pt")), "--data", "digits", "--out", str(a_file(root))]


@case("out {root}/f/x.csv cannot be created: {root}/f is a file, not a folder")
def select_out_under_a_file(root):
    return ["select", "--budget", "5", "--out", str(a_file(root) / "x.csv")]


@case("out {root}/f/x.csv cannot be created: {root}/f is a file, not a folder")
def predict_out_under_a_file(root):
    png(root / "a.png", grey(8))
    m = str(model_file(root / "m.pt"))
    return ["predict", m, str(root / "a.png"), "--out", str(a_file(root) / "x.csv")]


@case("out {root}/d is a folder; give a file name")
def predict_out_is_a_folder(root):
    png(root / "a.png", grey(8))
    (root / "d").mkdir()
    return [
        "predict",
        str(model_file(root / "m.pt")),
        str(root / "a.png"),
        "--out",
        str(root / "d"),
    ]


@case("sheet {root}/s.txt is not an image file name; end it with .png")
def inspect_sheet_is_not_an_image_name(root):
    return ["data", "inspect", "digits", "--sheet", str(root / "s.txt")]


@case("{root}/run holds a train run; evaluate would overwrite its files")
def evaluate_out_is_a_training_run(root):
    run = a_training_run(root)
    return ["evaluate", str(run / "model.pt"), "--out", str(run)]


@case("{root}/run holds a train run; probe would overwrite its files")
def probe_out_is_a_training_run(root):
    run = a_training_run(root)
    return ["probe", str(run / "model.pt"), "--data", "digits", "--out", str(run), "--no-progress"]


@case("{root}/p holds a probe run; train would overwrite its files")
def train_out_is_a_probe_run(root):
    (root / "p").mkdir()
    (root / "p" / "metrics.json").write_text('{"protocol": "linear", "accuracy": 0.5}')
    return ["train", "--budget", "1steps", "--out", str(root / "p"), "--no-progress"]


@case("{root}/run holds a train run; study would overwrite its files")
def study_out_is_a_training_run(root):
    args = study(root, STUDY)
    return [*args[:-1], str(a_training_run(root))]


@case("train.batch_size: Value error, batch size must be at least 2 (BatchNorm")
def train_batch_size_one(root):
    return train(root, "--budget", "1steps", "--batch-size", "1")


@case("train.batch_size: Value error, batch_size must be a number, got True")
def train_config_batch_size_true(root):
    (root / "c.yaml").write_text("train:\n  batch_size: true\n")
    return train(root, "--config", str(root / "c.yaml"))


@case("train.evals: Value error, evals must be a number, got False")
def train_set_evals_false(root):
    return train(root, "--set", "train.evals=false")


@case("device 'tpu' is not a device; use auto, cpu, cuda or cuda:N")
def train_device_tpu(root):
    return train(root, "--budget", "1steps", "--device", "tpu")


@case("device 'cuda:99'")
def train_device_past_the_last_gpu(root):
    return train(root, "--budget", "1steps", "--device", "cuda:99")


@case("device 'tpu' is not a device")
def probe_device_tpu(root):
    m = str(model_file(root / "m.pt"))
    return ["probe", m, "--labels-per-class", "2", "--device", "tpu", "--out", str(root / "o")]


if not torch.cuda.is_available():

    @case("device 'cuda': this machine has no CUDA GPU")
    def train_device_cuda_without_cuda(root):
        return train(root, "--budget", "1steps", "--device", "cuda")


# -- the test ------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, int]:
    """Every file and link under ``root`` (symlinks not followed) -> its size."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(d) / name
            out[p.relative_to(root).as_posix()] = p.lstat().st_size if name in files else -1
    return out


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 150


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_its_one_line_error(name, tmp_path, monkeypatch):
    build, needle = CASES[name]
    root = tmp_path / "in"
    root.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEWLABELS_CACHE", str(cache))
    monkeypatch.chdir(root)  # default outputs (runs/...) would show up in the snapshot
    args = build(root)
    before = snapshot(root)
    r = runner.invoke(app, args, catch_exceptions=False)
    err = r.stderr.strip()
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output
    assert "\n" not in err and err.startswith("error: "), err
    assert needle.format(root=root) in err, err
    assert snapshot(root) == before  # nothing written, nothing half-written, no payload ran
    leftovers = [p for p in cache.rglob("*") if ".tmp" in p.name] if cache.exists() else []
    assert not leftovers


# -- inputs that are accepted (the decision is documented in docs/reliability.md) -----------
def test_16_bit_cmyk_and_palette_images_are_converted(tmp_path):
    d = tmp_path / "modes"
    d.mkdir()
    (d / "deep").mkdir()
    Image.fromarray(np.full((12, 12), 0x8000, np.uint16)).save(d / "deep" / "a.png")
    (d / "print").mkdir()
    Image.new("CMYK", (12, 12), (0, 255, 255, 0)).save(d / "print" / "b.jpg", quality=100)
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[..., 2] = 200
    (d / "pal").mkdir()
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "pal" / "c.png")
    assert Image.open(d / "deep" / "a.png").mode.startswith("I")
    assert Image.open(d / "pal" / "c.png").mode == "P"
    ds = load_dataset(f"folder:{d}", strict=True, cache_dir=tmp_path / "cache")
    x = {n: ds.train.images[ds.train.labels == k][0] for k, n in enumerate(ds.class_names)}
    assert ds.train.channels == 3
    assert x["deep"].unique().tolist() == [0x80]  # 16-bit 0x8000 -> 8-bit 0x80, not clipped
    red = x["print"].float().mean(dim=(1, 2))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # CMYK (0, 255, 255, 0) is red
    assert x["pal"][:, 0, 0].tolist() == [0, 0, 200]


def test_a_symlink_loop_inside_a_class_folder_is_walked_once(tmp_path):
    d = two_classes(tmp_path)
    (d / "cat" / "again").symlink_to(d / "cat")
    (d / "dog" / "self").symlink_to(d / "dog" / "self")
    ds = load_dataset(f"folder:{d}", strict=True, cache_dir=tmp_path / "cache")
    assert ds.train.counts() == [2, 2]


def test_a_checkpoint_with_code_is_never_run_by_any_command(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "kind": "model", "x": _Payload(marker)}, evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"format": 1, "x": _Payload(marker)}))
    out = str(tmp_path / "o")
    for f in (evil, raw):
        for args in (
            ["evaluate", str(f)],
            ["predict", str(f), str(tmp_path)],
            ["probe", str(f), "--data", "digits", "--labels-per-class", "2", "--out", out],
            ["embed", str(f), "--data", "digits", "--out", out],
            ["train", "--init", str(f), "--budget", "1steps", "--out", out],
        ):
            r = runner.invoke(app, args, catch_exceptions=False)
            assert r.exit_code == 2, (args, r.output)
            assert "refused" in r.stderr, (args, r.stderr)
    assert not marker.exists()
    # the payload is real: unpickling it without weights_only would have created the file
    pickle.loads(raw.read_bytes())
    assert marker.read_text() == "pwned"
