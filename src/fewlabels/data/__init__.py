"""Data sources, the in-memory image type and seeded splits."""

from fewlabels.data.imageset import UNLABELED, Dataset, ImageSet
from fewlabels.data.sources import load_dataset, parse_spec
from fewlabels.data.splits import SplitConfig, Splits, make_splits, parse_unlabeled

__all__ = [
    "UNLABELED",
    "Dataset",
    "ImageSet",
    "SplitConfig",
    "Splits",
    "load_dataset",
    "make_splits",
    "parse_spec",
    "parse_unlabeled",
]
