"""The bad-input corpus, part three: run folders, settings, checkpoints and commands.

Registered into ``bad_input_kit.CASES`` (run by ``test_bad_inputs.py``).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import torch
from bad_input_kit import (
    STUDY,
    a_file,
    case,
    grey,
    model_file,
    nan_model,
    png,
    runner,
    study,
    train,
    two_classes,
)

from fewlabels.cli import app

# -- runs: resume, locks, other commands' folders, outputs --------------------------------------
_HELD_LOCKS: list[int] = []


def locked(out: Path) -> Path:
    """``out`` with its lock held (as by another fewlabels process) until the tests end."""
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"command": "train", "pid": 4242}))
    fd = os.open(out / ".lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD_LOCKS.append(fd)
    return out


@case("{root}/out is in use by another fewlabels process (pid 4242); wait for it to")
def train_locked_run_folder(root):
    locked(root / "out")
    return train(root, "--budget", "1steps")


@case("{root}/p holds a probe run; train would overwrite its files: give train another out folder")
def pretrain_out_is_a_probe_run(root):
    (root / "p").mkdir()
    (root / "p" / "metrics.json").write_text('{"protocol": "linear", "accuracy": 0.5}')
    return ["pretrain", "--budget", "1steps", "--out", str(root / "p"), "--no-progress"]


@case("{root}/s holds a study run; probe would overwrite its files: give probe another out folder")
def probe_out_is_a_study(root):
    (root / "s").mkdir()
    (root / "s" / "study.yaml").write_text(STUDY)
    m = str(model_file(root / "m.pt"))
    return ["probe", m, "--labels-per-class", "2", "--out", str(root / "s"), "--no-progress"]


@case("out is empty; give a folder for the results")
def pretrain_out_is_empty(root):
    return ["pretrain", "--budget", "1steps", "--out", "", "--no-progress"]


@case("out is empty; give a folder for the results")
def study_out_is_empty(root):
    args = study(root, "name: tiny", "name: tiny")
    return [*args[:-1], ""]


@case("sheet {root}/sheet is not an image file name; end it with .png, .jpg, .jpeg, .pdf, .svg")
def inspect_sheet_without_an_extension(root):
    return ["data", "inspect", "digits", "--sheet", str(root / "sheet")]


@case("--out {root}/f is a file, not a folder")
def generate_out_is_a_file(root):
    return ["generate", "--budget", "1steps", "--out", str(a_file(root)), "--no-progress"]


@case("{root}/out: the data changed since the checkpoint")
def train_resumed_after_the_data_changed(root):
    d = two_classes(root)
    args = train(root, "--data", f"folder:{d}", "--budget", "1steps", "--evals", "0")
    args += ["--labels-per-class", "1", "--val", "none", "--batch-size", "2"]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    png(d / "cat" / "new.png", grey(12, 200))
    return args


# -- settings: --set, booleans, devices -----------------------------------------------------------
@case("--set train.lrr: unknown setting 'train.lrr'; train takes budget, batch_size, lr,")
def train_set_unknown_key(root):
    return train(root, "--set", "train.lrr=0.1")


@case("invalid setting train.lr: Input should be a valid number, unable to parse string as")
def train_set_bad_value(root):
    return train(root, "--set", "train.lr=fast")


@case("--set takes KEY=VALUE (e.g. train.lr=0.05), got 'train.lr'")
def train_set_without_equals(root):
    return train(root, "--set", "train.lr")


@case("--set pretrain.nope: unknown setting 'pretrain'; a run takes device, backbone,")
def pretrain_set_unknown_key(root):
    return ["pretrain", "--set", "pretrain.nope=1", "--out", str(root / "o"), "--no-progress"]


@case("invalid setting train.batch_size: Input should be a valid integer, unable to parse")
def pretrain_set_bad_value(root):
    return ["pretrain", "--set", "train.batch_size=big", "--out", str(root / "o"), "--no-progress"]


@case("invalid setting train.lr: Value error, lr must be a number, got True")
def train_config_lr_true(root):
    (root / "c.yaml").write_text("train:\n  lr: true\n")
    return train(root, "--config", str(root / "c.yaml"))


@case("device 'cuda:-1' is not a device; use auto, cpu, cuda or cuda:N")
def train_device_cuda_minus_one(root):
    return train(root, "--budget", "1steps", "--device", "cuda:-1")


@case("device 'tpu' is not a device; use auto, cpu, cuda or cuda:N")
def pretrain_device_tpu(root):
    args = ["pretrain", "--budget", "1steps", "--device", "tpu", "--out", str(root / "o")]
    return [*args, "--no-progress"]


@case("device 'cuda:x' is not a device; use auto, cpu, cuda or cuda:N")
def embed_device_tpu(root):
    return ["probe", str(model_file(root / "m.pt")), "--device", "cuda:x", "--out", str(root)]


@case("unknown method 'fixmatchh'; choose from autoencoder, barlow_twins, byol,")
def train_unknown_method(root):
    return train(root, "--method", "fixmatchh", "--budget", "1steps")


@case("unknown backbone 'resnet9000'; choose from convnet, fastnet, fastnet-s, wrn-28-2,")
def train_unknown_backbone(root):
    return train(root, "--backbone", "resnet9000", "--budget", "1steps")


@case("config file {root} is a folder, not a YAML file")
def train_config_dir_misleading(root):
    return train(root, "--config", str(root))


# -- checkpoints at more commands -----------------------------------------------------------
@case("{root}/m.pt: weight 'backbone.blocks.0.0.weight' holds NaN values (saved from a")
def checkpoint_nan_weights_at_predict(root):
    png(root / "p" / "x.png", grey(8))
    return ["predict", str(nan_model(root / "m.pt")), str(root / "p")]


@case("{root}/m.pt: weight 'backbone.blocks.0.0.weight' holds NaN values (saved from a")
def checkpoint_nan_weights_at_embed(root):
    return ["embed", str(nan_model(root / "m.pt")), "--data", "digits", "--out", str(root / "o")]


@case("{root}/m.pt names 3 classes but its classifier head has 10 outputs")
def checkpoint_class_names_do_not_match_the_head_at_probe(root):
    m = model_file(root / "m.pt", class_names=["a", "b", "c"])
    return ["probe", str(m), "--labels-per-class", "2", "--out", str(root / "o")]


@case("{root}/m.pt: its network_config is a str, not a mapping of architecture settings;")
def checkpoint_network_config_is_a_string_at_predict(root):
    png(root / "p" / "x.png", grey(8))
    m = model_file(root / "m.pt", network_config="convnet")
    return ["predict", str(m), str(root / "p")]


@case("{root}/m.pt: its network_config is a str, not a mapping of architecture settings;")
def checkpoint_network_config_is_a_string_at_probe(root):
    m = model_file(root / "m.pt", network_config="convnet")
    return ["probe", str(m), "--labels-per-class", "2", "--out", str(root / "o")]


@case("{root}/m.pt: its network_config is a str, not a mapping of architecture settings;")
def checkpoint_network_config_is_a_string_at_embed(root):
    m = model_file(root / "m.pt", network_config="convnet")
    return ["embed", str(m), "--data", "digits", "--out", str(root / "o")]


@case("{root}/m.pt holds no classifier (no network config or weights)")
def checkpoint_missing_state_dict(root):
    m = model_file(root / "m.pt")
    obj = torch.load(m, weights_only=True)
    del obj["state_dict"]
    torch.save(obj, m)
    return ["evaluate", str(m)]


def add_labels(root: Path, data: Path) -> list[str]:
    labels = str(root / "labels.csv")
    return [
        "data",
        "add-labels",
        str(root / "new.csv"),
        "--data",
        f"folder:{data}",
        "--labels",
        labels,
    ]


# -- export, init, select, add-labels ---------------------------------------------------------
@case("export format 'tflite' is not one of torchscript, onnx, safetensors")
def export_bad_format(root):
    return ["export", str(model_file(root / "m.pt")), "--format", "tflite"]


@case("{root}/d holds no model.pt or checkpoint.pt")
def export_folder_that_is_not_a_run(root):
    (root / "d").mkdir()
    return ["export", str(root / "d")]


@case("mine.yaml already exists; choose another name or remove it")
def init_refuses_to_overwrite(root):
    (root / "mine.yaml").write_text("name: mine\n")
    return ["init", "mine"]


@case("unknown example 'nosuch'; choose from cifar10-synthetic, cifar10, digits,")
def init_unknown_example(root):
    return ["init", "x", "--example", "nosuch"]


@case("{root}/new.csv line 2: unknown id 'emu/9.png': not a training image of folder:imgs")
def add_labels_unknown_id(root):
    d = two_classes(root)
    (root / "new.csv").write_text("id,label\nemu/9.png,cat\n")
    return add_labels(root, d)


@case("{root}/new.csv line 3: unknown class 'caf\u00e8'; the classes are caf\u00e9, dog")
def add_labels_class_that_differs_only_in_its_accent(root):
    """An NFD spelling of a class is that class; another accent is named as given."""
    d = root / "imgs"
    for c in ("caf\u00e9", "dog"):
        png(d / c / "0.png", grey())
    (root / "new.csv").write_text("id,label\ndog/0.png,cafe\u0301\ncaf\u00e9/0.png,cafe\u0300\n")
    return add_labels(root, d)


@case("{root}/new.csv line 2: unknown class 'café'; the classes are cat, dog")
def add_labels_unknown_nfd_class(root):
    d = two_classes(root)
    (root / "new.csv").write_text("id,label\ncat/0.png,cafe\u0301\n")
    return add_labels(root, d)


@case("{root}/new.csv has no 'id' column (header: name, label); expected id,label")
def add_labels_no_id_column(root):
    d = two_classes(root)
    (root / "new.csv").write_text("name,label\ncat/0.png,cat\n")
    return add_labels(root, d)


@case("budget must be a positive whole number of images, got 0")
def select_budget_zero(root):
    return ["select", "--budget", "0", "--no-source-labels", "--out", str(root / "x.csv")]


@case("unknown selection strategy 'psychic'; choose from random, class_balanced,")
def select_unknown_strategy(root):
    return ["select", "--budget", "5", "--strategy", "psychic", "--out", str(root / "x.csv")]
