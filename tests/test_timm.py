"""timm backbones for real: a few training steps with ``timm:resnet10t`` when timm imports.

timm needs a torchvision built for the installed torch. Where timm is absent or cannot be
imported, the training test skips and says why (the one-line error a user would see).
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fewlabels.core.errors import ConfigError
from fewlabels.models import build_backbone
from fewlabels.models.timm_backbone import import_timm

REPO = Path(__file__).resolve().parents[1]
FEWLABELS = Path(sys.executable).with_name("fewlabels")


def _timm_or_skip() -> None:
    try:
        import_timm()
    except ConfigError as e:
        pytest.skip(str(e))


def test_trains_a_real_timm_backbone_for_a_few_steps(tmp_path):
    _timm_or_skip()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            str(FEWLABELS), "train", "--backbone", "timm:resnet10t", "--data", "digits",
            "--labels-per-class", "5", "--budget", "3steps", "--batch-size", "16",
            "--precision", "fp32", "--evals", "1", "--out", "run",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    curve = (tmp_path / "run" / "curve.jsonl").read_text().splitlines()
    assert curve and json.loads(curve[-1])["step"] == 3


def test_timm_backbone_has_features_and_unknown_names_are_one_line():
    _timm_or_skip()
    import torch

    bb = build_backbone("timm:resnet10t", 3, 32)
    assert bb(torch.rand(2, 3, 32, 32)).shape == (2, bb.feature_dim)
    with pytest.raises(ConfigError, match="timm backbone 'no_such_net_xyz'") as e:
        build_backbone("timm:no_such_net_xyz", 3, 32)
    assert "\n" not in str(e.value)


def test_a_broken_timm_install_shows_its_real_error(monkeypatch):
    """Installed but failing (here: torchvision built for another torch) is not "absent"."""
    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise RuntimeError("operator torchvision::nms does not exist\nmore detail")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ConfigError) as e:
        build_backbone("timm:resnet10t", 3, 32)
    msg = str(e.value)
    assert msg == (
        "timm is installed but cannot be imported: "
        "RuntimeError: operator torchvision::nms does not exist"
    )
    assert "not installed" not in msg


def test_a_missing_dependency_of_timm_is_named(monkeypatch):
    real = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "timm":
            err = ModuleNotFoundError("No module named 'torchvision'")
            err.name = "torchvision"
            raise err
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ConfigError, match=r"cannot be imported: .*'torchvision'"):
        build_backbone("timm:resnet10t", 3, 32)
