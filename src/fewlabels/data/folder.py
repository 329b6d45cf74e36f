"""Folders of image files: one sub-folder per class, optional splits, Tiny-ImageNet layout.

Layouts, tried in this order:

- Tiny-ImageNet (``tinyimagenet:`` forces it): ``train/<wnid>/images/*.JPEG`` and
  ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box...``) naming ``val/images/*``;
  ``test/`` (unlabeled in the original release) becomes the unlabeled set.
- Splits: ``train/<class>/...`` and ``test/<class>/...`` (or ``val/<class>/...``).
- Flat: ``<class>/...``.

Class folders are the first level; images are found at any depth below them, following
links except loops and links back into the data folder (``imagefile.walk_images``), and are
decoded by ``imagefile.read_image``, as ``predict`` decodes them. A folder named
``unlabeled`` (or the ``unlabeled=PATH`` option) holds unlabeled images at any depth. A
class whose training images are all unreadable is refused, like an empty one.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.core.errors import DataError
from fewlabels.core.progress import Progress
from fewlabels.data.cache import Decoded, Part, RowWriter, Scan, file_stat
from fewlabels.data.imagefile import is_image_file, read_image, walk_images
from fewlabels.data.imageset import UNLABELED

_SPLIT_NAMES = frozenset({"train", "test", "val", "unlabeled"})
_PARTS = ("train", "test", "unlabeled")
MIN_SIDE = 4  # smaller images (a 1x1 thumbnail, ...) are refused unless resized with size=N


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
    links: list[str] = field(default_factory=list)  # folder links that lead back into root
    source: str = ""  # what the decode's progress bar names (default: the folder's name)


def _class_dirs(d: Path, exclude: frozenset[str] = frozenset({"unlabeled"})) -> list[str]:
    def is_dir(e: os.DirEntry) -> bool:
        try:
            return e.is_dir()  # follows symlinks
        except OSError:  # a symlink loop or a vanished entry is no class folder
            return False

    try:
        with os.scandir(d) as it:
            names = [e.name for e in it if not e.name.startswith(".") and is_dir(e)]
    except OSError as e:
        raise DataError(f"cannot read folder {d}: {e.strerror}") from None
    return sorted(n for n in names if n not in exclude)


def _loose_images(d: Path) -> int:
    def is_file(e: os.DirEntry) -> bool:
        try:
            return e.is_file()
        except OSError:  # a symlink loop
            return False

    with os.scandir(d) as it:
        return sum(1 for e in it if is_image_file(e.name) and is_file(e))


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def _add_tree(
    plan: _Plan, top: Path, root: Path, label: int, split: str, data_root: Path | None = None
) -> None:
    """Add the images below ``top``; ids are relative to ``root``, and folder links that
    lead back into ``data_root`` (default ``root``) are not followed."""
    data_root = data_root or root
    try:
        top_r, data_r = top.resolve(), data_root.resolve()
    except (OSError, RuntimeError):
        top_r = data_r = None
    if (
        top_r is not None
        and data_r is not None
        and top.is_symlink()
        and data_r.is_relative_to(top_r)
    ):
        plan.links.append(str(top))  # a class folder that is a link to the data or above it
        return
    files, problems = walk_images(top, data_root, plan.links)
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


def parse_val_annotations(
    data: bytes, source: str | Path, index: dict[str, int]
) -> list[tuple[str, int]]:
    """(file name, label) per line of Tiny-ImageNet's ``val_annotations.txt``.

    Lines are ``file<TAB>wnid[<TAB>box...]``; ``index`` maps wnids to labels. File names
    must be plain names (no folders). Anything else is a one-line ``DataError``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{source} is not UTF-8 text (bad byte at offset {e.start})") from None
    out: list[tuple[str, int]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            raise DataError(f"{source}:{n}: expected 'file<TAB>wnid<TAB>box', got {line[:60]!r}")
        fname, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise DataError(
                f"{source}:{n}: class {wnid[:60]!r} is not among the train/ class folders"
            )
        if not fname or fname in (".", "..") or any(c in fname for c in "/\\\0"):
            raise DataError(f"{source}:{n}: {fname[:60]!r} is not a plain file name")
        out.append((fname, index[wnid]))
    return out


def _tiny_val(plan: _Plan, root: Path) -> None:
    ann = root / "val" / "val_annotations.txt"
    index = {c: k for k, c in enumerate(plan.class_names)}
    items = []
    for fname, label in parse_val_annotations(ann.read_bytes(), ann, index):
        path = root / "val" / "images" / fname
        try:
            present = path.is_file()
        except OSError:  # e.g. a name too long for the file system
            present = False
        if not present:
            plan.skipped.append((str(path), "listed in val_annotations.txt but missing"))
            continue
        items.append(_Item(path, _rel(path, root), label, "test"))
    items.sort(key=lambda it: it.id)
    plan.items.extend(items)


def _unlabeled_dir(root: Path, options: dict[str, Any], *candidates: Path) -> Path | None:
    if options.get("unlabeled"):
        return Path(options["unlabeled"])
    return next((c for c in candidates if c.is_dir()), None)


def _is_split_dir(d: Path) -> bool:
    """``d`` (``train/``) holds class folders, so it is a split, not a class named "train"
    whose images lie directly in it (a flat folder with classes ``train`` and ``test``)."""
    if not d.is_dir():
        return False
    return bool(_class_dirs(d)) or not _loose_images(d)


def _unreadable(plan: _Plan, folder: Path) -> str | None:
    """Why ``folder`` could not be read during the walk (e.g. permission denied), or None."""
    for path, reason in plan.skipped:
        if path == str(folder) and reason.startswith("unreadable folder"):
            return reason.removeprefix("unreadable folder").strip(" ()")
    return None


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
    elif _is_split_dir(root / "train") and (
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
        before = len(plan.items)
        ids_root = root if unl.is_relative_to(root) else unl
        _add_tree(plan, unl, ids_root, UNLABELED, "unlabeled", root)
        if len(plan.items) == before and (options.get("unlabeled") or unl.name == "unlabeled"):
            why = _unreadable(plan, unl)
            if why:
                raise DataError(f"cannot read the unlabeled folder {unl}: {why}")
            raise DataError(f"the unlabeled folder {unl} holds no images")
    if plan.links:
        more = f" (and {len(plan.links) - 1} more)" if len(plan.links) > 1 else ""
        warnings.warn(
            f"did not follow the folder link {plan.links[0]}{more}: it leads back into "
            f"{root} or above it, so its images would count twice or as another class",
            stacklevel=4,
        )
    if not plan.items:
        why = next((f"{p}: {r}" for p, r in plan.skipped if r.startswith("unreadable")), None)
        raise DataError(f"no images found in {root}" + (f" (cannot read {why})" if why else ""))
    counts = [0] * len(plan.class_names)
    for it in plan.items:
        if it.split == "train":
            counts[it.label] += 1
    empty = [c for c, n in zip(plan.class_names, counts, strict=True) if n == 0]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        folder = _class_folder(plan, root, empty[0])
        why = _unreadable(plan, folder)
        if why:
            raise DataError(f"cannot read class folder {folder}{more}: {why}")
        raise DataError(
            f"class folder {empty[0]!r}{more} in {root} holds no images; add images or "
            "remove the folder"
        )
    return plan


def _class_folder(plan: _Plan, root: Path, name: str) -> Path:
    """The training folder of class ``name`` in ``plan``'s layout."""
    return root / name if plan.layout == "classes" else root / "train" / name


def scan(kind: str, path: Path, options: dict[str, Any]) -> Scan:
    """List the images (with sizes and mtimes, for the cache fingerprint)."""
    plan = make_plan(path, options, force_tiny=kind == "tinyimagenet")
    files = [(f"layout:{plan.layout}", 0, 0, 0)]
    for it in plan.items:
        try:
            files.append(file_stat(it.path, f"{it.split}:{it.id}"))
        except OSError:
            files.append((f"{it.split}:{it.id}", -1, -1, -1))
    if plan.layout == "tinyimagenet" and (path / "val" / "val_annotations.txt").is_file():
        files.append(file_stat(path / "val" / "val_annotations.txt", "val/val_annotations.txt"))
    return Scan(path, files, plan)


_AHEAD = 64  # images decoded ahead of the writer: bounds the memory the pass holds


class _Rows:
    """One part's images, streamed to a cache file (``folder`` given) or kept in memory."""

    def __init__(self, path: Path | None, row_shape: tuple[int, ...], capacity: int) -> None:
        self.writer = RowWriter(path, row_shape) if path is not None else None
        self.array = np.empty((capacity, *row_shape), np.uint8) if path is None else None
        self.n = 0
        self.labels: list[int] = []
        self.ids: list[str] = []

    def append(self, img: np.ndarray, label: int, id_: str) -> None:
        if self.writer is not None:
            if img.shape != self.writer.row_shape:  # a grey image among colour ones
                img = np.broadcast_to(img, self.writer.row_shape)
            self.writer.append(img[None])
        else:
            assert self.array is not None
            self.array[self.n] = img
        self.n += 1
        self.labels.append(label)
        self.ids.append(id_)

    def widen(self) -> None:
        if self.writer is not None:
            self.writer.widen(3)
        else:
            assert self.array is not None
            self.array = np.repeat(self.array, 3, axis=1)

    def part(self) -> Part:
        y = np.array(self.labels, np.int64)
        if self.writer is not None:
            self.writer.close()
            x = np.load(self.writer.path, mmap_mode="r")
        else:
            assert self.array is not None
            x = self.array[: self.n]
        return Part(x, y, ids=self.ids)


def _refuse_unreadable_classes(
    plan: _Plan, train: _Rows | None, skipped: list[tuple[str, str]], root: Path
) -> None:
    """A class whose training images were all unreadable is refused, as an empty one is."""
    counts = np.bincount(
        np.asarray(train.labels if train is not None else [], np.int64),
        minlength=len(plan.class_names),
    )
    empty = [c for c, n in zip(plan.class_names, counts.tolist(), strict=False) if n == 0]
    if not empty:
        return
    name = empty[0]
    mine = [p for p, _ in skipped if any(part == name for part in Path(p).parts)]
    first = f"; first: {mine[0]}" if mine else ""
    more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
    raise DataError(
        f"class folder {name!r}{more} in {root} holds no readable images "
        f"({len(mine)} unreadable{first}); fix or remove them, or remove the folder"
    )


def decode(
    kind: str, sc: Scan, options: dict[str, Any], strict: bool, folder: Path | None = None
) -> Decoded:
    """Decode every image in one streaming pass; unreadable files are listed in ``skipped``.

    A thread pool decodes at most ``_AHEAD`` images ahead of the writer, and each image goes
    straight to ``folder/{part}_images.npy`` (the cache entry being built), so memory stays
    flat whatever the number of images. With no ``folder`` the arrays are built in memory.
    Images are stored with one channel until the first colour image, which widens the
    rows written so far to three.
    """
    plan: _Plan = sc.plan
    size = options.get("size")
    workers = min(8, (os.cpu_count() or 1) + 2)
    skipped = list(plan.skipped)
    capacity = {s: sum(1 for it in plan.items if it.split == s) for s in _PARTS}
    rows: dict[str, _Rows] = {}
    ref: tuple[int, int] | None = None
    ref_id = ""
    channels = 0
    bar = Progress(f"decoding {plan.source or sc.root.name}", len(plan.items), unit="images")
    try:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            items = iter(plan.items)
            pending: deque[tuple[_Item, Future]] = deque()
            for it in islice(items, _AHEAD):
                pending.append((it, ex.submit(read_image, it.path, size)))
            while pending:
                it, fut = pending.popleft()
                nxt = next(items, None)
                if nxt is not None:
                    pending.append((nxt, ex.submit(read_image, nxt.path, size)))
                res = fut.result()
                bar.advance()
                if isinstance(res, str):
                    skipped.append((str(it.path), res))
                    continue
                arr, color = res
                hw = arr.shape[:2]
                if ref is None:
                    if min(hw) < MIN_SIDE:
                        raise DataError(
                            f"images are {hw[1]}x{hw[0]} pixels ({it.path}); fewlabels needs at "
                            f"least {MIN_SIDE}x{MIN_SIDE}: add ,size=N to the spec to resize "
                            "every image"
                        )
                    ref, ref_id, channels = hw, it.id, 3 if color else 1
                elif hw != ref:
                    raise DataError(
                        f"image {it.path} is {hw[1]}x{hw[0]} but {ref_id} is "
                        f"{ref[1]}x{ref[0]}; add ,size=N to the spec to resize every image to NxN"
                    )
                if color and channels == 1:
                    channels = 3
                    for r in rows.values():
                        r.widen()
                if it.split not in rows:
                    path = folder / f"{it.split}_images.npy" if folder is not None else None
                    rows[it.split] = _Rows(path, (channels, *ref), capacity[it.split])
                img = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
                rows[it.split].append(img, it.label, it.id)
    finally:
        bar.close()
        for r in rows.values():
            if r.writer is not None:
                r.writer.close()
    if ref is None:
        first = f" ({len(skipped)} unreadable, first: {skipped[0][0]})" if skipped else ""
        raise DataError(f"no readable images found in {sc.root}{first}")
    _refuse_unreadable_classes(plan, rows.get("train"), skipped, sc.root)
    if "train" not in rows:
        path = folder / "train_images.npy" if folder is not None else None
        rows["train"] = _Rows(path, (channels, *ref), 0)
    parts = {s: rows[s].part() if s in rows else None for s in _PARTS}
    name = "tinyimagenet" if plan.layout == "tinyimagenet" else f"folder:{sc.root.name}"
    train = parts["train"]
    assert train is not None
    return Decoded(name, list(plan.class_names), train, parts["test"], parts["unlabeled"], skipped)
