"""Checkpoint files: written atomically, read without unpickling code (weights_only=True)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fewlabels.errors import CheckpointError

FORMAT_VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Save a dict of tensors and plain Python values atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **obj}, buf)
    atomic_write_bytes(path, buf.getvalue())


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
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise CheckpointError(
            f"{path} was refused: it is not a plain-weights checkpoint ({first[:120]})"
        ) from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        KeyError,  # the weights-only unpickler reading a file that is no pickle at all
        IndexError,
        TypeError,
    ) as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {type(e).__name__})"
        ) from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{path} is not a fewlabels checkpoint")
    if obj["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {obj['format']}, newer than this fewlabels "
            f"({FORMAT_VERSION}); upgrade fewlabels"
        )
    return obj
