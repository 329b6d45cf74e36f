"""Checkpoint files: written atomically, read without unpickling code (weights_only=True)."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.atomic import atomic_write_bytes
from fewlabels.core.errors import CheckpointError
from fewlabels.core.files import not_regular

__all__ = ["FORMAT_VERSION", "atomic_write_bytes", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Save a dict of tensors and plain Python values atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **obj}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _foreign_global(path: Path, limit: int = 16 << 20) -> str | None:
    """The first non-torch global a pickle file would import, found by reading its opcodes
    (``pickletools`` parses, it never runs anything); None if there is none or it is no pickle.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            found = None
            if op.name in ("GLOBAL", "INST"):
                found = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found = ".".join(strings[-2:])
            elif isinstance(arg, str):
                strings.append(arg)
            if found and not found.startswith(("torch.", "collections.OrderedDict")):
                return found
    except Exception:  # not a pickle, or a damaged one: no verdict
        return None
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any problem is a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} holds no model.pt or checkpoint.pt")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (why := not_regular(path)) is not None:  # a FIFO would block torch.load forever
        raise CheckpointError(f"checkpoint {path} is {why}, not a file")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on pickle protocols: not ours
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        found = re.search(r"GLOBAL ([\w.]+)", text)
        name = found.group(1) if found else _foreign_global(path)
        if name:  # the pickle calls or builds something: refuse without running it
            raise CheckpointError(
                f"{path} was refused: it is not a plain-weights checkpoint (it would load "
                f"{name[:80]}, which could run code)"
            ) from None
        detail = text.split("WeightsUnpickler error:")[-1].split(" Check the documentation")[0]
        detail = detail.strip()[:80] or "unpickling failed"
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {detail})"
        ) from None
    except MemoryError:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (too large or corrupt)"
        ) from None
    except Exception as e:  # torch raises many types for a damaged file; all mean unreadable
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {type(e).__name__})"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("format"), int):
        raise CheckpointError(f"{path} is not a fewlabels checkpoint")
    if obj["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {obj['format']}, newer than this fewlabels "
            f"({FORMAT_VERSION}); upgrade fewlabels"
        )
    return obj
