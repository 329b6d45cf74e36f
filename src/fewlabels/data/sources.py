"""Data specs (``KIND[:PATH][,key=value...]``) and ``load_dataset``, the one way data comes in."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import cache, cifar_python, csvsource, folder, hf, imageset, npz, stl10
from fewlabels.data.digits import load_digits_dataset
from fewlabels.data.imageset import Dataset

OptionParser = Callable[[str, str], Any]  # (value, "kind option") -> parsed value


def _positive_int(value: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError(f"{where}={value!r}: expected a positive whole number")
    return n


def _image_side(value: str, where: str) -> int:
    n = _positive_int(value, where)
    if not 8 <= n <= 4096:
        raise ConfigError(f"{where}={value!r}: expected an image side from 8 to 4096 pixels")
    return n


def _existing_dir(value: str, where: str) -> str:
    p = Path(value).expanduser()
    if not p.exists():
        raise DataError(f"no such file or directory: {value} ({where})")
    if not p.is_dir():
        raise DataError(f"{value} is not a folder ({where})")
    return str(p.resolve())


def _choice(*choices: str) -> OptionParser:
    def parse(value: str, where: str) -> str:
        if value not in choices:
            raise ConfigError(f"{where}={value!r}: expected one of {', '.join(choices)}")
        return value

    return parse


@dataclass(frozen=True)
class _Source:
    scan: Callable[[str, Path, dict[str, Any]], cache.Scan] | None
    decode: Callable[[str, cache.Scan, dict[str, Any], bool], cache.Decoded] | None
    options: dict[str, OptionParser] = field(default_factory=dict)
    usage: str = ""


_FOLDER_OPTIONS: dict[str, OptionParser] = {"size": _image_side, "unlabeled": _existing_dir}
SOURCES: dict[str, _Source] = {
    "digits": _Source(None, None, usage="digits"),
    # the binary version (fewlabels.data.cifar) or the Python version (pickles)
    "cifar10": _Source(cifar_python.scan, cifar_python.decode, usage="cifar10:FOLDER"),
    "cifar100": _Source(
        cifar_python.scan,
        cifar_python.decode,
        {"label": _choice("fine", "coarse")},
        "cifar100:FOLDER",
    ),
    "stl10": _Source(stl10.scan, stl10.decode, usage="stl10:FOLDER"),
    "folder": _Source(folder.scan, folder.decode, _FOLDER_OPTIONS, "folder:FOLDER[,size=N]"),
    "tinyimagenet": _Source(
        folder.scan, folder.decode, _FOLDER_OPTIONS, "tinyimagenet:FOLDER[,size=N]"
    ),
    "npz": _Source(npz.scan, npz.decode, {"classes": _positive_int}, "npz:FILE"),
    "csv": _Source(
        csvsource.scan,
        csvsource.decode,
        {"root": _existing_dir, "size": _image_side},
        "csv:FILE[,root=FOLDER][,size=N]",
    ),
    "hf": _Source(
        hf.scan,
        hf.decode,
        {
            "split": hf.column_name,
            "image": hf.column_name,
            "label": hf.column_name,
            "size": _image_side,
        },
        "hf:FOLDER_OR_NAME[,split=S][,image=COLUMN][,label=COLUMN][,size=N]",
    ),
}


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """Split ``KIND[:PATH][,key=value...]`` into (kind, path or None, raw options).

    A comma-separated part without ``=`` before any option belongs to the path, so paths
    with commas work. Unknown kinds and options raise ``ConfigError``.
    """
    parts = spec.strip().split(",")
    head, rest = parts[0], parts[1:]
    while rest and "=" not in rest[0]:
        head += "," + rest.pop(0)
    kind, _, path = head.partition(":")
    kind = kind.strip().lower()
    if not kind:
        raise ConfigError(f"empty data spec {spec!r}; expected KIND[:PATH], e.g. digits")
    if kind.startswith("in-memory"):
        raise ConfigError(
            f"{spec.strip()[:60]!r} describes in-memory data, which no spec can load; "
            "pass the ImageSet or Dataset itself"
        )
    if kind not in SOURCES:
        raise ConfigError(
            f"unknown data kind {kind!r} in {spec!r}; valid kinds: {', '.join(sorted(SOURCES))}"
        )
    src = SOURCES[kind]
    path_or_none = path.strip() or None
    if src.scan is None and path_or_none is not None:
        raise ConfigError(f"{kind} takes no path; use {src.usage}")
    if src.scan is not None and path_or_none is None:
        raise ConfigError(f"{kind} needs a path: {src.usage}")
    options: dict[str, str] = {}
    for item in rest:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise ConfigError(f"bad option {item!r} in {spec!r}; expected key=value")
        if key not in src.options:
            valid = ", ".join(sorted(src.options)) or "none"
            raise ConfigError(f"unknown option {key!r} for {kind} (valid options: {valid})")
        if key in options:
            raise ConfigError(f"option {key!r} given twice in {spec!r}")
        options[key] = value.strip()
    return kind, path_or_none, options


def _report_skipped(skipped: list[tuple[str, str]], strict: bool) -> None:
    if not skipped:
        return
    if strict:
        path, reason = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise DataError(f"unreadable image {path}: {reason}{more}")
    shown = ", ".join(p for p, _ in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    warnings.warn(
        f"skipped {len(skipped)} unreadable image(s): {shown} (use strict mode to refuse)",
        stacklevel=3,
    )


def load_dataset(
    spec: str, *, strict: bool = False, cache_dir: str | Path | None = None
) -> Dataset:
    """Load a data source, decoding its files once and caching the arrays on disk.

    ``strict=True`` turns skipped unreadable images into a ``DataError``. The cache lives
    in ``cache_dir``, ``$FEWLABELS_CACHE`` or ``~/.cache/fewlabels``.
    """
    kind, path, raw = parse_spec(spec)
    src = SOURCES[kind]
    if src.scan is None or src.decode is None or path is None:
        return replace(load_digits_dataset(), spec=spec)
    options = {k: src.options[k](v, f"{kind} option {k}") for k, v in raw.items()}
    p = Path(path).expanduser()
    if kind == "hf" and not p.exists():  # a Hub name: its folder in the local cache
        found = hf.cache_folder(path)
        if found is None:
            raise DataError(
                f"hf:{path}: no such folder, and no dataset {path!r} in the local Hugging Face "
                "cache (HF_DATASETS_CACHE or HF_HOME); nothing is downloaded"
            )
        p = found
    if not p.exists():
        if p.is_symlink():
            raise DataError(f"{path} is a broken symbolic link or a symlink loop")
        raise DataError(f"no such file or directory: {path}")
    sc = src.scan(kind, p, options)
    # folder: and tinyimagenet: share entries (the layout is part of the scan)
    fp = cache.fingerprint("folder" if src.scan is folder.scan else kind, p, options, sc)
    root = cache.cache_root(cache_dir)
    dec = cache.load(root, fp)
    if dec is None:
        if src.scan is folder.scan:  # streams every image straight into the cache entry
            dec = cache.build(root, fp, lambda out: folder.decode(kind, sc, options, strict, out))
        else:
            dec = cache.store(root, fp, src.decode(kind, sc, options, strict))
    _report_skipped(dec.skipped, strict)
    return replace(cache.to_dataset(dec, fp), spec=spec)


imageset._load_spec = load_dataset
