"""fewlabels: train image classifiers from few labels and many unlabeled images.

```python
import fewlabels

ds = fewlabels.load("digits")
splits = fewlabels.split(ds, labels_per_class=4, seed=0)
fit = fewlabels.train("fixmatch", splits.labeled, unlabeled=splits.unlabeled,
                      val=splits.val, test=splits.test, budget="300steps")
```

See ``fewlabels.api`` and docs/api.md.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

from fewlabels import train as _train_package  # the subpackage; its __init__ imports nothing

# Importing the API eagerly takes 11-16 s on a busy 2-core machine (torch alone ~8 s), so
# every name loads on first use: `import fewlabels` (and the CLI's start) stays instant.
_API = "fewlabels.api"
_WHERE = {
    **dict.fromkeys(
        (
            "PretrainResult", "ProbeResult", "Study", "StudyResult", "StudyRow", "TrainResult",
            "load", "pretrain", "probe", "run", "split",
        ),
        _API,
    ),
    **dict.fromkeys(
        (
            "CheckpointError", "ConfigError", "DataError", "DivergenceError", "FewlabelsError",
            "SplitError", "WriteError",
        ),
        "fewlabels.core.errors",
    ),
    **dict.fromkeys(("Dataset", "ImageSet", "Splits"), "fewlabels.data"),
    "TrainConfig": "fewlabels.train.loop",
    "RunConfig": "fewlabels.train.run",
    "RunResult": "fewlabels.train.run",
}  # fmt: skip

if TYPE_CHECKING:
    from fewlabels.api import (
        PretrainResult,
        ProbeResult,
        Study,
        StudyResult,
        StudyRow,
        TrainResult,
        load,
        pretrain,
        probe,
        run,
        split,
    )
    from fewlabels.core.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        DivergenceError,
        FewlabelsError,
        SplitError,
        WriteError,
    )
    from fewlabels.data import Dataset, ImageSet, Splits
    from fewlabels.train.loop import TrainConfig
    from fewlabels.train.run import RunConfig, RunResult

from fewlabels.core.version import __version__ as __version__  # noqa: E402

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Dataset",
    "DivergenceError",
    "FewlabelsError",
    "ImageSet",
    "PretrainResult",
    "ProbeResult",
    "RunConfig",
    "RunResult",
    "SplitError",
    "Splits",
    "Study",
    "StudyResult",
    "StudyRow",
    "TrainConfig",
    "TrainResult",
    "WriteError",
    "load",
    "pretrain",
    "probe",
    "run",
    "split",
    "train",
]


def __getattr__(name: str) -> Any:
    """Import the public names lazily (PEP 562)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'fewlabels' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _TrainPackage(types.ModuleType):
    """``fewlabels.train`` is the training subpackage (``fewlabels.train.loop``, ...) and,
    called, the API's ``train`` (``fewlabels.api.train``): one name for both."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module(_API).train(*args, **kwargs)  # lazy, as __getattr__


_train_package.__class__ = _TrainPackage
_train_package.__doc__ = (
    "Training: the loop, runs, self-training and probes (fewlabels.train.loop, .run, ...).\n\n"
    "Called, fewlabels.train(method, labeled, *, unlabeled=None, val=None, test=None, "
    "budget=None, ...) trains a classifier and returns a TrainResult: see fewlabels.api.train."
)
