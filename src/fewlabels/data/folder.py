"""Folders of image files: one sub-folder per class, optional splits, Tiny-ImageNet layout.

Layouts, tried in this order:

- Tiny-ImageNet (``tinyimagenet:`` forces it): ``train/<wnid>/images/*.JPEG`` and
  ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box...``) naming ``val/images/*``;
  ``test/`` (unlabeled in the original release) becomes the unlabeled set.
- Splits: ``train/<class>/...`` and ``test/<class>/...`` (or ``val/<class>/...``).
- Flat: ``<class>/...``.

Class folders are the first level; images are found at any depth below them. A folder
named ``unlabeled`` (or the ``unlabeled=PATH`` option) holds unlabeled images at any depth.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fewlabels.data.cache import Decoded, Part, Scan, file_stat
from fewlabels.data.imageset import UNLABELED
from fewlabels.errors import DataError

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SPLIT_NAMES = frozenset({"train", "test", "val", "unlabeled"})


@dataclass
class _Item:
    path: Path
    id: str
    label: int
    split: str  # "train", "test" or "unlabeled"


@dataclass
class _Plan:
    layout: str
    class_names: list[str]
    items: list[_Item] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0  # loose images beside the class folders


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in EXTENSIONS


def walk_images(top: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files at any depth below ``top``, sorted; symlinks are followed, loops are not.

    Returns the files and ``(folder, reason)`` for folders that could not be read.
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    try:
        st = top.stat()
        seen.add((st.st_dev, st.st_ino))
    except OSError as e:
        return [], [(str(top), f"unreadable folder ({e.strerror})")]
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append((str(d), f"unreadable folder ({e.strerror})"))
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():  # follows symlinks
                    st = e.stat()
                    key = (st.st_dev, st.st_ino)
                    if key not in seen:  # a folder reached twice (a symlink loop) is skipped
                        seen.add(key)
                        stack.append(Path(e.path))
                elif e.is_file() and is_image_file(e.name):
                    found.append(Path(e.path))
            except OSError:  # a dangling symlink or a file that vanished
                continue
    found.sort(key=lambda p: p.as_posix())
    return found, problems


def _class_dirs(d: Path, exclude: frozenset[str] = frozenset({"unlabeled"})) -> list[str]:
    try:
        with os.scandir(d) as it:
            names = [e.name for e in it if not e.name.startswith(".") and e.is_dir()]
    except OSError as e:
        raise DataError(f"cannot read folder {d}: {e.strerror}") from None
    return sorted(n for n in names if n not in exclude)


def _loose_images(d: Path) -> int:
    with os.scandir(d) as it:
        return sum(1 for e in it if e.is_file() and is_image_file(e.name))


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def _add_tree(plan: _Plan, top: Path, root: Path, label: int, split: str) -> None:
    files, problems = walk_images(top)
    plan.skipped.extend(problems)
    plan.items.extend(_Item(f, _rel(f, root), label, split) for f in files)


def _add_classes(plan: _Plan, base: Path, root: Path, split: str) -> None:
    for c in _class_dirs(base):
        if c not in plan.class_names:
            raise DataError(
                f"class folder {_rel(base / c, root)} has no counterpart among the training "
                f"classes ({', '.join(plan.class_names[:5])}...)"
            )
        _add_tree(plan, base / c, root, plan.class_names.index(c), split)


def _is_tiny(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "val" / "val_annotations.txt").is_file()


def _tiny_val(plan: _Plan, root: Path) -> None:
    ann = root / "val" / "val_annotations.txt"
    index = {c: k for k, c in enumerate(plan.class_names)}
    items = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            raise DataError(f"{ann}:{n}: expected 'file<TAB>wnid<TAB>box', got {line[:60]!r}")
        fname, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise DataError(f"{ann}:{n}: class {wnid!r} is not among the train/ class folders")
        path = root / "val" / "images" / fname
        if not path.is_file():
            plan.skipped.append((str(path), "listed in val_annotations.txt but missing"))
            continue
        items.append(_Item(path, _rel(path, root), index[wnid], "test"))
    items.sort(key=lambda it: it.id)
    plan.items.extend(items)


def _unlabeled_dir(root: Path, options: dict[str, Any], *candidates: Path) -> Path | None:
    if options.get("unlabeled"):
        return Path(options["unlabeled"])
    return next((c for c in candidates if c.is_dir()), None)


def make_plan(root: Path, options: dict[str, Any], force_tiny: bool = False) -> _Plan:
    """Decide the layout of ``root`` and list every image with its split and label."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    if force_tiny or _is_tiny(root):
        if not (root / "train").is_dir():
            raise DataError(f"{root} is not a Tiny-ImageNet folder: it has no train/ folder")
        plan = _Plan("tinyimagenet", _class_dirs(root / "train"))
        for k, c in enumerate(plan.class_names):
            _add_tree(plan, root / "train" / c, root, k, "train")
        if (root / "val" / "val_annotations.txt").is_file():
            _tiny_val(plan, root)
        unl = _unlabeled_dir(root, options, root / "unlabeled", root / "test")
    elif (root / "train").is_dir() and (
        (root / "test").is_dir()
        or (root / "val").is_dir()
        or set(_class_dirs(root, frozenset())) <= _SPLIT_NAMES
    ):
        plan = _Plan("splits", _class_dirs(root / "train"))
        for k, c in enumerate(plan.class_names):
            _add_tree(plan, root / "train" / c, root, k, "train")
        test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        if test_dir is not None:
            _add_classes(plan, test_dir, root, "test")
        unl = _unlabeled_dir(root, options, root / "unlabeled", root / "train" / "unlabeled")
    else:
        plan = _Plan("classes", _class_dirs(root))
        for k, c in enumerate(plan.class_names):
            _add_tree(plan, root / c, root, k, "train")
        plan.ignored = _loose_images(root)
        if not plan.class_names and plan.ignored:
            raise DataError(
                f"found {plan.ignored} images directly in {root} but no class folders; "
                f"put each class's images in a sub-folder named after the class"
            )
        if plan.ignored:
            warnings.warn(
                f"ignored {plan.ignored} images directly in {root}: only images inside a "
                f"class folder (or unlabeled/) are used",
                stacklevel=4,
            )
        unl = _unlabeled_dir(root, options, root / "unlabeled")
    if unl is not None:
        _add_tree(plan, unl, root if unl.is_relative_to(root) else unl, UNLABELED, "unlabeled")
    if not plan.items:
        raise DataError(f"no images found in {root}")
    return plan


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """List the images (with sizes and mtimes, for the cache fingerprint)."""
    plan = make_plan(path, options, force_tiny=kind == "tinyimagenet")
    files = [(f"layout:{plan.layout}", 0, 0)]
    for it in plan.items:
        try:
            files.append(file_stat(it.path, f"{it.split}:{it.id}"))
        except OSError:
            files.append((f"{it.split}:{it.id}", -1, -1))
    if plan.layout == "tinyimagenet" and (path / "val" / "val_annotations.txt").is_file():
        files.append(file_stat(path / "val" / "val_annotations.txt", "val/val_annotations.txt"))
    return Scan(path, files, plan)


