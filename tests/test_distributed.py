"""DDP over 2 gloo processes gives the same model as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.models import Network
from fewlabels.train.run import run_training

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ddp_worker import config  # noqa: E402


def test_two_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "ddp_worker.py"),
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    torch.set_num_threads(1)
    try:
        single = run_training(config(str(tmp_path / "one")), progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(2)
    assert single.steps == 15
    a = load_checkpoint(tmp_path / "ddp" / "model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "one" / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # the run actually trained: the weights moved away from the shared initialisation
    torch.manual_seed(0)
    init = Network("convnet", 1, 8, 10, backbone_kwargs={"norm": "none", "dropout": 0.0})
    moved = (init.state_dict()["head.weight"] - a["head.weight"]).abs().max()
    assert moved > 1e-3
