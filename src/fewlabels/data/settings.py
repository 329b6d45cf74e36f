"""The data settings a run, a probe and a study share, declared once: which data, which
test and validation sets, and where the labels come from.

``RunConfig`` and ``ProbeConfig`` inherit these parts, so their files keep the flat layout
(``data: ...``, ``labels_per_class: ...`` at the top level).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fewlabels.core.errors import DataError
from fewlabels.data.imageset import Dataset
from fewlabels.data.labels import apply_labels
from fewlabels.data.sources import load_dataset


class SelectConfig(BaseModel):
    """A simulated label request: ``budget`` labels in all, picked by ``strategy``."""

    model_config = ConfigDict(extra="forbid")

    strategy: str
    budget: int
    encoder: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class DataSettings(BaseModel):
    """Which images: a data spec, an optional separate test source, the validation split."""

    model_config = ConfigDict(extra="forbid")

    data: str = "digits"
    test: str | None = None
    val: str = "auto"
    # refuse corrupt images instead of skipping them
    strict: bool = False
    # false: a mirrored image is not an image of its class (digits, letters, signs): no
    # augmentation mirrors it (``flip=0`` is added to every view that would), and test-time
    # augmentation, which averages over the mirror, is refused
    flip: bool = True


class LabelSettings(BaseModel):
    """Which labels: per class, a fraction, a labels file, or a simulated request."""

    model_config = ConfigDict(extra="forbid")

    labels_per_class: int | None = None
    labeled_fraction: float | None = None
    # labels file (id,label CSV) whose images join the labeled set; source_labels=False
    # hides the source's own labels first (see fewlabels.data.labels)
    labels: str | None = None
    source_labels: bool = True
    # a simulated label request: the labeled set is picked by a strategy (study cells)
    select: SelectConfig | None = None


class SourceSettings(DataSettings, LabelSettings):
    """The data and label settings together: what ``load`` reads."""

    def load(self) -> Dataset:
        """The dataset these settings name, test set and labels file applied."""
        return load_data(
            self.data,
            test=self.test,
            strict=self.strict,
            labels=self.labels,
            source_labels=self.source_labels,
        )


def load_data(
    data: str,
    *,
    test: str | None = None,
    strict: bool = False,
    labels: str | None = None,
    source_labels: bool = True,
) -> Dataset:
    """Load ``data`` (a data spec), its test set from ``test`` when given, and apply a
    labels file; the settings of ``DataSettings`` and ``LabelSettings``."""
    ds = load_dataset(data, strict=strict)
    if test is not None:
        test_ds = load_dataset(test, strict=strict)
        part = test_ds.test if test_ds.test is not None else test_ds.train
        if part.class_names != ds.class_names:
            raise DataError(
                f"the test source's classes ({', '.join(part.class_names[:5])}...) differ "
                f"from the training source's ({', '.join(ds.class_names[:5])}...)"
            )
        if part.images.shape[1:] != ds.train.images.shape[1:]:
            raise DataError(
                f"test images are {tuple(part.images.shape[1:])}, training images are "
                f"{tuple(ds.train.images.shape[1:])}"
            )
        ds = Dataset(ds.name, ds.train, part, ds.unlabeled, ds.fingerprint, ds.spec)
    if labels is not None or not source_labels:
        ds = apply_labels(ds, labels, source_labels=source_labels)
    return ds
