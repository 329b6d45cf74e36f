"""Export a trained model for tools that do not use fewlabels: TorchScript, ONNX, safetensors.

Each export writes the model file and ``preprocess.json``, which says what the model takes
(float32 NCHW images in [0, 1] at the training size and channels; the normalisation is
inside the model) and what it gives (logits, one per class name). TorchScript and ONNX
graphs run with ``torch.jit.load`` or ``onnxruntime`` alone; the safetensors file holds the
weights (normalisation buffers included) and the network config, for
``fewlabels.models.Network.from_config`` or an equivalent architecture.

ONNX needs the ``onnx`` package and safetensors the ``safetensors`` package
(``pip install 'fewlabels[export]'``); they are imported only when used.
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.atomic import atomic_write_bytes, atomic_write_text, write_error
from fewlabels.core.errors import CheckpointError, ConfigError
from fewlabels.core.version import __version__
from fewlabels.evaluate.inference import load_model
from fewlabels.models import Network

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx", "safetensors": "model.safetensors"}
ONNX_OPSET = 17
TOLERANCE = 1e-4  # the largest logit difference an export may show against the network


@dataclass(frozen=True)
class Exported:
    """The files an export wrote."""

    model: Path
    preprocess: Path
    format: str


def _optional(module: str, fmt: str) -> Any:
    """Import an optional package (``module`` may be dotted), or a one-line ConfigError."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name in (top, module):
            raise ConfigError(
                f"{fmt} export needs the {top} package: pip install 'fewlabels[export]'"
            ) from None
        raise ConfigError(f"the {module} package cannot be imported: {e}") from None
    except ImportError as e:
        raise ConfigError(f"the {module} package cannot be imported: {e}") from None


def preprocess_info(network: Network, class_names: list[str], fmt: str) -> dict[str, Any]:
    """What the exported model takes and gives, as written to ``preprocess.json``."""
    cfg = network.config
    c, s = int(cfg["in_channels"]), int(cfg["image_size"])
    return {
        "format": fmt,
        "model_file": FORMATS[fmt],
        "input": {
            "name": "images",
            "shape": ["batch", c, s, s],
            "layout": "NCHW",
            "dtype": "float32",
            "range": [0.0, 1.0],
            "channels": "RGB" if c == 3 else "grey" if c == 1 else c,
            "from_uint8": "divide uint8 pixels (0-255) by 255",
            "resize": {"size": [s, s], "method": "bilinear"},
        },
        "normalization": {
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
            "formula": "(x - mean) / std per channel",
            "inside_model": True,
        },
        "output": {"name": "logits", "shape": ["batch", len(class_names)], "softmax": False},
        "class_names": list(class_names),
        "network_config": cfg,
        "fewlabels_version": __version__,
    }


def _check(fmt: str, got: torch.Tensor, want: torch.Tensor) -> None:
    diff = float((got - want).abs().max())
    if not diff <= TOLERANCE:  # also catches NaN
        raise CheckpointError(
            f"the {fmt} export differs from the network by {diff:.3g} (more than {TOLERANCE})"
        )


def _torchscript(net: Network, x: torch.Tensor, probe: torch.Tensor) -> bytes:
    with warnings.catch_warnings():
        # shape checks trace as constants (the input size is fixed), and torch 2.13 marks
        # TorchScript deprecated: neither is news to the caller
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(net, x, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        buf.seek(0)
        _check("torchscript", torch.jit.load(buf)(probe), net(probe))
    return buf.getvalue()


def _onnx(net: Network, x: torch.Tensor, probe: torch.Tensor) -> bytes:
    onnx = _optional("onnx", "onnx")
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript-based exporter's deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            buf,
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    try:
        onnxruntime = importlib.import_module("onnxruntime")
    except ImportError:  # the graph is checked; running it is left to the user's runtime
        return data
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"images": probe.numpy()})
    _check("onnx", torch.from_numpy(out), net(probe))
    return data


def _safetensors(net: Network, class_names: list[str]) -> bytes:
    st = _optional("safetensors.torch", "safetensors")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    meta = {
        "format": "fewlabels.Network",
        "network_config": json.dumps(net.config),
        "class_names": json.dumps(list(class_names)),
        "fewlabels_version": __version__,
    }
    return st.save(tensors, metadata=meta)


def export_model(run_or_model_path: str | Path, out_dir: str | Path, fmt: str = "onnx") -> Exported:
    """Export a run's ``model.pt`` (or the file itself) to ``out_dir`` in format ``fmt``.

    ``fmt`` is ``torchscript`` (``model.ts``), ``onnx`` (``model.onnx``) or ``safetensors``
    (``model.safetensors``); ``preprocess.json`` is written beside it. TorchScript and
    ONNX exports are checked against the network on a random batch before they are written.
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    loaded = load_model(run_or_model_path)
    net = loaded.network.to(memory_format=torch.contiguous_format).eval()
    c, s = loaded.channels, loaded.image_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, c, s, s, generator=gen)
    probe = torch.rand(3, c, s, s, generator=gen)  # another batch size than the traced one
    with torch.no_grad():
        if fmt == "torchscript":
            data = _torchscript(net, x, probe)
        elif fmt == "onnx":
            data = _onnx(net, x, probe)
        else:
            data = _safetensors(net, loaded.class_names)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(out, e) from None
    model_path, pre_path = out / FORMATS[fmt], out / "preprocess.json"
    atomic_write_bytes(model_path, data)
    info = preprocess_info(net, loaded.class_names, fmt)
    atomic_write_text(pre_path, json.dumps(info, indent=2) + "\n")
    return Exported(model_path, pre_path, fmt)
