"""Cross-rank gathers: two gloo processes, each with half of a fixed batch, give the loss and
the gradients that one process computes on the whole batch (SimCLR, Barlow Twins, VICReg,
SwAV's Sinkhorn, Self-Classifier, DINO's centre)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ssl_ddp_worker import CASES, embeddings, run  # noqa: E402


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ssl_ddp") / "results.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "ssl_ddp_worker.py"),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_give_the_whole_batch_loss_and_gradients(name, ddp_results):
    torch.set_num_threads(1)
    try:
        single = run(name, *embeddings())
    finally:
        torch.set_num_threads(2)
    got = ddp_results[name]
    assert got.keys() == single.keys()
    assert "g1" in single and "g2" in single
    for k in single:
        torch.testing.assert_close(got[k], single[k], rtol=1e-5, atol=1e-6, msg=f"{name}: {k}")
    # the comparison has teeth: the loss of one half alone is not the whole batch's
    half = run(name, *(z[: len(z) // 2] for z in embeddings()))
    assert abs(float(half["loss"]) - float(single["loss"])) > 1e-4
