"""``run_training``: one configured run, a single method or self-training's rounds of them.

The pieces live in ``fewlabels.train.parts`` (settings, data, network, model file) and
``fewlabels.train.single`` (one method's run), and
are re-exported here, where the CLI, the study runner and the tests have always found them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.data import Dataset, Splits
from fewlabels.train.loggers import RunLogger, close_trackers
from fewlabels.train.parts import (
    RunConfig,
    RunResult,
    add_extra_unlabeled,
    build_network,
    channel_stats,
    check_resumable,
    data_record,
    export_model,
    load_extra_unlabeled,
    prepare_data,
    write_json,
)
from fewlabels.train.runcheck import check_run_folder
from fewlabels.train.self_training import run_self_training
from fewlabels.train.single import (
    Setup,
    build_setup,
    open_trackers,
    run_single,
    test_metrics,
    write_outputs,
)

__all__ = [
    "RunConfig",
    "RunResult",
    "Setup",
    "add_extra_unlabeled",
    "build_network",
    "build_setup",
    "channel_stats",
    "check_resumable",
    "data_record",
    "export_model",
    "load_extra_unlabeled",
    "prepare_data",
    "run_single",
    "run_training",
    "test_metrics",
    "write_json",
    "write_outputs",
]


def run_training(
    cfg: RunConfig,
    *,
    progress: bool = True,
    log: Any = print,
    stop_at_step: int | None = None,
    data: tuple[Dataset, Splits] | None = None,
    init_head: bool = False,
    data_in_memory: bool | None = None,
    fresh: bool = False,
    loggers: Sequence[str | RunLogger] = (),
) -> RunResult:
    """Run one configured training and write its results to ``cfg.out`` (none when None).

    ``data`` gives the dataset and splits ready-made (in-memory data, a study's selected
    splits); ``init_head`` also loads the classifier head from ``cfg.init``;
    ``data_in_memory`` (see ``Trainer``) does not change the results, only where the
    images live. ``loggers``: trackers (``tensorboard``, ``mlflow``, ``wandb``, ``csv`` or
    ``RunLogger`` objects) fed with the run's curve, settings and final metrics. Method
    ``teacher_student`` runs self-training's rounds (tracked once they are done). A
    checkpoint in ``cfg.out`` resumes only with the same settings and data; ``fresh``
    starts afresh.
    """
    if cfg.method.lower() == "teacher_student":
        if fresh:
            raise ConfigError("fresh is not available for teacher_student; use a new out folder")
        check_run_folder(cfg.out)
        res = run_self_training(
            cfg, progress=progress, log=log, stop_at_step=stop_at_step, data=data
        )
        tracker = open_trackers(loggers, cfg, cfg.model_dump())
        if tracker is not None:  # the rounds are logged when done: the final curve, metrics
            tracker.configure()
            for row in res.curve:
                tracker.on_eval(None, row)
            names = list(res.metrics.per_class) if res.metrics is not None else []
            close_trackers(tracker, res.metrics, res.out_dir, cfg.method, names)
        return res
    return run_single(
        cfg,
        progress=progress,
        log=log,
        stop_at_step=stop_at_step,
        data=data,
        init_head=init_head,
        data_in_memory=data_in_memory,
        fresh=fresh,
        loggers=loggers,
    )
