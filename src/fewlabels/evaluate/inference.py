"""Using a trained model: load it safely, evaluate it on a data source, predict image files."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import CheckpointError, DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.core.runlock import check_out_file, check_out_folder, check_owner
from fewlabels.data.imagefile import EXTENSIONS, not_regular, read_image, to_channels, walk_images
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
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
    try:
        net = Network.from_config(cfg)
        net.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:150]
        raise CheckpointError(f"{path} does not match its architecture: {first}") from None
    if int(cfg.get("num_classes", 0)) == 0:
        raise CheckpointError(f"{path} holds an encoder without a classifier head")
    if names is None:
        names = [str(i) for i in range(int(cfg["num_classes"]))]
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    return LoadedModel(net, list(names), {k: v for k, v in obj.items() if k != "state_dict"})


def _precision(model: LoadedModel) -> str:
    """The fastest native precision of the model's device (as training used)."""
    return resolve_precision("auto", next(model.network.parameters()).device)


def check_compatible(model: LoadedModel, images: ImageSet, what: str = "data") -> None:
    """One-line error when images do not have the shape the model was trained on."""
    c, (h, w) = images.channels, images.image_size
    if c != model.channels or h != model.image_size or w != model.image_size:
        raise DataError(
            f"{what} images are {c}x{h}x{w} but the model expects "
            f"{model.channels}x{model.image_size}x{model.image_size}"
        )


def evaluate_model(model: LoadedModel, test: ImageSet, *, tta: bool = False) -> Metrics:
    """Accuracy, macro-F1, per-class scores and confusion on a labeled set."""
    check_compatible(model, test, "test")
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


def read_images(files: list[Path], channels: int, size: int) -> tuple[torch.Tensor, list[Path]]:
    """Decode files to uint8 NCHW at the model's channels and size; unreadable files listed.

    The decoder is training's (``data.imagefile.read_image``): 16-bit images scaled to
    8 bits, EXIF orientation applied, decompression bombs and broken files unreadable.
    """
    arrays, bad = [], []
    for f in files:
        res = read_image(f, size)
        if isinstance(res, str):
            bad.append(f)
            continue
        arrays.append(to_channels(res[0], channels))
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
