"""Using a trained model: load it safely, evaluate it on a data source, predict image files."""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import CheckpointError, ConfigError, DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.core.runlock import check_out_file, check_out_folder, check_owner
from fewlabels.data.imagefile import EXTENSIONS, not_regular, read_image, to_channels, walk_images
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.network_state import (
    check_class_names,
    check_finite,
    check_network_config,
    num_classes_of,
)
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.models import Network

IMAGE_SUFFIXES = set(EXTENSIONS)


@dataclass
class LoadedModel:
    """A network ready for inference plus what it predicts."""

    network: Network
    class_names: list[str]
    meta: dict[str, Any]

    @property
    def channels(self) -> int:
        return int(self.network.config["in_channels"])

    @property
    def image_size(self) -> int:
        return int(self.network.config["image_size"])


def _refuse_special(path: Path) -> None:
    """A checkpoint path (or a run folder's model.pt / checkpoint.pt) that is a FIFO or a
    device is refused before anything opens it: reading a FIFO waits for a writer forever."""
    candidates = [path / "model.pt", path / "checkpoint.pt"] if path.is_dir() else [path]
    for p in candidates:
        if p.exists():
            why = not_regular(p)
            if why is not None:
                raise CheckpointError(f"{p} is {why}, not a checkpoint file")
            return


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load ``model.pt`` (or a run directory holding one) without unpickling code."""
    _refuse_special(Path(path))
    obj = load_checkpoint(path, map_location="cpu")
    if obj.get("kind") == "training":
        state = {
            k.removeprefix("network."): v
            for k, v in obj["method"].items()
            if k.startswith("network.")
        }
        cfg, names = obj.get("network_config"), obj.get("class_names")
    else:
        state, cfg, names = obj.get("state_dict"), obj.get("network_config"), obj.get("class_names")
    if not cfg or state is None:
        raise CheckpointError(f"{path} holds no classifier (no network config or weights)")
    cfg = check_network_config(path, cfg)
    k = num_classes_of(path, cfg)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its weights are a {type(state).__name__}, not a mapping")
    try:
        net = Network.from_config(cfg)
        net.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:150] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} does not match its architecture: {first}") from None
    if k == 0:
        raise CheckpointError(f"{path} holds an encoder without a classifier head")
    check_finite(path, state)
    names = check_class_names(path, names, k)
    if names is None:
        names = [str(i) for i in range(k)]
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    return LoadedModel(net, list(names), {k: v for k, v in obj.items() if k != "state_dict"})


def _precision(model: LoadedModel) -> str:
    """The fastest native precision of the model's device (as training used)."""
    return resolve_precision("auto", next(model.network.parameters()).device)


def fit_images(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """uint8 images resized (bilinear, antialiased) and converted to ``channels`` channels
    (grey repeated into three; colour to grey by ITU-R 601-2 luma, as ``to_channels``)."""
    x = images
    if x.shape[1] != channels:
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif channels == 1 and x.shape[1] == 3:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise ConfigError(f"cannot turn {x.shape[1]}-channel images into {channels}")
    if tuple(x.shape[-2:]) != (size, size):
        out = []
        for s in range(0, len(x), 1024):
            y = F.interpolate(
                x[s : s + 1024].float(), size=(size, size), mode="bilinear", antialias=True
            )
            out.append(y.round().clamp(0, 255).to(torch.uint8))
        x = torch.cat(out) if out else x.new_empty(0, x.shape[1], size, size)
    return x.contiguous()


def warn_converted(found: str, want: str, to_grey: bool) -> None:
    """The one-line warning of every command that fits images of another shape to a
    network (evaluate, predict, quality): what was found, what was expected, what was done."""
    done = "resized (bilinear)" + (", colour turned to grey" if to_grey else "")
    warnings.warn(f"{found}, but the network expects {want}: converted them ({done})", stacklevel=3)


def fit_to_model(model: LoadedModel, images: ImageSet, what: str = "data") -> ImageSet:
    """``images`` at the model's channels and size: unchanged when they already are, else
    converted with ``fit_images`` and a one-line warning (see docs/reliability.md)."""
    c, (h, w) = images.channels, images.image_size
    mc, s = model.channels, model.image_size
    if (c, h, w) == (mc, s, s):
        return images
    warn_converted(f"the {what} images are {c}x{h}x{w}", f"{mc}x{s}x{s}", c > mc)
    x = fit_images(images.images, s, mc)
    return ImageSet(x, images.labels, list(images.class_names), images.ids)


def evaluate_model(model: LoadedModel, test: ImageSet, *, tta: bool = False) -> Metrics:
    """Accuracy, macro-F1, per-class scores and confusion on a labeled set (converted to
    the model's shape with a warning when it differs)."""
    test = fit_to_model(model, test, "test")
    if test.class_names != model.class_names:
        raise DataError(
            f"the data's {test.num_classes} classes differ from the model's "
            f"{len(model.class_names)} classes"
        )
    keep = test.is_labeled
    if not bool(keep.any()):
        raise DataError("the data holds no labeled images to evaluate on")
    test = test.subset(torch.nonzero(keep).flatten())
    logits = predict_logits(model.network, test.images, tta=tta, precision=_precision(model))
    return classification_metrics(test.labels.numpy(), logits.argmax(1).numpy(), test.class_names)


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Image files named directly or found (at any depth, sorted) in folders.

    Folders are walked as data folders are (``data.imagefile.walk_images``): symlinks are
    followed, loops and links back into the folder are not, and FIFOs are never opened.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found, _ = walk_images(p)
            if not found:
                raise DataError(f"no images found in {p}")
            files.extend(found)
        elif (why := not_regular(p)) is not None:
            raise DataError(f"{p} is {why}, not an image file")
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"no such file or directory: {p}")
    if not files:
        raise DataError("no images given")
    return files