def _decode_one(path: Path, size: int | None) -> tuple[np.ndarray, bool] | str:
    """(H, W) or (H, W, 3) uint8 and whether it is in colour, or why it could not be read."""
    try:
        with Image.open(path) as im:
            if size:
                im.draft(None, (size, size))  # JPEG: decode at a reduced scale when possible
            if im.mode in _GRAY_MODES:
                out, color = im.convert("L"), False
            else:
                out, color = im.convert("RGB"), True
                if im.mode in ("P", "PA"):  # a palette image may be grey after all
                    a = np.asarray(out)
                    color = not (
                        np.array_equal(a[..., 0], a[..., 1])
                        and np.array_equal(a[..., 0], a[..., 2])
                    )
                    if not color:
                        out = out.convert("L")
            if size and out.size != (size, size):
                out = out.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(out, dtype=np.uint8), color
    except Exception as e:  # Pillow raises many types for bad files; all mean "unreadable"
        return f"{type(e).__name__}: {e}"


def decode(kind: str, sc: Scan, options: dict[str, Any], strict: bool) -> Decoded:
    """Decode every image with a thread pool; unreadable files are listed in ``skipped``."""
    plan: _Plan = sc.plan
    size = options.get("size")
    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as ex:
        results: list[Any] = list(ex.map(lambda it: _decode_one(it.path, size), plan.items))
    skipped = list(plan.skipped)
    good: list[int] = []
    ref: tuple[int, int] | None = None
    ref_id = ""
    for i, (it, res) in enumerate(zip(plan.items, results, strict=True)):
        if isinstance(res, str):
            skipped.append((str(it.path), res))
            continue
        hw = res[0].shape[:2]
        if ref is None:
            ref, ref_id = hw, it.id
        elif hw != ref:
            raise DataError(
                f"image {it.path} is {hw[1]}x{hw[0]} but {ref_id} is {ref[1]}x{ref[0]}; "
                f"add ,size=N to the spec to resize every image to NxN"
            )
        good.append(i)
    if ref is None:
        first = f" ({len(skipped)} unreadable, first: {skipped[0][0]})" if skipped else ""
        raise DataError(f"no readable images found in {sc.root}{first}")
    channels = 3 if any(results[i][1] for i in good) else 1

    def part(split: str) -> Part | None:
        rows = [i for i in good if plan.items[i].split == split]
        if not rows and split != "train":
            return None
        x = np.empty((len(rows), channels, *ref), np.uint8)
        for j, i in enumerate(rows):
            arr = results[i][0]
            x[j] = arr if arr.ndim == 2 else arr.transpose(2, 0, 1)
            results[i] = None  # free as we go
        y = np.array([plan.items[i].label for i in rows], np.int64)
        return Part(x, y, ids=[plan.items[i].id for i in rows])

    name = "tinyimagenet" if plan.layout == "tinyimagenet" else f"folder:{sc.root.name}"
    train = part("train")
    assert train is not None
    return Decoded(name, list(plan.class_names), train, part("test"), part("unlabeled"), skipped)
