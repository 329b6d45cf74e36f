"""Experiment trackers: TensorBoard, MLflow, Weights & Biases and a plain CSV file, behind
one small interface (``RunLogger``), fed by the loop's curve rows.

A logger receives the run's resolved settings once (``log_config``), each curve row
(``log_dict``: images seen, training and wall-clock seconds, the loss, validation
metrics, the lr) at the row's step, the final test metrics (``log_summary``) and the
confusion figure (``log_figure``). ``TrackerCallback`` attaches a list of them to the
loop. Each backend's package is an optional extra, imported when the logger is made.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fewlabels.core.errors import ConfigError
from fewlabels.evaluate.metrics import Metrics
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.train.engine import Callback, LoopState

__all__ = [
    "LOGGER_NAMES",
    "CSVLogger",
    "MLflowLogger",
    "RunLogger",
    "TensorBoardLogger",
    "TrackerCallback",
    "WandbLogger",
    "close_trackers",
    "flatten",
    "make_loggers",
    "parse_logger_specs",
    "replay",
    "require_backends",
    "row_values",
]

LOGGER_NAMES = ("tensorboard", "mlflow", "wandb", "csv")


@runtime_checkable
class RunLogger(Protocol):
    """One tracked run in some tracker; every backend has these five methods."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The run's settings (flat ``section.name`` keys) as hyperparameters."""

    def log_dict(self, values: Mapping[str, float], step: int) -> None:
        """Scalars at a training step."""

    def log_summary(self, values: Mapping[str, float], step: int) -> None:
        """The run's final metrics."""

    def log_figure(self, name: str, path: Path, step: int) -> None:
        """A picture (a PNG file)."""

    def close(self) -> None:
        """Finish the run (files flushed, run marked finished)."""


