"""Weighted k-nearest-neighbour classification on feature vectors.

The monitor of Wu et al. 2018 (InstDisc), used by solo-learn and most self-supervised
papers: cosine similarity to a bank of labeled features, the k most similar vote for
their class with weight ``exp(similarity / temperature)``, the heaviest class wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULTS = {
    # InstDisc (Wu et al. 2018), section 3.4 and solo-learn's knn monitor: k=200, T=0.1.
    "k": 200,
    "temperature": 0.1,
}


@torch.no_grad()
def knn_scores(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    *,
    k: int = DEFAULTS["k"],
    temperature: float = DEFAULTS["temperature"],
    chunk: int = 2048,
) -> torch.Tensor:
    """Class scores ``(len(queries), num_classes)``: summed vote weights of the k neighbours.

    ``k`` is capped at the bank's size. Features are L2-normalised (cosine similarity);
    queries are processed ``chunk`` rows at a time so the similarity matrix stays small.
    """
    if len(bank) == 0:
        raise ValueError("the kNN bank is empty")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    k = max(1, min(int(k), len(bank)))
    bank = F.normalize(bank.float(), dim=1)
    labels = bank_labels.to(bank.device, torch.int64)
    out = []
    for start in range(0, len(queries), chunk):
        q = F.normalize(queries[start : start + chunk].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        scores = torch.zeros(len(q), num_classes, device=bank.device)
        scores.scatter_add_(1, labels[idx], weights)
        out.append(scores)
    if not out:
        return torch.zeros(0, num_classes)
    return torch.cat(out)


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    *,
    k: int = DEFAULTS["k"],
    temperature: float = DEFAULTS["temperature"],
) -> torch.Tensor:
    """Predicted class of each query (see ``knn_scores``)."""
    scores = knn_scores(bank, bank_labels, queries, num_classes, k=k, temperature=temperature)
    return scores.argmax(1)
