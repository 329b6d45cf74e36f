"""Which precision ``auto`` picks, and the warning for bf16 on a CPU that only emulates it."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import invoke

from fewlabels.core import precision as P
from fewlabels.core.errors import ConfigError

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: native)
    assert P.resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    assert P.resolve_precision("fp32", CPU) == "fp32"
    assert P.resolve_precision("bf16", CPU) == "bf16"  # asked for: kept
    warning = P.slow_precision_warning("bf16", CPU)
    assert (warning is None) == native
    assert P.slow_precision_warning("fp32", CPU) is None


def test_an_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16"):
        P.resolve_precision("fp16", CPU)


def test_training_in_bf16_on_a_cpu_without_it_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: False)
    r = invoke(
        "train", "--data", "digits", "--labels-per-class", "5", "--budget", "2steps",
        "--batch-size", "16", "--precision", "bf16", "--out", str(tmp_path), "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "no native bf16 instructions" in r.output
    r = invoke(
        "train", "--data", "digits", "--labels-per-class", "5", "--budget", "2steps",
        "--batch-size", "16", "--out", str(tmp_path / "auto"), "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "(fp32, cpu" in r.output and "no native bf16" not in r.output


def test_the_gan_trainer_warns_too(monkeypatch):
    from fewlabels.generate.train import GANConfig, train_gan

    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: False)
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    said: list[str] = []
    cfg = GANConfig(budget="1steps", batch_size=8, z_dim=8, width=4, precision="bf16")
    train_gan(images, cfg, progress=False, log=said.append)
    assert any("no native bf16 instructions" in s for s in said)


def test_a_study_that_asks_for_bf16_says_so_once(monkeypatch, tmp_path):
    from fewlabels.study import load_study, run_study

    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: False)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndata: digits\nbackbone: convnet\nbudget: 1steps\nval: none\n"
        "train: {batch_size: 16, evals: 1, precision: bf16}\nupper_bound: false\n"
        "grid:\n  labels_per_class: [2]\n  unlabeled: ['0']\n  seeds: [0, 1]\n"
        "methods:\n  - supervised\n"
    )
    said: list[str] = []
    res = run_study(load_study(spec), tmp_path / "out", log=said.append)
    assert res.counts["done"] == 2
    assert sum("no native bf16 instructions" in s for s in said) == 1
    said.clear()
    fp32 = tmp_path / "f.yaml"
    fp32.write_text(spec.read_text().replace("precision: bf16", "precision: fp32"))
    run_study(load_study(fp32), tmp_path / "out32", log=said.append)
    assert not any("no native bf16" in s for s in said)