def _need(package: str, extra: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as e:
        if e.name and e.name.split(".")[0] == package.split(".")[0]:
            raise ConfigError(
                f"the {extra} logger needs the {extra} package: pip install 'fewlabels[{extra}]'"
            ) from None
        raise ConfigError(f"the {extra} logger's package failed to import: {e}") from None


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as flat ``a.b`` keys; values that are not scalars become text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        elif value is None or isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def row_values(row: Mapping[str, Any]) -> dict[str, float]:
    """A curve row's numbers (all but the step), as floats."""
    return {
        k: float(v)
        for k, v in row.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
    }


class CSVLogger:
    """``scalars.csv`` (step, wall time, name, value), ``config.json`` and the final
    metrics in ``summary.json``, in ``folder``. Needs nothing installed."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = (self.folder / "scalars.csv").open("w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(["step", "wall_time", "name", "value"])

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = json.dumps(dict(config), indent=2, default=str)
        (self.folder / "config.json").write_text(text + "\n")

    def log_dict(self, values: Mapping[str, float], step: int) -> None:
        now = round(time.time(), 3)
        for name, value in values.items():
            self._csv.writerow([step, now, name, value])
        self._file.flush()

    def log_summary(self, values: Mapping[str, float], step: int) -> None:
        (self.folder / "summary.json").write_text(json.dumps(dict(values), indent=2) + "\n")

    def log_figure(self, name: str, path: Path, step: int) -> None:
        (self.folder / f"{name}.png").write_bytes(Path(path).read_bytes())

    def close(self) -> None:
        self._file.close()


class TensorBoardLogger:
    """Event files in ``folder`` (``tensorboard --logdir`` its parent to compare runs): the
    scalars, the settings in the HParams tab (with the final metrics) and as text, the
    figure as an image. Needs ``fewlabels[tensorboard]``."""

    def __init__(self, folder: str | Path) -> None:
        _need("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.config: dict[str, Any] = {}
        self._hparams_written = False

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.config = {k: ("" if v is None else v) for k, v in config.items()}
        table = "\n".join(f"| {k} | {v} |" for k, v in config.items())
        self.writer.add_text("config", "| setting | value |\n|---|---|\n" + table, 0)

    def log_dict(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def log_summary(self, values: Mapping[str, float], step: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        for name, value in values.items():
            self.writer.add_scalar(f"final/{name}", value, step)
        metrics = {f"final/{k}": v for k, v in values.items()}
        for summary in hparams(self.config, metrics):
            self.writer.file_writer.add_summary(summary)
        self._hparams_written = True

    def log_figure(self, name: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        self.writer.add_image(name, arr, step, dataformats="HWC")

    def close(self) -> None:
        if not self._hparams_written and self.config:
            self.log_summary({}, 0)
        self.writer.close()


class MLflowLogger:
    """A run in an MLflow tracking store (``tracking_uri``: ``file:DIR``, ``sqlite:///...``
    or a server), in experiment ``experiment``, named ``name`` with ``tags``. Needs
    ``fewlabels[mlflow]``. Newer MLflow refuses a ``file:`` store unless the environment
    has ``MLFLOW_ALLOW_FILE_STORE=true``."""

    def __init__(
        self, tracking_uri: str, experiment: str, name: str, tags: Mapping[str, Any] = ()
    ) -> None:
        _need("mlflow", "mlflow")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
            run = self.client.create_run(
                exp_id, run_name=name, tags={k: str(v) for k, v in dict(tags).items()}
            )
        except MlflowException as e:
            first = str(e.message if hasattr(e, "message") else e).split(". ")[0]
            raise ConfigError(
                f"mlflow cannot track to {tracking_uri}: {first} (a file: store needs "
                "MLFLOW_ALLOW_FILE_STORE=true in the environment with MLflow 3)"
            ) from None
        self.run_id = run.info.run_id

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:500]) for k, v in config.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_dict(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_summary(self, values: Mapping[str, float], step: int) -> None:
        self.log_dict({f"final/{k}": v for k, v in values.items()}, step)

    def log_figure(self, name: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbLogger:
    """A Weights & Biases run (project ``project``, files under ``folder``; the mode, e.g.
    offline, from ``WANDB_MODE``), named ``name``, tagged ``key=value``. Needs
    ``fewlabels[wandb]``."""

    def __init__(
        self,
        project: str,
        folder: str | Path,
        name: str,
        tags: Mapping[str, Any] = (),
        group: str | None = None,
    ) -> None:
        self.wandb = _need("wandb", "wandb")
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(
            project=project,
            dir=str(folder),
            name=name,
            group=group,
            tags=[f"{k}={v}" for k, v in dict(tags).items()],
            reinit="create_new",
        )

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def log_dict(self, values: Mapping[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def log_summary(self, values: Mapping[str, float], step: int) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in values.items()})

    def log_figure(self, name: str, path: Path, step: int) -> None:
        self.run.log({name: self.wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        self.run.finish()


def parse_logger_specs(values: str | Sequence[str] | None) -> list[str]:
    """``tensorboard,csv`` or a list of them, each ``NAME`` or ``NAME:WHERE`` (a folder for
    tensorboard and csv, a tracking URI for mlflow, a project for wandb); checked."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    specs = [s.strip() for item in items for s in item.split(",") if s.strip()]
    for spec in specs:
        name = spec.split(":", 1)[0].lower()
        if name not in LOGGER_NAMES:
            raise ConfigError(f"logger {spec!r} is not one of {', '.join(LOGGER_NAMES)}")
    return specs


def make_loggers(
    specs: Sequence[str | RunLogger],
    *,
    folder: Path,
    name: str,
    tags: Mapping[str, Any] | None = None,
    experiment: str = "fewlabels",
) -> list[RunLogger]:
    """Open one run per spec (a ``RunLogger`` passes through). File trackers write under
    ``folder/<tracker>/<name>`` unless the spec names a folder; mlflow tracks to the spec's
    URI, else ``MLFLOW_TRACKING_URI``, else ``file:folder/mlruns``."""
    tags = dict(tags or {})
    loggers: list[RunLogger] = []
    try:
        for spec in specs:
            loggers.append(
                spec if not isinstance(spec, str) else _open(spec, folder, name, tags, experiment)
            )
    except BaseException:
        for lg in loggers:  # a tracker that cannot open: the ones opened are closed
            lg.close()
        raise
    return loggers


def _open(spec: str, folder: Path, name: str, tags: dict[str, Any], experiment: str) -> RunLogger:
    kind, _, where = spec.partition(":")
    kind = kind.lower()
    if kind in ("tensorboard", "csv"):
        base = Path(where) if where else folder / kind
        return (TensorBoardLogger if kind == "tensorboard" else CSVLogger)(base / name)
    if kind == "mlflow":
        default = (Path(folder).resolve() / "mlruns").as_uri()
        uri = where or os.environ.get("MLFLOW_TRACKING_URI") or default
        return MLflowLogger(uri, experiment, name, tags)
    if kind == "wandb":
        return WandbLogger(where or experiment, folder, name, tags, experiment)
    parse_logger_specs([spec])  # raises the one-line error
    raise AssertionError(spec)


class TrackerCallback(Callback):
    """Feeds ``loggers`` from the loop: the settings at the start, every curve row at its
    step; ``finish`` adds the final metrics and the confusion figure and closes them."""

    def __init__(self, loggers: Sequence[RunLogger], config: Mapping[str, Any]) -> None:
        self.loggers, self.config = list(loggers), flatten(config)
        self._configured, self.last_step = False, 0

    def configure(self) -> None:
        """Give every logger the settings (once)."""
        if not self._configured:
            for lg in self.loggers:
                lg.log_config(self.config)
            self._configured = True

    def on_start(self, loop: LoopState) -> None:
        self.configure()

    def on_eval(self, loop: LoopState | None, row: Mapping[str, Any]) -> None:
        step = int(row.get("step", loop.step if loop is not None else 0))
        self.last_step = max(self.last_step, step)
        values = row_values(row)
        for lg in self.loggers:
            lg.log_dict(values, step)

    def finish(self, metrics: Mapping[str, Any] | None, figure: Path | None = None) -> None:
        """Log the final metrics (their numbers) and ``figure``, then close every logger."""
        try:
            for lg in self.loggers:
                if metrics:
                    lg.log_summary(row_values(metrics), self.last_step)
                if figure is not None and Path(figure).exists():
                    lg.log_figure("confusion", Path(figure), self.last_step)
        finally:
            for lg in self.loggers:
                lg.close()


def replay(
    loggers: Sequence[RunLogger],
    config: Mapping[str, Any],
    curve: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any] | None,
    figure: Path | None = None,
) -> None:
    """Log a finished run (its settings, curve rows, final metrics and figure) and close
    the loggers: a study's cells, and ``fewlabels report --export``."""
    tracker = TrackerCallback(loggers, config)
    tracker.configure()
    for row in curve:
        tracker.on_eval(None, row)
    tracker.finish(metrics, figure)


def require_backends(specs: Sequence[str]) -> None:
    """Check that every tracker in ``specs`` can be imported (before a long run starts)."""
    packages = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
    for spec in parse_logger_specs(list(specs)):
        kind = spec.split(":", 1)[0].lower()
        if kind in packages:
            _need(packages[kind], kind)


def close_trackers(
    tracker: TrackerCallback | None,
    metrics: Metrics | None,
    out: Path | None,
    title: str,
    class_names: list[str],
) -> None:
    """The final metrics and the confusion figure to the trackers, which are then closed."""
    if tracker is None:
        return
    summary = metrics.summary() if metrics is not None else None
    if metrics is None or (out is not None and (out / "confusion.png").exists()):
        tracker.finish(summary, out / "confusion.png" if out is not None else None)
        return
    with tempfile.TemporaryDirectory() as tmp:  # a run without a folder: draw it here
        figure = Path(tmp) / "confusion.png"
        plot_confusion(metrics.confusion, class_names, figure, title=title)
        tracker.finish(summary, figure)
