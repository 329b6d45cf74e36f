"""The command line: end to end on digits, and one-line errors (exit code 2) for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from cli_helpers import one_line_error as _one_line_error
from PIL import Image

from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    r = invoke(
        "train", "--data", "digits", "--labels-per-class", "10", "--budget", "60steps",
        "--batch-size", "64", "--out", str(out), "--no-progress", "--evals", "2",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output and "test macro-F1" in r.output
    return out


def test_train_writes_a_complete_run_folder(trained):
    for name in (
        "config.json", "split.json", "curve.jsonl", "checkpoint.pt", "model.pt",
        "metrics.json", "confusion.png",
    ):  # fmt: skip
        assert (trained / name).exists(), name
    import json

    m = json.loads((trained / "metrics.json").read_text())
    assert m["labeled"] == 100
    assert 0.5 < m["accuracy"] <= 1.0  # 100 labels of digits: far above chance
    assert len(m["per_class"]) == 10


def test_evaluate_reproduces_the_training_report(trained, tmp_path):
    import json

    r = invoke("evaluate", str(trained / "model.pt"), "--data", "digits", "--out", str(tmp_path))
    assert r.exit_code == 0, r.output
    acc = json.loads((tmp_path / "metrics.json").read_text())["accuracy"]
    assert acc == pytest.approx(json.loads((trained / "metrics.json").read_text())["accuracy"])
    assert f"test accuracy  {acc:.4f}" in r.output
    assert (tmp_path / "confusion.png").exists()


def test_predict_folder_to_csv(trained, tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        img = (d.images[i] * 255 / 16).round().astype(np.uint8)
        Image.fromarray(img).resize((16, 16)).convert("RGB").save(folder / f"d{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "pred.csv"
    r = invoke("predict", str(trained), str(folder), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable" in r.output
    rows = out.read_text().strip().splitlines()
    assert rows[0].startswith("path,prediction,confidence,p_0")
    assert len(rows) == 7
    conf = [float(x.split(",")[2]) for x in rows[1:]]
    assert all(0.0 < c <= 1.0 for c in conf)


def test_data_inspect(tmp_path):
    sheet = tmp_path / "sheet.png"
    r = invoke("data", "inspect", "digits", "--sheet", str(sheet))
    assert r.exit_code == 0, r.output
    assert sheet.exists() and sheet.stat().st_size > 1000
    assert "8x8" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--data", "imagenet:/x"], "unknown"),
        (["train", "--data", "cifar10:/no/such/dir"], "no such"),
        (["train", "--backbone", "vgg99", "--budget", "1steps"], "unknown backbone"),
        (["train", "--labels-per-class", "1000", "--budget", "1steps"], "labels per class"),
        (["train", "--labels-per-class", "-3", "--budget", "1steps"], ""),
        (["train", "--budget", "forever"], "budget"),
        (["train", "--precision", "fp8", "--budget", "1steps"], "precision"),
        (["train", "--method", "magic", "--budget", "1steps"], "unknown method"),
        (["evaluate", "/no/such/model.pt"], "does not exist"),
        (["data", "inspect", "folder:/no/such"], "no such"),
    ],
)
def test_bad_input_is_one_line(args, needle, tmp_path):
    r = invoke(*args, "--out", str(tmp_path / "o")) if args[0] == "train" else invoke(*args)
    _one_line_error(r, needle)


def test_checkpoint_problems(trained, tmp_path):
    # truncated
    data = (trained / "model.pt").read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    _one_line_error(invoke("evaluate", str(bad)), "truncated or corrupt")
    # another architecture under the same config
    obj = load_checkpoint(trained / "model.pt")
    obj["network_config"] = {**obj["network_config"], "backbone": "resnet18"}
    other = tmp_path / "other.pt"
    save_checkpoint(obj, other)
    _one_line_error(invoke("evaluate", str(other)), "does not match its architecture")
    # a pickle that would run code is refused, not executed
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "x": Path("/tmp")}, evil)
    _one_line_error(invoke("evaluate", str(evil)), "refused")
    # model on images of another shape: converted with one warning, as predict and quality
    # do (issue 32 item 14; docs/reliability.md); other classes are still refused
    npz = tmp_path / "rgb.npz"
    np.savez(npz, images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.arange(4) % 2)
    with pytest.warns(UserWarning, match="the test images are 3x32x32, but the network expects"):
        r = invoke("evaluate", str(trained), "--data", f"npz:{npz}", "--split", "train")
    _one_line_error(r, "the data's 2 classes differ from the model's 10 classes")


def test_console_script_exit_code_and_stderr(tmp_path):
    exe = Path(sys.executable).with_name("fewlabels")
    proc = subprocess.run(
        [str(exe), "train", "--data", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_text_reflows_docstring_paragraphs():
    import typer

    from fewlabels.cli import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        for sub in getattr(cmd, "commands", {name: cmd}).values():
            for para in (sub.help or "").split("\n\n"):
                assert "\n" not in para and "  " not in para, (name, para)
    # the pretrain paragraph whose source spans two lines reads as one
    r = invoke("pretrain", "--help")
    assert r.exit_code == 0
    words = " ".join(r.output.replace("│", " ").split())
    assert "the online linear probe and the kNN monitor on the validation curve" in words
