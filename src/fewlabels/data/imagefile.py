"""Image files: which files are images, finding them below a folder, and the one decoder.

Training (``folder:`` sources), evaluation and ``predict`` all read image files through
``read_image``, so an image gives the same pixels whichever command reads it:

- 16-bit (and 32-bit integer) grey images are scaled to 8 bits (0..65535 onto 0..255,
  rounded), not clipped at 255 as Pillow's own conversion does;
- the EXIF orientation is applied (a photo taken sideways is read upright);
- palette images become grey when every colour they use is grey, else RGB; other grey
  modes become 8-bit grey and everything else RGB (alpha dropped);
- only regular files are opened: a FIFO, a socket or a device is refused before it is
  opened (opening a FIFO would wait forever for a writer);
- anything Pillow refuses (a truncated file, text named ``.png``, a decompression bomb)
  is reported as unreadable, never raised.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from fewlabels.core.files import not_regular

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "F"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def is_image_file(name: str) -> bool:
    """Whether ``name`` has one of the image extensions read (``EXTENSIONS``)."""
    return os.path.splitext(name)[1].lower() in EXTENSIONS


def _leads_back(target: Path, top: Path, root: Path) -> bool:
    """Whether a folder link to ``target``, found below ``top``, leads back into the data
    (``root``) or up to a folder that holds ``top`` or ``root`` (a loop)."""
    if target.is_relative_to(top):
        return False  # within the folder being walked: the visited set dedups it
    return target.is_relative_to(root) or root.is_relative_to(target) or top.is_relative_to(target)


def walk_images(
    top: Path, root: Path | None = None, links_skipped: list[str] | None = None
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files at any depth below ``top``, sorted; symlinks are followed, loops are not.

    A folder link is not followed when it leads back into ``root`` (the data folder, by
    default ``top``) outside ``top``, or up to a folder above ``top`` or ``root``: its
    images belong to another class (or would be walked twice). Such links are appended
    to ``links_skipped`` when given. Returns the files and ``(path, reason)`` for folders
    that could not be read and image-named entries that are no regular files (a FIFO).
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    try:
        st = top.stat()
        seen.add((st.st_dev, st.st_ino))
        top_r = top.resolve()
        root_r = (root or top).resolve()
    except (OSError, RuntimeError) as e:
        return [], [(str(top), f"unreadable folder ({getattr(e, 'strerror', e)})")]
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
                    if e.is_symlink() and _leads_back(Path(e.path).resolve(), top_r, root_r):
                        if links_skipped is not None:
                            links_skipped.append(e.path)
                        continue
                    st = e.stat()
                    key = (st.st_dev, st.st_ino)
                    if key not in seen:  # a folder reached twice (a symlink loop) is skipped
                        seen.add(key)
                        stack.append(Path(e.path))
                elif is_image_file(e.name):
                    if e.is_file():
                        found.append(Path(e.path))
                    elif (why := not_regular(e.path)) is not None:
                        problems.append((e.path, f"{why}, not an image file"))
            except (OSError, RuntimeError):  # a dangling symlink, a vanished file, a loop
                continue
    found.sort(key=lambda p: p.as_posix())
    return found, problems


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: read the pixels as stored
        return 1


def _to_8bit(im: Image.Image) -> tuple[Image.Image, bool]:
    """``im`` as 8-bit grey ("L") or RGB, and whether it is in colour."""
    if im.mode in _WIDE_GRAY_MODES:
        a = np.asarray(im).astype(np.int64).clip(0, 65535)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8)), False
    if im.mode in _GRAY_MODES:
        return im.convert("L"), False
    out = im.convert("RGB")
    if im.mode in ("P", "PA"):  # a palette image may be grey after all
        a = np.asarray(out)
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
            return out.convert("L"), False
    return out, True


def read_image(path: str | Path, size: int | None = None) -> tuple[np.ndarray, bool] | str:
    """(H, W) or (H, W, 3) uint8 pixels of an image file and whether it is in colour, or
    why it could not be read. ``size`` resizes to ``size`` x ``size`` (bilinear)."""
    why = not_regular(path)
    if why is not None:
        return f"{why}, not an image file"
    try:
        with Image.open(path) as im:
            if size:
                im.draft(None, (size, size))  # JPEG: decode at a reduced scale when possible
            turn = _TRANSPOSE.get(_orientation(im))
            out, color = _to_8bit(im)
            if turn is not None:
                out = out.transpose(turn)
            if size and out.size != (size, size):
                out = out.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(out, dtype=np.uint8), color
    except Exception as e:  # Pillow raises many types for bad files; all mean "unreadable"
        return f"{type(e).__name__}: {e}"


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) uint8 with ``channels`` (1 or 3) from ``read_image``'s pixels: grey is
    repeated into three channels, colour becomes grey by Pillow's luma (ITU-R 601-2)."""
    if pixels.ndim == 2:
        return np.repeat(pixels[None], channels, axis=0)
    if channels == 1:
        return np.asarray(Image.fromarray(pixels, "RGB").convert("L"), dtype=np.uint8)[None]
    return pixels.transpose(2, 0, 1)
