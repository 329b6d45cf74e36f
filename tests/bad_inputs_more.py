"""The bad-input corpus, part two: study files, image folders, npz, csv:, hf: and CIFAR pickles.

Registered into ``bad_input_kit.CASES`` (run by ``test_bad_inputs.py``).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
from bad_input_kit import (
    STUDY,
    a_file,
    case,
    grey,
    inspect,
    lying_png,
    model_file,
    png,
    study,
    two_classes,
)
from PIL import Image


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 8, 8), dtype=np.uint8)


# -- study files: ratios and YAML quirks ------------------------------------------------------
def semi(root: Path, unlabeled: str) -> list[str]:
    """The tiny study with a semi-supervised method (which reads ``unlabeled``)."""
    text = STUDY.replace("  - supervised", "  - fixmatch").replace("[20]", unlabeled)
    return study(root, text)


@case("{root}/study.yaml line 9: cell 'fixmatch | labels_per_class=2 | unlabeled=0:1 |")
def study_unlabeled_ratio_of_zero_to_one(root):
    return semi(root, "['0:1']")


@case("{root}/study.yaml line 9: cell 'fixmatch | labels_per_class=2 | unlabeled=a:b |")
def study_unlabeled_ratio_not_a_number(root):
    return semi(root, "['a:b']")


@case("{root}/study.yaml line 9: cell 'fixmatch | labels_per_class=2 | unlabeled=-5 |")
def study_unlabeled_negative(root):
    return semi(root, "[-5]")


@case("{root}/study.yaml line 9: cell 'fixmatch | labels_per_class=2 | unlabeled=1:2:3 |")
def study_unlabeled_ratio_with_three_parts(root):
    return semi(root, "['1:2:3']")


@case("{root}/study.yaml line 9: cell 'fixmatch | labels_per_class=2 | unlabeled=True |")
def study_unlabeled_a_boolean(root):
    return semi(root, "[yes]")


@case("{root}/study.yaml line 8: grid.labels_per_class.0: Input should be a valid integer,")
def study_labels_per_class_as_octal_quirk(root):
    return study(root, "  labels_per_class: [1:2]", "  labels_per_class: [2]")


@case("{root}/study.yaml line 5: not valid YAML: found character '\\t' that cannot start any token")
def study_tab_indentation(root):
    return study(root, "train:\n\tbatch_size: 8", "train:\n  batch_size: 8")


@case("{root}/study.yaml line 13: tune: must be a whole number of trials, 0 or more, got -1")
def study_tune_negative(root):
    return study(root, "tune: -1\nupper_bound: false", "upper_bound: false")


@case("{root}/study.yaml line 13: tune: must be a whole number of trials, 0 or more, got 'many'")
def study_tune_a_word(root):
    return study(root, "tune: many\nupper_bound: false", "upper_bound: false")


@case("{root}/study.yaml line 13: budget 'lots' is not understood: use e.g. 20s, 30m, 2h,")
def study_max_compute_not_a_budget(root):
    return study(root, "max_compute: lots\nupper_bound: false", "upper_bound: false")


@case("{root}/study.yaml line 12: unknown method 'supervized'; choose from autoencoder,")
def study_unknown_method(root):
    return study(root, "methods:\n  - supervized\n", "methods:\n  - supervised\n")


@case("{root}/study.yaml line 13: unknown key 'threshhold' in methods.0")
def study_method_with_an_unknown_option(root):
    text = "methods:\n  - name: fixmatch\n    threshhold: 0.9\n"
    return study(root, text, "methods:\n  - supervised\n")


@case("{root}/study.yaml line 2: no such file or directory: /nonexistent/imgs")
def study_missing_data_source(root):
    return study(root, "data: folder:/nonexistent/imgs", "data: digits")


@case("{root}/study.yaml line 5: unknown key 'backbone' in train")
def study_unknown_backbone(root):
    return study(root, "train:\n  backbone: resnet9000", "train:")


@case("{root}/study.yaml line 5: train.batch_size: Value error, batch size must be at")
def study_batch_size_one(root):
    return study(root, "  batch_size: 1", "  batch_size: 8")


@case("{root}/study.yaml line 6: train.precision: Input should be 'auto', 'bf16' or 'fp32'")
def study_precision_unknown(root):
    return study(root, "  precision: fp8", "  precision: fp32")


# -- image folders: links, unreadable classes, 16-bit, FIFO -----------------------------------
@case("class folder 'dog' in {root}/imgs holds no readable images (2 unreadable; first:")
def folder_class_whose_images_are_all_unreadable(root):
    d = two_classes(root)
    for k in range(2):
        (d / "dog" / f"{k}.png").write_bytes(b"not a png")
    return inspect(f"folder:{d}", root)


@case("unreadable image {root}/imgs/cat/pipe.png: a FIFO, not an image file")
def folder_fifo_in_a_class_strict(root):
    d = two_classes(root)
    os.mkfifo(d / "cat" / "pipe.png")
    return inspect(f"folder:{d}", root, "--strict")


@case("{root}/m.pt is a FIFO, not a checkpoint file")
def evaluate_on_a_fifo(root):
    os.mkfifo(root / "m.pt")
    return ["evaluate", str(root / "m.pt")]


@case("{root}/x.png is a FIFO, not an image file")
def predict_on_a_fifo_image(root):
    m = model_file(root / "m.pt")
    os.mkfifo(root / "x.png")
    return ["predict", str(m), str(root / "x.png"), "--out", str(root / "p.csv")]


@case("{root}/f is not a folder")
def folder_data_root_is_a_file(root):
    return inspect(f"folder:{a_file(root)}", root)


@case("no such file or directory: {root}/nothing")
def folder_data_root_missing(root):
    return inspect(f"folder:{root / 'nothing'}", root)


@case("image {root}/imgs/dog/deep.png is 20x20 but cat/0.png is 12x12; add ,size=N to the")
def folder_16_bit_image_among_8_bit_of_another_size(root):
    d = two_classes(root)
    Image.fromarray(np.full((20, 20), 0x8000, np.uint16)).save(d / "dog" / "deep.png")
    return inspect(f"folder:{d}", root)


@case("none of the images could be read (1 unreadable, first: {root}/p/bomb.png)")
def predict_decompression_bomb(root):
    m = model_file(root / "m.pt")
    (root / "p").mkdir()
    (root / "p" / "bomb.png").write_bytes(lying_png(60000, 60000))
    return ["predict", str(m), str(root / "p" / "bomb.png"), "--out", str(root / "o.csv")]


# -- npz ---------------------------------------------------------------------------------------
@case("d.npz[labels] hold label 255 but no image has label 2: labels must number the")
def npz_label_255(root):
    p = npz(root / "d.npz", images=images(), labels=np.array([0, 1, 255, 0], np.uint8))
    return inspect(f"npz:{p}", root)


@case("d.npz[labels] must be 4 integers, got int64 with shape (5,)")
def npz_labels_longer_than_images(root):
    p = npz(root / "d.npz", images=images(), labels=np.arange(5) % 2)
    return inspect(f"npz:{p}", root)


@case("{root}/d.npz has no 'images' array (found: labels)")
def npz_without_images(root):
    p = npz(root / "d.npz", labels=np.arange(4) % 2)
    return inspect(f"npz:{p}", root)


@case("{root}/m.npz member 'notes.txt' is not a .npy array; an .npz archive holds only")
def npz_member_not_npy(root):
    with zipfile.ZipFile(root / "m.npz", "w") as z:
        buf = io.BytesIO()
        np.save(buf, images())
        z.writestr("images.npy", buf.getvalue())
        z.writestr("notes.txt", "hello")
    return inspect(f"npz:{root / 'm.npz'}", root)


@case("d.npz[class_names] name 0 is not UTF-8 text (bad byte at offset 2)")
def npz_class_names_not_utf8(root):
    names = np.array([b"ca\xfft", b"dog"], dtype="S4")
    p = npz(root / "d.npz", images=images(), labels=np.arange(4) % 2, class_names=names)
    return inspect(f"npz:{p}", root)


@case("d.npz[labels] must be 4 integers, got float64 with shape (4,)")
def npz_float_labels(root):
    p = npz(root / "d.npz", images=images(), labels=np.array([0.5, 1, 0, 1]))
    return inspect(f"npz:{p}", root)


@case("cannot read {root}/d.npz as .npz: not a zip archive of .npy arrays")
def npz_not_a_zip(root):
    (root / "d.npz").write_bytes(b"hello, not a zip archive" * 10)
    return inspect(f"npz:{root / 'd.npz'}", root)


@case("cannot read {root}/d.npz as .npz: Object arrays cannot be loaded when allow_pickle=False")
def npz_object_array_pickle(root):
    p = npz(root / "d.npz", images=np.array([object(), 1], dtype=object))
    return inspect(f"npz:{p}", root)


# -- csv: and hf: --------------------------------------------------------------------------------
@case("{root}/l.csv, row 1: no 'label' column (also accepted: 'class'); the header holds 'path'")
def csv_missing_label_column(root):
    png(root / "a.png", grey(8))
    (root / "l.csv").write_text("path\na.png\n")
    return inspect(f"csv:{root / 'l.csv'}", root)


@case("{root}/l.csv, row 3: no such image file {root}/b.png")
def csv_missing_image(root):
    png(root / "a.png", grey(8))
    (root / "l.csv").write_text("path,label\na.png,cat\nb.png,dog\n")
    return inspect(f"csv:{root / 'l.csv'}", root)


@case("{root}/l.csv is empty; expected a header row such as 'path,label'")
def csv_empty_file(root):
    (root / "l.csv").write_text("")
    return inspect(f"csv:{root / 'l.csv'}", root)


@case("{root}/l.csv is not a file; csv:FILE wants a CSV file with path,label columns")
def csv_is_a_folder(root):
    (root / "l.csv").mkdir()
    return inspect(f"csv:{root / 'l.csv'}", root)


@case("{root}/l.csv, row 2: a field over 128 KB")
def csv_field_over_128_kb(root):
    (root / "l.csv").write_text("path,label\n" + "x" * 140_000 + ",cat\n")
    return inspect(f"csv:{root / 'l.csv'}", root)


@case("{root}/ds is neither a save_to_disk folder (no dataset_dict.json or state.json) nor")
def hf_folder_that_is_not_a_dataset(root):
    (root / "ds").mkdir()
    (root / "ds" / "readme.txt").write_text("not a dataset")
    return inspect(f"hf:{root / 'ds'}", root)


@case("{root}/f is not a folder; hf:FOLDER wants a save_to_disk folder")
def hf_path_that_is_a_file(root):
    return inspect(f"hf:{a_file(root)}", root)


# -- cifar python pickles ----------------------------------------------------------------------
class _Foreign:
    pass


@case("{root}/cifar-10-batches-py/data_batch_1 was refused: it is not a plain CIFAR pickle")
def cifar_python_pickle_with_a_foreign_global(root):
    d = root / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(pickle.dumps({b"data": _Foreign(), b"labels": [0]}))
    return inspect(f"cifar10:{root}", root)


@case("{root}/cifar-10-batches-py/data_batch_1 was refused: it is not a plain CIFAR pickle")
def cifar_python_pickle_of_os_system(root):
    d = root / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    return inspect(f"cifar10:{root}", root)
