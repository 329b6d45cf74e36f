"""Hugging Face ``datasets``: ``hf:FOLDER[,split=S][,image=COL][,label=COL][,size=N]``.

``FOLDER`` is what ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` wrote, or a
dataset's folder in the local Hugging Face cache (``~/.cache/huggingface/datasets/NAME``:
its newest ``*.arrow`` files are read). Nothing is ever downloaded. Needs the optional
``datasets`` package (``pip install 'fewlabels[hf]'``), imported only when used.
``cache_folder(NAME)`` finds a dataset's folder in that cache by its Hub name.

Without ``split``, the ``train`` split is the training set, ``test`` the test set and
``unlabeled`` (or ``unsupervised``) the unlabeled set; a single split is the training set.
The image column (``image=``) holds PIL images or arrays; the label column (``label=``)
holds class indices (names from its ``ClassLabel`` feature), or class names as strings.
A missing label (None, -1 or "") marks an unlabeled image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.core.progress import Progress
from fewlabels.data.cache import Decoded, Part, Scan, file_stat
from fewlabels.data.folder import MIN_SIDE
from fewlabels.data.imageset import UNLABELED
from fewlabels.data.npz import to_nchw

IMAGE_COLUMNS = ("image", "img", "images", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label", "class")
_UNLABELED_SPLITS = ("unlabeled", "unsupervised")
_BATCH = 256
_ARROW = re.compile(r"^.+?-(?P<split>[\w.]+?)(?:-\d{5}-of-\d{5})?\.arrow$")


def column_name(value: str, where: str) -> str:
    """A column or split name (letters, digits, ``_ - .``)."""
    if not re.fullmatch(r"[\w.\-]{1,128}", value):
        raise ConfigError(f"{where}={value!r}: expected a column or split name")
    return value


def cache_folder(name: str) -> Path | None:
    """The folder of dataset ``name`` (``NAME`` or ``OWNER/NAME``) in the local Hugging Face
    cache, or None when it is not there. Reads ``$HF_DATASETS_CACHE`` (else ``$HF_HOME`` or
    ``$XDG_CACHE_HOME``) as ``datasets`` does; nothing is downloaded.
    """
    if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name):
        return None
    root = os.environ.get("HF_DATASETS_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        root = os.path.join(
            os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"), "datasets"
        )
    parts = name.split("/")
    last = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", parts[-1])  # CamelCase -> snake_case
    parts[-1] = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", last).lower()
    folder = Path(root).expanduser() / "___".join(parts)
    return folder if folder.is_dir() else None


def _datasets() -> Any:
    try:
        import datasets
    except ModuleNotFoundError as e:
        if e.name == "datasets":
            raise DataError(
                "hf: data needs the datasets package: pip install 'fewlabels[hf]'"
            ) from None
        raise DataError(f"the datasets package cannot be imported: {e}") from None
    except ImportError as e:
        raise DataError(f"the datasets package cannot be imported: {e}") from None
    return datasets


@dataclass(frozen=True)
class _Plan:
    layout: str  # "saved" (save_to_disk) or "cache" (arrow files of the HF cache)
    files: dict[str, list[Path]]  # cache layout: split -> arrow files


def _cache_files(path: Path) -> dict[str, list[Path]]:
    """split -> arrow files of the newest cache folder below ``path`` holding arrow files."""
    folders = {p.parent for p in path.rglob("*.arrow") if p.is_file()}
    folders = {f for f in folders if (f / "dataset_info.json").is_file()}
    if not folders:
        return {}
    newest = max(folders, key=lambda f: ((f / "dataset_info.json").stat().st_mtime_ns, str(f)))
    out: dict[str, list[Path]] = {}
    for f in sorted(newest.glob("*.arrow")):
        m = _ARROW.match(f.name)
        if m and not f.name.startswith("cache-"):
            out.setdefault(m.group("split"), []).append(f)
    return out


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """Recognise the folder and list its files (with sizes and mtimes, for the fingerprint)."""
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; hf:FOLDER wants a save_to_disk folder")
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        plan = _Plan("saved", {})
        listed = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = _cache_files(path)
        if not files:
            raise DataError(
                f"{path} is neither a save_to_disk folder (no dataset_dict.json or state.json) "
                "nor a Hugging Face cache folder (no *.arrow files beside a dataset_info.json)"
            )
        plan = _Plan("cache", files)
        listed = sorted(f for fs in files.values() for f in fs)
        listed.append(listed[0].parent / "dataset_info.json")
    return Scan(path, [file_stat(p, p.relative_to(path).as_posix()) for p in listed], plan)


def _open_splits(ds: Any, sc: Scan) -> dict[str, Any]:
    plan: _Plan = sc.plan
    try:
        if plan.layout == "saved":
            obj = ds.load_from_disk(str(sc.root))
            return dict(obj) if isinstance(obj, ds.DatasetDict) else {"train": obj}
        return {
            split: ds.concatenate_datasets([ds.Dataset.from_file(str(f)) for f in files])
            for split, files in plan.files.items()
        }
    except DataError:
        raise
    except Exception as e:  # datasets/pyarrow raise many types for a damaged folder
        detail = " ".join(str(e).split())[:120] or type(e).__name__
        raise DataError(f"cannot read {sc.root} as a Hugging Face dataset: {detail}") from None


def _choose(splits: dict[str, Any], split: str | None, root: Path) -> dict[str, Any]:
    """train / test / unlabeled datasets (test and unlabeled may be None)."""
    names = ", ".join(sorted(splits))
    if split is not None:
        if split not in splits:
            raise DataError(f"{root} has no split {split!r} (splits: {names})")
        return {"train": splits[split], "test": None, "unlabeled": None}
    unl = next((splits[s] for s in _UNLABELED_SPLITS if s in splits), None)
    if "train" in splits:
        train = splits["train"]
    elif len(splits) == 1:
        train = next(iter(splits.values()))
    else:
        raise DataError(f"{root} has no 'train' split (splits: {names}); choose one with split=")
    return {"train": train, "test": splits.get("test"), "unlabeled": unl}


def _column(d: Any, wanted: str | None, guesses: tuple[str, ...], what: str, root: Path) -> str:
    cols = list(d.column_names)
    if wanted is not None:
        if wanted not in cols:
            raise DataError(f"{root} has no column {wanted!r} (columns: {', '.join(cols)})")
        return wanted
    if what == "image":
        found = [c for c in cols if type(d.features[c]).__name__ == "Image"]
    else:
        found = [c for c in cols if type(d.features[c]).__name__ == "ClassLabel"]
    found += [c for c in guesses if c in cols]
    if not found:
        raise DataError(
            f"{root} has no {what} column (columns: {', '.join(cols)}); name it with {what}="
        )
    return found[0]


def _classes(parts: dict[str, Any], col: str) -> tuple[list[str], dict[str, int] | None]:
    """Class names, and for string labels the name -> index map (None for integer labels)."""
    train = parts["train"]
    feat = train.features[col]
    if type(feat).__name__ == "ClassLabel":
        return [str(n) for n in feat.names], None
    values = [
        v
        for p in ("train", "test")
        if parts[p] is not None and col in parts[p].column_names
        for v in parts[p][col]
    ]
    if all(v is None or isinstance(v, str) for v in values):
        names = sorted({v for v in values if v})
        return names, {c: k for k, c in enumerate(names)}
    top = max((int(v) for v in values if v is not None), default=-1)
    return [str(i) for i in range(top + 1)], None


def _labels(d: Any, col: str, index: dict[str, int] | None, n: int, what: str) -> np.ndarray:
    out = np.empty(len(d), np.int64)
    for k, v in enumerate(d[col]):
        if v is None or v == "":
            out[k] = UNLABELED
        elif index is not None:
            out[k] = index[v]
        elif isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise DataError(f"{what}, row {k}: label {str(v)[:40]!r} is not a class index")
        elif not -1 <= int(v) < n:
            raise DataError(f"{what}, row {k}: label {int(v)} is out of range for {n} classes")
        else:
            out[k] = int(v)
    return out


def _pixels(value: Any, size: int | None, what: str) -> np.ndarray:
    """(C, H, W) uint8 from a PIL image or an array (HW, HWC or CHW)."""
    if isinstance(value, Image.Image):
        grey = value.mode in ("1", "L", "LA", "I", "I;16", "F")
        im = value.convert("L" if grey else "RGB")
        if size and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if value is None:
        raise DataError(f"{what} has no image")
    return to_nchw(np.asarray(value)[None], what)[0]


def _rows(d: Any, col: str) -> Iterator[Any]:
    for batch in d.select_columns([col]).iter(batch_size=_BATCH):
        yield from batch[col]


def _images(d: Any, col: str, size: int | None, what: str, bar: Progress) -> np.ndarray:
    out: np.ndarray | None = None
    for k, value in enumerate(_rows(d, col)):
        img = _pixels(value, size, f"{what}, row {k}")
        bar.advance()
        if out is None:
            if min(img.shape[1:]) < MIN_SIDE:
                raise DataError(
                    f"{what}: images are {img.shape[2]}x{img.shape[1]} pixels; add ,size=N"
                )
            out = np.empty((len(d), *img.shape), np.uint8)
        if img.shape[1:] != out.shape[2:]:
            raise DataError(
                f"{what}, row {k}: image is {img.shape[2]}x{img.shape[1]} but row 0 is "
                f"{out.shape[3]}x{out.shape[2]}; add ,size=N to resize every image to NxN"
            )
        if img.shape[0] > out.shape[1]:  # the first colour image after grey ones
            out = np.repeat(out, img.shape[0], axis=1)
        out[k] = img
    if out is None:
        raise DataError(f"{what} holds no images")
    return out


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Read the chosen splits into uint8 NCHW images and int64 labels (``strict`` unused),
    with one progress bar (``core.progress``) over the images of every split."""
    ds = _datasets()
    parts = _choose(_open_splits(ds, sc), options.get("split"), sc.root)
    train = parts["train"]
    icol = _column(train, options.get("image"), IMAGE_COLUMNS, "image", sc.root)
    lcol = _column(train, options.get("label"), LABEL_COLUMNS, "label", sc.root)
    names, index = _classes(parts, lcol)
    size = options.get("size")
    out: dict[str, Part | None] = {}
    total = sum(len(d) for d in parts.values() if d is not None)
    with Progress(f"decoding {sc.root.name}", total, unit="images") as bar:
        for name, d in parts.items():
            if d is None:
                out[name] = None
                continue
            what = f"{sc.root} [{name}]"
            try:
                x = _images(d, icol, size, what, bar)
                y = (
                    np.full(len(d), UNLABELED, np.int64)
                    if name == "unlabeled" or lcol not in d.column_names
                    else _labels(d, lcol, index, len(names), what)
                )
            except DataError:
                raise
            except Exception as e:  # a damaged image or arrow file, as datasets/Pillow say
                detail = " ".join(str(e).split())[:120] or type(e).__name__
                raise DataError(f"cannot read {what}: {detail}") from None
            out[name] = Part(x, y, id_ranges=[(name, len(d))])
    channels = max(p.images.shape[1] for p in out.values() if p is not None)
    for p in out.values():
        if p is not None and p.images.shape[1] < channels:  # grey images beside colour ones
            p.images = np.repeat(p.images, channels, axis=1)
    shapes = {p.images.shape[1:] for p in out.values() if p is not None}
    if len(shapes) > 1:
        raise DataError(f"{sc.root}: the splits hold images of different shapes {sorted(shapes)}")
    train_part = out["train"]
    assert train_part is not None
    return Decoded(f"hf:{sc.root.name}", names, train_part, out["test"], out["unlabeled"])
