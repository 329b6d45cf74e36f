"""``run_training``: one configured run, a single method or self-training's rounds of them.

The pieces (``RunConfig``, data, network, outputs) live in ``fewlabels.train.single`` and
are re-exported here, where the CLI, the study runner and the tests have always found them.
"""

from __future__ import annotations

from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.data import Dataset, Splits
from fewlabels.train.runcheck import check_run_folder
from fewlabels.train.self_training import run_self_training
from fewlabels.train.single import (
    RunConfig,
    RunResult,
    Setup,
    add_extra_unlabeled,
    build_network,
    build_setup,
    channel_stats,
    check_resumable,
    data_record,
    export_model,
    load_extra_unlabeled,
    prepare_data,
    run_single,
    test_metrics,
    write_json,
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
) -> RunResult:
    """Run one configured training and write its results to ``cfg.out`` (none when None).

    ``data`` gives the dataset and splits ready-made (in-memory data, a study's selected
    splits); ``init_head`` also loads the classifier head from ``cfg.init``;
    ``data_in_memory`` (see ``Trainer``) does not change the results, only where the
    images live. Method ``teacher_student`` runs self-training's rounds. A checkpoint in
    ``cfg.out`` resumes only with the same settings and data; ``fresh`` starts afresh.
    """
    if cfg.method.lower() == "teacher_student":
        if fresh:
            raise ConfigError("fresh is not available for teacher_student; use a new out folder")
        check_run_folder(cfg.out)
        return run_self_training(
            cfg, progress=progress, log=log, stop_at_step=stop_at_step, data=data
        )
    return run_single(
        cfg,
        progress=progress,
        log=log,
        stop_at_step=stop_at_step,
        data=data,
        init_head=init_head,
        data_in_memory=data_in_memory,
        fresh=fresh,
    )
