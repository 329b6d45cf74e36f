"""The training loop: deterministic sampling, exact resume, budgets, EMA, divergence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.errors import CheckpointError, ConfigError, DivergenceError
from fewlabels.data import load_dataset
from fewlabels.evaluate.features import extract_features
from fewlabels.evaluate.metrics import features_and_logits, predict_logits
from fewlabels.evaluate.monitor import MAX_POINTS, load_embeddings
from fewlabels.methods.supervised import Supervised
from fewlabels.models import Network
from fewlabels.train.loop import IndexStream, TrainConfig, Trainer
from fewlabels.train.runcheck import fresh_start
from fewlabels.train.schedule import warmup_cosine


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _method(ds, seed=0, backbone="convnet", **kw):
    torch.manual_seed(seed)
    net = Network(backbone, 1, 8, ds.train.num_classes, backbone_kwargs=kw)
    return Supervised(net)


def _cfg(**kw):
    base = {"budget": "12steps", "batch_size": 64, "precision": "fp32", "evals": 3}
    base.update(kw)
    return TrainConfig(**base)


def test_index_stream_is_a_permutation_per_epoch_and_reproducible():
    s = IndexStream(10, 4, seed=3, stream=1)
    first = torch.cat([s.indices(i) for i in range(5)])  # 20 positions = 2 epochs
    assert sorted(first[:10].tolist()) == list(range(10))
    assert sorted(first[10:].tolist()) == list(range(10))
    assert not torch.equal(first[:10], first[10:])  # each epoch reshuffles
    again = IndexStream(10, 4, seed=3, stream=1)
    assert torch.equal(again.indices(3), s.indices(3))
    other = IndexStream(10, 4, seed=4, stream=1)
    assert not torch.equal(torch.cat([other.indices(i) for i in range(3)]), first[:12])


def test_index_stream_rank_slices_make_the_global_batch():
    s = IndexStream(50, 8, seed=0, stream=1)
    parts = torch.cat([s.indices(7, rank=r, world=2) for r in range(2)])
    assert torch.equal(parts, s.indices(7))


def test_index_stream_batch_larger_than_set_repeats_images():
    s = IndexStream(5, 12, seed=0, stream=1)
    idx = s.indices(0)
    assert len(idx) == 12 and set(idx.tolist()) == set(range(5))


def test_budget_parsing_and_schedule():
    assert Budget.parse("30m").amount == 1800
    assert Budget.parse("500steps").total_steps(10) == 500
    assert Budget.parse("2epochs").total_steps(4.5) == 9
    with pytest.raises(ConfigError):
        Budget.parse("ten minutes")
    assert str(Budget.parse("10m").split(2)) == "300s"
    assert str(Budget.parse("9steps").split(2)) == "4steps"
    assert str(Budget.parse("1steps").split(3)) == "1steps"
    assert str(Budget.parse("3epochs").split(2)) == "1.5epochs"
    assert str(Budget.parse("200kimg").split(4)) == "50000img"
    for text in ("2mimg", "0.5s", "2h", "7steps", "1.25epochs", "3mimg"):
        for parts in (1, 2, 3):
            share = Budget.parse(text).split(parts)
            back = Budget.parse(str(share))  # parses: no exponent, whatever the size
            assert back.kind == share.kind and back.amount == pytest.approx(share.amount, rel=1e-5)
    with pytest.raises(ConfigError, match="0 parts"):
        Budget.parse("10m").split(0)
    assert warmup_cosine(0.0, 0.1) == 0.0
    assert warmup_cosine(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(1.0, 0.1) == pytest.approx(0.0)
    assert 0.4 < warmup_cosine(0.55, 0.1) < 0.6


def test_fit_writes_curve_and_learns(digits, tmp_path):
    m = _method(digits)
    res = Trainer(_cfg(budget="40steps"), out_dir=tmp_path, progress=False).fit(
        m, digits.train, None, digits.test
    )
    assert res.steps == 40
    rows = [json.loads(x) for x in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [14, 27, 40]
    for key in ("time_s", "wall_s", "images_seen", "val_acc", "val_f1", "lr", "epoch"):
        assert key in rows[-1]
    assert rows[-1]["images_seen"] == 40 * 64
    assert rows[-1]["val_acc"] > 0.5  # 40 steps on digits is far above chance (0.1)


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_resume_is_exact(digits, tmp_path, optimizer):
    cfg = _cfg(checkpoint_every_s=1e9, optimizer=optimizer)
    whole = _method(digits)
    Trainer(cfg, out_dir=tmp_path / "a", progress=False).fit(whole, digits.train, None, digits.test)

    part = _method(digits)
    r1 = Trainer(cfg, out_dir=tmp_path / "b", progress=False).fit(
        part, digits.train, None, digits.test, stop_at_step=5
    )
    assert r1.stopped_early and r1.steps == 5
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 5
    fresh = _method(digits, seed=123)  # different init: everything must come from the file
    r2 = Trainer(cfg, out_dir=tmp_path / "b", progress=False).fit(
        fresh, digits.train, None, digits.test
    )
    assert r2.steps == 12
    a, b = whole.state_dict(), fresh.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    curve_a = [json.loads(x)["val_acc"] for x in (tmp_path / "a/curve.jsonl").open()]
    curve_b = [json.loads(x)["val_acc"] for x in (tmp_path / "b/curve.jsonl").open()]
    assert curve_a == curve_b
    last_a, last_b = (load_embeddings(tmp_path / r / "embeddings/step_000012.npz") for r in "ab")
    assert np.array_equal(last_a["features"], last_b["features"])


def test_resume_with_other_settings_is_refused(digits, tmp_path):
    Trainer(_cfg(), out_dir=tmp_path, progress=False).fit(
        _method(digits), digits.train, None, None, stop_at_step=2
    )
    with pytest.raises(CheckpointError, match="other training settings"):
        Trainer(_cfg(batch_size=32), out_dir=tmp_path, progress=False).fit(
            _method(digits), digits.train, None, None
        )


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_a_checkpoint_from_before_a_setting_existed(digits, tmp_path, optimizer):
    """Settings added later take their defaults for an older checkpoint, so it resumes;
    an older LARS run was unclipped, so resuming it clipped is refused."""
    cfg = _cfg(optimizer=optimizer)
    Trainer(cfg, out_dir=tmp_path, progress=False).fit(
        _method(digits), digits.train, None, None, stop_at_step=2
    )
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["train_config"]["lars_clip"], state["train_config"]["lars_eta"]
    for group in state["optimizer"]["param_groups"]:  # as the optimiser saved them then
        group.pop("clip", None)
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    resume = Trainer(cfg, out_dir=tmp_path, progress=False)
    if optimizer == "sgd":
        assert resume.fit(_method(digits), digits.train, None, None).steps == 12
    else:
        with pytest.raises(CheckpointError, match="other training settings"):
            resume.fit(_method(digits), digits.train, None, None)
        unclipped = _cfg(optimizer=optimizer, lars_clip=False)
        done = Trainer(unclipped, out_dir=tmp_path, progress=False)
        assert done.fit(_method(digits), digits.train, None, None).steps == 12


def test_time_budget_stops_on_time(digits):
    res = Trainer(_cfg(budget="2s", evals=1), progress=False).fit(
        _method(digits), digits.train, None, digits.test
    )
    assert 1.5 <= res.train_seconds <= 2.5
    assert res.steps > 20


def test_ema_weights_are_exported(digits):
    m = _method(digits)
    res = Trainer(_cfg(ema=0.9), progress=False).fit(m, digits.train, None, digits.test)
    assert res.steps == 12
    m2 = _method(digits)
    Trainer(_cfg(ema=0.0), progress=False).fit(m2, digits.train, None, digits.test)
    w1 = m.network.head.weight
    w2 = m2.network.head.weight
    assert not torch.allclose(w1, w2)  # averaged weights differ from the raw ones


def test_a_classifier_run_saves_the_embeddings_of_the_network_it_evaluates(digits, tmp_path):
    """Each evaluation saves the val subset's features of the network whose accuracy the
    curve records (here the EMA weights, exported into the method's network at the end)."""
    m = _method(digits)
    res = Trainer(_cfg(ema=0.9, seed=3), out_dir=tmp_path, progress=False).fit(
        m, digits.train, None, digits.test
    )
    files = sorted((tmp_path / "embeddings").glob("step_*.npz"))
    assert [f.name for f in files] == [f"step_{r['step']:06d}.npz" for r in res.curve]
    last = load_embeddings(files[-1])
    g = torch.Generator().manual_seed(3)
    subset = torch.randperm(len(digits.test), generator=g)[:MAX_POINTS].sort().values
    assert last["features"].shape == (len(subset), m.network.feature_dim)
    assert last["labels"].tolist() == digits.test.labels[subset].tolist()
    assert last["class_names"] == digits.test.class_names
    assert last["step"] == 12 and last["val_acc"] == res.curve[-1]["val_acc"]
    assert "knn_acc" not in last  # a classifier run has no kNN monitor
    want = extract_features(m.network, digits.test.images[subset]).numpy()
    assert np.allclose(last["features"], want, rtol=1e-2, atol=1e-2)


def test_saving_embeddings_changes_no_result_and_can_be_turned_off(digits, tmp_path):
    curves = []
    for save in (True, False):
        trainer = Trainer(_cfg(save_embeddings=save), out_dir=tmp_path / str(save), progress=False)
        res = trainer.fit(_method(digits), digits.train, None, digits.test)
        curves.append([r["val_acc"] for r in res.curve])
    assert curves[0] == curves[1]
    assert (tmp_path / "True" / "embeddings").is_dir()
    assert not (tmp_path / "False" / "embeddings").exists()
    net = _method(digits).network
    for precision in ("fp32", "bf16"):  # one pass gives predict_logits's logits exactly
        feats, logits = features_and_logits(
            net, digits.test.images, batch_size=100, precision=precision
        )
        want = predict_logits(net, digits.test.images, batch_size=100, precision=precision)
        assert torch.equal(logits, want) and feats.shape == (len(digits.test), net.feature_dim)


def test_fresh_start_removes_the_old_runs_saved_embeddings(digits, tmp_path):
    Trainer(_cfg(), out_dir=tmp_path, progress=False).fit(
        _method(digits), digits.train, None, digits.test
    )
    assert len(list((tmp_path / "embeddings").glob("step_*.npz"))) == 3
    (tmp_path / "embeddings" / "tsne.png").write_bytes(b"a picture drawn from them")
    fresh_start(tmp_path)
    assert not list((tmp_path / "embeddings").glob("step_*.npz"))  # no stale last step
    assert (tmp_path / "embeddings" / "tsne.png").exists()


class _Exploding(Supervised):
    def step(self, batch):
        out = super().step(batch)
        if batch.step >= 3:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_nan_loss_is_a_one_line_error_and_keeps_the_checkpoint(digits, tmp_path):
    torch.manual_seed(0)
    m = _Exploding(Network("convnet", 1, 8, 10))
    with pytest.raises(DivergenceError, match="step 3") as e:
        Trainer(_cfg(checkpoint_every_s=0.0), out_dir=tmp_path, progress=False).fit(
            m, digits.train, None, None
        )
    assert "\n" not in str(e.value)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3


def test_empty_labeled_set_is_refused(digits):
    empty = digits.train.subset([])
    with pytest.raises(ConfigError, match="needs labeled images"):
        Trainer(_cfg(), progress=False).fit(_method(digits), empty, None, None)


def test_batch_must_split_over_processes():
    from fewlabels.core.device import DistInfo

    with pytest.raises(ConfigError, match="split evenly"):
        Trainer(_cfg(batch_size=5), dist_info=DistInfo(0, 2, 0), progress=False)
