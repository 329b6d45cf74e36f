"""Run by tests/test_distributed.py under torchrun: one supervised run, 2 CPU processes."""

from __future__ import annotations

import sys

import torch

from fewlabels.train.run import RunConfig, run_training


def config(out: str) -> RunConfig:
    return RunConfig(
        data="digits",
        labels_per_class=40,
        val="none",
        backbone="convnet",
        backbone_kwargs={"norm": "none", "dropout": 0.0},
        method_kwargs={"augment": "none"},
        train={
            **{"budget": "15steps", "batch_size": 32, "lr": 0.1, "precision": "fp32"},
            **{"evals": 1, "optimizer": "sgd"},  # the SGD run this test was made for
        },
        device="cpu",
        out=out,
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_training(config(sys.argv[1]), progress=False, log=lambda s: None)
