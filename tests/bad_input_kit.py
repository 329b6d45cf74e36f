"""The bad-input corpus's registry and the builders its cases share.

A case is a function that builds its inputs in a fresh folder and returns the CLI's
arguments; ``@case(needle)`` registers it with the text its one error line must hold.
``test_bad_inputs.py`` runs every registered case (its own and ``bad_inputs_more.py``'s).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from fewlabels.models import Network
from fewlabels.train.run import export_model

runner = CliRunner()
Build = Callable[[Path], list[str]]
CASES: dict[str, tuple[Build, str]] = {}


def case(needle: str) -> Callable[[Build], Build]:
    """Register a case: ``needle`` (with ``{root}`` for the case's folder) must be in the error."""

    def deco(fn: Build) -> Build:
        assert fn.__name__ not in CASES
        CASES[fn.__name__] = (fn, needle)
        return fn

    return deco


def inspect(spec: str, root: Path, *more: str) -> list[str]:
    return ["data", "inspect", spec, "--sheet", str(root / "sheet.png"), *more]


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def grey(side: int = 12, value: int = 90) -> np.ndarray:
    return np.full((side, side), value, np.uint8)


def two_classes(root: Path) -> Path:
    d = root / "imgs"
    for c in ("cat", "dog"):
        for k in range(2):
            png(d / c / f"{k}.png", grey(12, 40 * k + 10))
    return d


STUDY = """\
name: tiny
data: digits
budget: 2steps
train:
  batch_size: 8
  precision: fp32
grid:
  labels_per_class: [2]
  unlabeled: [20]
  seeds: [0]
methods:
  - supervised
upper_bound: false
"""


def study(root: Path, text: str | bytes, old: str | None = None) -> list[str]:
    if old is not None:
        assert isinstance(text, str) and old in STUDY
        text = STUDY.replace(old, text, 1)
    path = root / "study.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return ["study", str(path), "--out", str(root / "out")]


def model_file(path: Path, backbone: str = "convnet", **changes) -> Path:
    torch.manual_seed(0)
    net = Network(backbone, 1, 8, 10)
    export_model(path, net, [str(i) for i in range(10)], {"method": "supervised"})
    if changes:
        obj = torch.load(path, weights_only=True)
        obj.update(changes)
        torch.save(obj, path)
    return path


def train(root: Path, *args: str) -> list[str]:
    return ["train", *args, "--out", str(root / "out"), "--no-progress"]


def nan_model(path: Path) -> Path:
    m = model_file(path)
    obj = torch.load(m, weights_only=True)
    key = next(k for k in obj["state_dict"] if k.endswith("weight"))
    obj["state_dict"][key] = torch.full_like(obj["state_dict"][key], float("nan"))
    torch.save(obj, m)
    return m


def a_file(root: Path) -> Path:
    (root / "f").write_text("not a folder")
    return root / "f"


def a_training_run(root: Path) -> Path:
    run = root / "run"
    run.mkdir()
    model_file(run / "model.pt")
    (run / "config.json").write_text('{"method": "supervised", "backbone": "convnet"}')
    (run / "metrics.json").write_text('{"accuracy": 0.5}')
    return run


def lying_png(width: int, height: int) -> bytes:
    """A PNG signature and an IHDR chunk claiming ``width`` x ``height``, then garbage."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    out = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
    out += struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    return out + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