def _native_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding it."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # unreadable files are reported by the decoder
        return None


def read_images(files: list[Path], channels: int, size: int) -> tuple[torch.Tensor, list[Path]]:
    """Decode files to uint8 NCHW at the model's channels and size; unreadable files listed.

    The decoder is training's (``data.imagefile.read_image``): 16-bit images scaled to
    8 bits, EXIF orientation applied, decompression bombs and broken files unreadable.
    Files of another size, or in colour for a grey model, are converted as training's
    folder reader with ``size=N`` converts them, with one warning naming the first.
    """
    arrays, bad, other = [], [], []
    for f in files:
        res = read_image(f, size)
        if isinstance(res, str):
            bad.append(f)
            continue
        native, color = _native_size(f), res[1]
        if (native is not None and native != (size, size)) or (color and channels == 1):
            w, h = native or (size, size)
            other.append((f, f"{3 if color else 1}x{h}x{w}", color and channels == 1))
        arrays.append(to_channels(res[0], channels))
    if other:
        f, shape, _ = other[0]
        found = f"{len(other)} of {len(files)} images differ in shape (the first: {f}, {shape})"
        want = f"{channels}x{size}x{size}"
        warn_converted(found, want, any(g for _, _, g in other))
    if not arrays:
        return torch.empty(0, channels, size, size, dtype=torch.uint8), bad
    return torch.from_numpy(np.stack(arrays)), bad


def predict_files(
    model: LoadedModel, inputs: list[str | Path], out_csv: str | Path | None = None
) -> tuple[list[dict[str, Any]], list[Path]]:
    """Predict every image; rows hold path, predicted class, confidence and class probabilities."""
    if out_csv is not None:
        check_out_file(out_csv)
    files = find_images(inputs)
    images, bad = read_images(files, model.channels, model.image_size)
    unreadable = set(bad)
    good = [f for f in files if f not in unreadable]
    rows: list[dict[str, Any]] = []
    if len(good):
        probs = predict_logits(model.network, images, precision=_precision(model)).softmax(1)
        conf, pred = probs.max(1)
        for f, c, k, pr in zip(good, conf.tolist(), pred.tolist(), probs.tolist(), strict=True):
            row: dict[str, Any] = {
                "path": str(f),
                "prediction": model.class_names[k],
                "confidence": round(c, 5),
            }
            if len(model.class_names) <= 20:
                row.update(
                    {f"p_{n}": round(v, 5) for n, v in zip(model.class_names, pr, strict=True)}
                )
            rows.append(row)
    if out_csv is not None and rows:
        out_csv = Path(out_csv)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out_csv, buf.getvalue())
    return rows, bad


def check_evaluation_out(out: str | Path) -> Path:
    """The folder ``evaluate`` writes ``metrics.json`` and ``confusion.png`` into, refused
    (one line) when it is empty, a file, read-only, or holds another command's run (a
    training run's own ``metrics.json`` would be replaced). Writes nothing."""
    path = check_out_folder(out)
    check_owner(path, "evaluate")
    return path


def write_evaluation(out: str | Path, metrics: Metrics, class_names: list[str]) -> list[Path]:
    """Write ``metrics.json`` and ``confusion.png`` of an evaluation into ``out`` (checked
    first); returns the two paths."""
    path = check_evaluation_out(out)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "metrics.json", json.dumps(metrics.to_dict(), indent=2) + "\n")
    plot_confusion(metrics.confusion, class_names, path / "confusion.png")
    return [path / "metrics.json", path / "confusion.png"]
