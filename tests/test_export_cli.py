"""``fewlabels export RUN --format ...`` as a user runs it: a subprocess per format."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fewlabels.evaluate.inference import load_model

REPO = Path(__file__).resolve().parents[1]
FEWLABELS = Path(sys.executable).with_name("fewlabels")
NEEDS = {"torchscript": [], "onnx": ["onnx", "onnxruntime"], "safetensors": ["safetensors"]}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(FEWLABELS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _one_line_error(res: subprocess.CompletedProcess, needle: str) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder from ``fewlabels train`` on digits (a few steps)."""
    work = tmp_path_factory.mktemp("export-cli")
    res = _cli(
        "train", "--labels-per-class", "5", "--budget", "6steps", "--batch-size", "32",
        "--precision", "fp32", "--evals", "1", "--out", "run", cwd=work,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return work / "run"


def _eager(run: Path, x: torch.Tensor) -> torch.Tensor:
    net = load_model(run).network.to(memory_format=torch.contiguous_format).eval()
    with torch.no_grad():
        return net(x)


def _outputs(fmt: str, model: Path, x: torch.Tensor) -> torch.Tensor | None:
    """The exported model's logits (None for safetensors: weights only)."""
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(model))(x)
    if fmt == "onnx":
        import onnxruntime

        sess = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return torch.from_numpy(sess.run(["logits"], {"images": x.numpy()})[0])
    from safetensors.torch import load_file

    weights = load_file(str(model))
    assert "head.weight" in weights and "mean" in weights
    return None


@pytest.mark.parametrize("fmt", list(NEEDS))
def test_export_each_format_from_the_command_line(fmt, run):
    missing = [m for m in NEEDS[fmt] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{fmt} export needs {', '.join(missing)} (pip install 'fewlabels[export]')")
    res = _cli("export", "run", "--format", fmt, cwd=run.parent)
    assert res.returncode == 0, res.stderr
    out = run / f"export-{fmt}"
    model = next(p for p in out.iterdir() if p.name.startswith("model."))
    assert str(model.relative_to(run.parent)) in res.stdout
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["format"] == fmt and pre["model_file"] == model.name
    assert pre["input"]["shape"][1:] == [1, 8, 8] and len(pre["class_names"]) == 10
    x = torch.from_numpy(np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32))
    got = _outputs(fmt, model, x)
    if got is not None:
        assert (got - _eager(run, x)).abs().max().item() < 1e-4
    # the run's own files are untouched, and a re-export of the same format replaces its own
    assert sorted(p.name for p in out.iterdir()) == sorted([model.name, "preprocess.json"])
    again = _cli("export", str(run / "model.pt"), "-f", fmt, cwd=run.parent)
    assert again.returncode == 0, again.stderr


def test_export_mistakes_are_one_line_errors(run, tmp_path):
    _one_line_error(_cli("export", "run", "--format", "pb", cwd=run.parent), "'pb'")
    _one_line_error(_cli("export", "nothing-here", cwd=tmp_path), "nothing-here")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "preprocess.json").write_text('{"format": "onnx"}')
    res = _cli("export", str(run), "--format", "torchscript", "--out", "other", cwd=tmp_path)
    _one_line_error(res, "already holds the onnx export")
    assert not (tmp_path / "other" / "model.ts").exists()
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    _one_line_error(_cli("export", "bad.pt", cwd=tmp_path), "bad.pt")
