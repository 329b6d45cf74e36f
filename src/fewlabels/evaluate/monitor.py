"""What the loop measures at each evaluation, besides the curve's accuracy.

One pass of the encoder over the validation images gives the val logits and, optionally,
the embeddings of a fixed subset of up to ``max_points`` validation images, saved as
``embeddings/step_XXXXXX.npz`` for ``fewlabels embed`` and the study report to draw.
For a self-supervised run (``knn``) the logits are the online probe's (``network.head``
on the features) and a kNN accuracy against the labeled images' features
(``evaluate.knn``) comes with them; for a classifier run they are the network's own,
computed as ``predict_logits`` computes them (``features_and_logits``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewlabels.core.checkpoint import atomic_write_bytes
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.features import extract_features
from fewlabels.evaluate.knn import knn_predict
from fewlabels.evaluate.metrics import features_and_logits
from fewlabels.models import Network

MAX_POINTS = 1000


class FeatureMonitor:
    """Validation features -> val logits, kNN accuracy (``knn``) and saved embeddings."""

    def __init__(
        self,
        val: ImageSet,
        bank: ImageSet | None,
        *,
        knn: bool = True,
        embeddings_dir: str | Path | None = None,
        seed: int = 0,
        max_points: int = MAX_POINTS,
        batch_size: int = 1024,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
    ) -> None:
        self.val, self.knn = val, knn
        usable = knn and bank is not None and len(bank) and bank.is_labeled.all()
        self.bank = bank if usable else None
        self.dir = Path(embeddings_dir) if embeddings_dir is not None else None
        g = torch.Generator().manual_seed(seed)
        self.subset = torch.randperm(len(val), generator=g)[:max_points].sort().values
        self.batch_size, self.device, self.precision = batch_size, torch.device(device), precision

    def _features(self, net: Network, images: torch.Tensor) -> torch.Tensor:
        return extract_features(
            net, images, batch_size=self.batch_size, device=self.device, precision=self.precision
        )

    @torch.no_grad()
    def evaluate(self, net: Network, row: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(val logits, the subset's features), CPU fp32; with ``knn`` fills
        ``row["knn_acc"]``. Hand the features to ``save`` once the row has its accuracy."""
        if not self.knn:
            feats, logits = features_and_logits(
                net,
                self.val.images,
                batch_size=self.batch_size,
                device=self.device,
                precision=self.precision,
            )
            return logits, feats[self.subset]
        feats = self._features(net, self.val.images)
        head_dev = next(net.head.parameters(), feats).device
        logits = net.head(feats.to(head_dev)).float().cpu()
        knn_acc = None
        if self.bank is not None:
            bank = self._features(net, self.bank.images)
            pred = knn_predict(bank, self.bank.labels, feats, self.val.num_classes)
            knn_acc = round(float((pred == self.val.labels).float().mean()), 5)
        row["knn_acc"] = knn_acc
        return logits, feats[self.subset]

    def save(self, features: torch.Tensor, row: dict[str, Any]) -> Path | None:
        """``embeddings/step_XXXXXX.npz`` of ``evaluate``'s features with the row's step,
        epoch, times and accuracies (None: no folder to save in)."""
        if self.dir is None:
            return None
        keys = ["step", "epoch", "time_s", "wall_s", "val_acc"] + (["knn_acc"] if self.knn else [])
        return save_embeddings(
            self.dir / f"step_{int(row['step']):06d}.npz",
            features,
            self.val.labels[self.subset],
            self.val.class_names,
            {k: row.get(k) for k in keys},
        )


def save_embeddings(
    path: str | Path,
    features: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    info: dict[str, Any],
) -> Path:
    """Write features (float16), labels, class names and ``info`` as one ``.npz``."""
    buf = io.BytesIO()
    np.savez(
        buf,
        features=features.to(torch.float16).numpy(),
        labels=labels.numpy().astype(np.int64),
        class_names=np.asarray(class_names),
        **{k: np.asarray(np.nan if v is None else v, dtype=np.float64) for k, v in info.items()},
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_embeddings(path: str | Path) -> dict[str, Any]:
    """Read a file written by ``save_embeddings``; scalars come back as floats (nan = none)."""
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files}
    for k, v in list(out.items()):
        if isinstance(v, np.ndarray) and v.ndim == 0:
            out[k] = float(v)
    out["class_names"] = [str(c) for c in out.get("class_names", [])]
    return out
