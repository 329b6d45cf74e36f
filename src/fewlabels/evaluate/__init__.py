"""Evaluation: batched inference, metrics and pictures."""

from fewlabels.evaluate.metrics import (
    Metrics,
    classification_metrics,
    predict_logits,
    quick_metrics,
)

__all__ = ["Metrics", "classification_metrics", "predict_logits", "quick_metrics"]
