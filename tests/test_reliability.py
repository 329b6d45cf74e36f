"""Divergence stops a run at the step it happens, and the same seed gives bit-identical runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fewlabels.cli import app
from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import DivergenceError
from fewlabels.data import load_dataset
from fewlabels.methods.supervised import Supervised
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig, Trainer

runner = CliRunner()


class _Blows(Supervised):
    """A supervised method whose loss becomes ``value`` from step ``at`` on."""

    def __init__(self, network: Network, value: float, at: int) -> None:
        super().__init__(network)
        self.value, self.at = value, at

    def step(self, batch):
        out = super().step(batch)
        if batch.step >= self.at:
            out["loss"] = out["loss"] + self.value
        return out


def _fit(method, out: Path | None, **kw):
    cfg = TrainConfig(budget="8steps", batch_size=32, precision="fp32", evals=0, lr=0.05)
    ds = load_dataset("digits")
    return Trainer(cfg, out_dir=out, progress=False).fit(method, ds.train, None, None, **kw)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_loss_stops_before_the_update_of_its_step(value, tmp_path):
    torch.manual_seed(0)
    bad = _Blows(Network("convnet", 1, 8, 10), value, at=2)
    with pytest.raises(DivergenceError) as e:
        _fit(bad, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"loss became {value} at step 2 ") and "\n" not in msg
    # fp32 and no checkpoint written yet: neither is offered as a way out
    assert msg.endswith("; lower train.lr"), msg
    torch.manual_seed(0)
    good = _Blows(Network("convnet", 1, 8, 10), 0.0, at=99)
    _fit(good, None, stop_at_step=2)  # the same two steps, then stop
    pairs = zip(bad.named_parameters(), good.parameters(), strict=True)
    for (name, a), b in pairs:  # (BatchNorm's running statistics do see the forward pass)
        assert torch.equal(a, b), name  # the bad step changed no weight


def test_divergence_at_the_cli_is_one_line_and_exit_code_2(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        ["train", "--budget", "6steps", "--lr", "1e30", "--batch-size", "32", "--out", str(out),
         "--no-progress", "--precision", "fp32", "--evals", "0"],
        catch_exceptions=False,
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: loss became ") and "\n" not in err, err
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()


# -- determinism ---------------------------------------------------------------------------
def _digest(run: Path) -> dict:
    """Everything a run reports that does not measure time, and a hash of its weights."""
    metrics = json.loads((run / "metrics.json").read_text())
    curve = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
    timeless = lambda d: {k: v for k, v in d.items() if k not in ("time_s", "wall_s")}  # noqa: E731
    state = load_checkpoint(run / "model.pt")["state_dict"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return {
        "metrics": {k: v for k, v in metrics.items() if "seconds" not in k},
        "curve": [timeless(r) for r in curve],
        "weights": h.hexdigest(),
    }


@pytest.mark.parametrize("method", ["supervised", "fixmatch"])
def test_same_seed_same_cpu_gives_bit_identical_runs(method, tmp_path):
    def run(out: Path) -> dict:
        r = runner.invoke(
            app,
            ["train", "--method", method, "--labels-per-class", "4", "--unlabeled", "200",
             "--budget", "12steps", "--batch-size", "16", "--unlabeled-batch-ratio", "2",
             "--evals", "3", "--precision", "fp32", "--seed", "7", "--out", str(out),
             "--no-progress"],
            catch_exceptions=False,
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        return _digest(out)

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert len(a["curve"]) == 3 and all(r["val_acc"] is not None for r in a["curve"])
    assert a == b  # curve, final metrics and every weight, bit for bit


def test_divergence_advice_names_the_checkpoint_and_bf16_only_when_they_apply(tmp_path):
    torch.manual_seed(0)
    _fit(_Blows(Network("convnet", 1, 8, 10), 0.0, at=99), tmp_path, stop_at_step=2)
    assert (tmp_path / "checkpoint.pt").exists()  # an interrupted run leaves its checkpoint
    with pytest.raises(DivergenceError) as e:  # the resumed run blows up at its next step
        _fit(_Blows(Network("convnet", 1, 8, 10), float("nan"), at=2), tmp_path)
    assert str(e.value).endswith(f"lower train.lr. The last checkpoint in {tmp_path} is intact")
    cfg = TrainConfig(budget="4steps", batch_size=32, precision="bf16", evals=0, lr=0.05)
    trainer = Trainer(cfg, progress=False)
    with pytest.raises(DivergenceError, match=r"lower train\.lr or set train\.precision to fp32$"):
        blows = _Blows(Network("convnet", 1, 8, 10), float("nan"), at=1)
        trainer.fit(blows, load_dataset("digits").train, None, None)


def test_the_cli_names_its_flags_in_the_divergence_advice(tmp_path):
    """The library names settings; the CLI shows them as the train command's flags."""
    from fewlabels.cli.common import name_flags

    msg = "loss became nan at step 3 (lr 0.1); lower train.lr or set train.precision to fp32"
    flags = {"train.lr": "--lr", "train.precision": "--precision"}
    assert name_flags(msg, flags).endswith("lower --lr or set --precision to fp32")
