"""A label request: pick images of a data spec to label and write them as a CSV.

The pool is every training image of the spec (its train part, then its unlabeled part).
Already labeled: the images the source labels (unless ``source_labels=False``: a
simulation on a fully labeled benchmark) and those in the labels file. The rest are the
candidates. The CSV has one row per pick: ``rank, id, path, label`` (empty, for the
labellers), ``predicted`` and ``score`` (strategy-specific, see docs/selection.md) and
``strategy``. ``path`` is the image file for folder sources, else a PNG written beside
the CSV (``NAME_images/``). A sidecar ``NAME.csv.json`` remembers the data spec and the
labels file, so ``fewlabels data add-labels NAME.csv`` needs no other argument.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewlabels.core.checkpoint import atomic_write_bytes
from fewlabels.core.errors import ConfigError
from fewlabels.core.runlock import check_out_file
from fewlabels.data import load_dataset, parse_spec
from fewlabels.select import select, strategy
from fewlabels.select.base import Pool
from fewlabels.select.features import pool_features
from fewlabels.select.labels import Universe, parse_labels


@dataclass
class Request:
    """What ``request_labels`` wrote and picked."""

    out: Path
    rows: list[dict[str, Any]]
    labeled: int
    candidates: int
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def sidecar(csv_path: str | Path) -> Path:
    """The JSON file beside a request CSV that records its data spec and labels file."""
    return Path(f"{csv_path}.json")


def _safe(image_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in image_id)[:120]


def _paths(data: str, uni: Universe, rows: list[int], out: Path) -> list[str]:
    """A file per picked image: the source file where there is one, else a written PNG."""
    from PIL import Image

    _, root, _ = parse_spec(data)
    base = Path(root).expanduser() if root else None
    img_dir = out.with_name(f"{out.stem}_images")
    paths = []
    images = None
    for i, row in enumerate(rows):
        image_id = uni.ids[row]
        if base is not None and base.is_dir() and (base / image_id).is_file():
            paths.append(str((base / image_id).resolve()))
            continue
        if images is None:
            images = uni.images(rows)
            img_dir.mkdir(parents=True, exist_ok=True)
        a = images[i].permute(1, 2, 0).numpy()
        p = img_dir / f"{_safe(image_id)}.png"
        Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).save(p)
        paths.append(str(p))
    return paths


def request_labels(
    data: str,
    budget: int,
    strategy_name: str,
    out: str | Path,
    *,
    encoder: str | Path | None = None,
    labels_file: str | Path | None = None,
    source_labels: bool = True,
    seed: int = 0,
    strict: bool = False,
    options: dict[str, Any] | None = None,
) -> Request:
    """Pick ``budget`` images of ``data`` with ``strategy_name`` and write the request CSV."""
    t0 = time.perf_counter()
    strat = strategy(strategy_name)
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"`out` {out} should be a .csv file")
    check_out_file(out)
    ds = load_dataset(data, strict=strict)
    uni = Universe(ds)
    y = uni.source_labels().numpy().copy() if source_labels else np.full(len(uni), -1)
    if labels_file is not None:
        given, _ = parse_labels(labels_file, uni)
        for row, k in given.items():
            y[row] = k
    labeled = np.flatnonzero(y >= 0)
    n_cand = len(uni) - len(labeled)
    if n_cand == 0:
        hint = (
            "; the source labels them all: pass `source_labels=False` to treat its labels "
            "as unknown (a simulation)"
            if source_labels and labels_file is None
            else ""
        )
        raise ConfigError(f"every training image of {ds.name} is already labeled{hint}")
    if budget > n_cand:
        raise ConfigError(f"budget {budget} is more than the {n_cand} unlabeled images")
    feats = pool_features(uni.images(), encoder)
    pool = Pool(feats, labeled, y[labeled], ds.train.num_classes)
    picked = select(pool, strat.name, budget, seed=seed, **(options or {}))
    rows_idx = [int(r) for r in picked.index]
    paths = _paths(data, uni, rows_idx, out)
    rows: list[dict[str, Any]] = []
    for rank, row in enumerate(rows_idx):
        pred = picked.predicted[rank] if picked.predicted is not None else None
        score = picked.score[rank] if picked.score is not None else None
        rows.append(
            {
                "rank": rank + 1,
                "id": uni.ids[row],
                "path": paths[rank],
                "label": "",
                "predicted": ds.class_names[int(pred)] if pred is not None else "",
                "score": "" if score is None or not np.isfinite(score) else f"{score:.6g}",
                "strategy": strat.name,
            }
        )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out, buf.getvalue().encode())
    meta = {
        "data": data,
        "labels": str(Path(labels_file or out.parent / "labels.csv").resolve()),
        "source_labels": source_labels,
        "strategy": strat.name,
        "budget": budget,
        "encoder": str(encoder) if encoder is not None else None,
        "features": "encoder" if encoder is not None else "pixels",
        "seed": seed,
        "labeled_before": len(labeled),
        "info": picked.info,
    }
    atomic_write_bytes(sidecar(out), (json.dumps(meta, indent=2, default=str) + "\n").encode())
    return Request(out, rows, len(labeled), n_cand, time.perf_counter() - t0, picked.info)


def read_sidecar(csv_path: str | Path) -> dict[str, Any]:
    """The request's sidecar JSON, or {} when there is none (or it is unreadable)."""
    try:
        return json.loads(sidecar(csv_path).read_text())
    except (OSError, ValueError):
        return {}
