"""Exports (TorchScript, ONNX, safetensors) run without fewlabels and match the network."""

from __future__ import annotations

import importlib.abc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fewlabels.core.errors import CheckpointError, ConfigError
from fewlabels.data import load_dataset
from fewlabels.evaluate.export import FORMATS, export_model
from fewlabels.evaluate.inference import load_model
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig
from fewlabels.train.run import RunConfig, run_training
from fewlabels.train.run import export_model as save_model_pt

# the first lines of every consumer script: fewlabels cannot be imported there
NO_FEWLABELS = """
import sys
sys.modules["fewlabels"] = None
try:
    import fewlabels
except ImportError:
    pass
else:
    raise SystemExit("fewlabels was importable")
"""

CONSUMERS = {
    "torchscript": """
import torch
model = torch.jit.load(MODEL)
out = model(x)
""",
    "onnx": """
import onnxruntime
session = onnxruntime.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
out = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
""",
    # the network rebuilt in plain torch from the weights and config (a ConvNet backbone)
    "safetensors": """
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
with safe_open(MODEL, "pt") as f:
    cfg = json.loads(f.metadata()["network_config"])
w = load_file(MODEL)
assert cfg["backbone"] == "convnet" and cfg["in_channels"] == x.shape[1]
h = (x - w["mean"]) / w["std"]
side, i = cfg["image_size"], 0
while f"backbone.blocks.{i}.0.weight" in w:
    p = f"backbone.blocks.{i}."
    k = w[p + "0.weight"].shape[-1]
    stride = 2 if side >= 2 else 1
    h = F.conv2d(h, w[p + "0.weight"], None, stride, 1 if k == 3 else 0)
    h = F.batch_norm(h, w[p + "1.running_mean"], w[p + "1.running_var"],
                     w[p + "1.weight"], w[p + "1.bias"], training=False)
    h = F.relu(h)
    side = (side + 1) // 2 if stride == 2 else side
    i += 1
if h.shape[-1] == 1 and h.shape[-2] == 1:
    feats = h.flatten(1).repeat_interleave(4, dim=1)
else:
    feats = F.adaptive_avg_pool2d(h, 2).flatten(1)
out = F.linear(feats, w["head.weight"], w["head.bias"])
""",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on digits for a few steps (1x8x8 images, 10 classes)."""
    out = tmp_path_factory.mktemp("run")
    cfg = RunConfig(
        data="digits",
        labels_per_class=5,
        train=TrainConfig(budget="6steps", batch_size=32, precision="fp32", evals=1),
        out=str(out),
    )
    run_training(cfg, progress=False, log=lambda *a, **k: None)
    assert (out / "model.pt").is_file()
    return out


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """Real digits images as the network takes them: float NCHW in [0, 1]."""
    return load_dataset("digits").train.images[:7].float() / 255


def _eager(model_path: Path, x: torch.Tensor) -> torch.Tensor:
    net = load_model(model_path).network.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        return net(x)


def _consume(fmt: str, model: Path, x: torch.Tensor, tmp: Path) -> torch.Tensor:
    """Run the export in a fresh python where ``import fewlabels`` fails."""
    np.save(tmp / "x.npy", x.numpy())
    script = NO_FEWLABELS + textwrap.dedent(f"""
        import json
        import numpy as np
        import torch
        MODEL = {str(model)!r}
        x = torch.from_numpy(np.load({str(tmp / "x.npy")!r}))
        with torch.no_grad():
    """)
    body = textwrap.indent(CONSUMERS[fmt].strip(), "    ")
    script += body + f"\nnp.save({str(tmp / 'out.npy')!r}, out.numpy())\n"
    res = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return torch.from_numpy(np.load(tmp / "out.npy"))


NEEDS = {"torchscript": [], "onnx": ["onnx", "onnxruntime"], "safetensors": ["safetensors"]}


def _needs(*fmts: str) -> None:
    """Skip when an optional export package (fewlabels[export]) is not installed."""
    for fmt in fmts:
        for module in NEEDS[fmt]:
            pytest.importorskip(module)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_runs_without_fewlabels_and_matches(fmt, run_dir, batch, tmp_path):
    _needs(fmt)
    exported = export_model(run_dir, tmp_path / "export", fmt)
    assert exported.model == tmp_path / "export" / FORMATS[fmt]
    assert exported.model.is_file() and exported.preprocess.is_file()
    want = _eager(run_dir / "model.pt", batch)
    got = _consume(fmt, exported.model, batch, tmp_path)
    assert got.shape == want.shape == (7, 10)
    assert float((got - want).abs().max()) < 1e-4
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_preprocess_json_describes_the_input(run_dir, tmp_path):
    exported = export_model(run_dir / "model.pt", tmp_path, "torchscript")
    info = json.loads(exported.preprocess.read_text())
    loaded = load_model(run_dir)
    cfg = loaded.network.config
    assert info["model_file"] == "model.ts"
    assert info["input"]["shape"] == ["batch", 1, 8, 8]
    assert info["input"]["dtype"] == "float32" and info["input"]["range"] == [0.0, 1.0]
    assert info["normalization"]["mean"] == cfg["mean"]
    assert info["normalization"]["std"] == cfg["std"]
    assert info["normalization"]["inside_model"] is True
    assert info["class_names"] == loaded.class_names == [str(i) for i in range(10)]
    assert info["network_config"] == cfg


def test_colour_network_exports_and_safetensors_metadata(tmp_path):
    """A 3x32x32 network saved as training saves it; every export reproduces it."""
    _needs(*FORMATS)
    torch.manual_seed(0)
    net = Network("convnet", 3, 32, 4, mean=[0.4, 0.5, 0.6], std=[0.2, 0.3, 0.25])
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    save_model_pt(tmp_path / "model.pt", net, ["a", "b", "c", "d"], {})
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want = _eager(tmp_path / "model.pt", x)
    for fmt in FORMATS:
        exported = export_model(tmp_path / "model.pt", tmp_path / fmt, fmt)
        got = _consume(fmt, exported.model, x, tmp_path)
        assert float((got - want).abs().max()) < 1e-4, fmt
    from safetensors import safe_open

    with safe_open(str(tmp_path / "safetensors" / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["network_config"]) == net.config
    assert json.loads(meta["class_names"]) == ["a", "b", "c", "d"]


def test_bad_requests_are_one_line_errors(run_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'jpeg' is not one of torchscript, onnx, safetensors"):
        export_model(run_dir, tmp_path, "jpeg")
    with pytest.raises(CheckpointError, match="does not exist"):
        export_model(tmp_path / "nothing.pt", tmp_path, "onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(
        ConfigError, match=r"needs the onnx package: pip install 'fewlabels\[export"
    ):
        export_model(run_dir, tmp_path, "onnx")
    monkeypatch.delitem(sys.modules, "onnx")
    monkeypatch.setattr(sys, "meta_path", [_BrokenOnnx(), *sys.meta_path])
    with pytest.raises(ConfigError, match=r"the onnx package cannot be imported: libprotobuf"):
        export_model(run_dir, tmp_path, "onnx")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.delitem(sys.modules, "safetensors.torch", raising=False)
    with pytest.raises(ConfigError, match="safetensors export needs the safetensors package"):
        export_model(run_dir, tmp_path, "safetensors")
    assert not (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "preprocess.json").exists()


class _BrokenOnnx(importlib.abc.MetaPathFinder):
    """``onnx`` installed but broken (a missing shared library)."""

    def find_spec(self, name, path=None, target=None):
        if name == "onnx":
            raise ImportError("libprotobuf.so.32: cannot open shared object file")
        return None
