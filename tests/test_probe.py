"""Evaluation protocols: kNN, the logistic-regression probe, fine-tuning with frozen blocks,
the online probe wrapper, the loop's batch sizing for it, and the feature cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fewlabels.core.errors import ConfigError
from fewlabels.evaluate.features import cached_features, extract_features, load_encoder
from fewlabels.evaluate.knn import knn_predict, knn_scores
from fewlabels.evaluate.probe import fit_logistic, linear_probe
from fewlabels.methods import Batch, build_method
from fewlabels.methods.base import Method
from fewlabels.methods.online_probe import OnlineProbe, with_online_probe
from fewlabels.models import Network
from fewlabels.models.freeze import backbone_blocks, freeze_backbone
from fewlabels.train.probing import ProbeConfig, run_probe

torch.set_num_threads(1)


# -- kNN --------------------------------------------------------------------------------
def _knn_loop(bank, bank_y, queries, num_classes, k, t):
    """The textbook procedure, one query at a time, in plain Python."""
    preds, all_scores = [], []
    for q in queries.tolist():
        qn = np.asarray(q) / np.linalg.norm(q)
        sims = []
        for j, b in enumerate(bank.tolist()):
            bn = np.asarray(b) / np.linalg.norm(b)
            sims.append((float(qn @ bn), j))
        sims.sort(key=lambda s: -s[0])
        scores = [0.0] * num_classes
        for s, j in sims[: min(k, len(sims))]:
            scores[int(bank_y[j])] += float(np.exp(s / t))
        all_scores.append(scores)
        preds.append(int(np.argmax(scores)))
    return preds, np.asarray(all_scores)


def test_knn_matches_a_loop_implementation():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(23, 5, generator=g)
    bank_y = torch.randint(0, 3, (23,), generator=g)
    queries = torch.randn(9, 5, generator=g)
    for k, t in ((1, 0.1), (5, 0.1), (7, 0.5), (200, 0.1)):  # 200: capped at the bank's 23
        want_pred, want_scores = _knn_loop(bank, bank_y, queries, 3, k, t)
        scores = knn_scores(bank, bank_y, queries, 3, k=k, temperature=t, chunk=4)
        np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-4)
        assert knn_predict(bank, bank_y, queries, 3, k=k, temperature=t).tolist() == want_pred


def test_knn_hand_worked_example():
    # two neighbours at cosine 1.0 (class 0) and 0.0 (class 1), k=2, T=1: e^1 vs e^0
    bank = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    s = knn_scores(bank, y, torch.tensor([[2.0, 0.0]]), 2, k=2, temperature=1.0)
    assert s[0].tolist() == pytest.approx([np.e, 1.0])


# -- logistic regression probe ----------------------------------------------------------
def test_logistic_probe_separates_separable_features():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(4, 16, generator=g) * 4
    y = torch.arange(4).repeat_interleave(30)
    x = centres[y] + 0.3 * torch.randn(len(y), 16, generator=g)
    yv = torch.arange(4).repeat_interleave(10)
    xv = centres[yv] + 0.3 * torch.randn(len(yv), 16, generator=g)
    w, b, info = linear_probe(x * 7 + 3, y, 4, xv * 7 + 3, yv)  # scale/shift: standardised
    assert ((xv * 7 + 3) @ w.T + b).argmax(1).eq(yv).float().mean() == 1.0
    assert info["weight_decay"] in [r["weight_decay"] for r in info["grid"]]


def test_logistic_probe_matches_sklearn_on_digits():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target
    xtr, ytr, xte, yte = x[:1000], y[:1000], x[1000:], y[1000:]
    scaler = StandardScaler().fit(xtr)
    ref = LogisticRegression(max_iter=2000).fit(scaler.transform(xtr), ytr)
    ref_acc = (ref.predict(scaler.transform(xte)) == yte).mean()
    # no val: the probe picks its weight decay on a held-out 20% and refits
    w, b, _ = linear_probe(torch.from_numpy(xtr), torch.from_numpy(ytr), 10)
    acc = float(((torch.from_numpy(xte) @ w.T + b).argmax(1).numpy() == yte).mean())
    assert ref_acc > 0.85
    assert abs(acc - ref_acc) < 0.04, (acc, ref_acc)


def test_fit_logistic_reaches_the_penalised_optimum():
    # At the optimum the gradient of mean CE + wd/2 ||W||^2 vanishes.
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g)
    w, b = fit_logistic(x, y, 3, 0.1, max_iter=500)
    w.requires_grad_(True)
    b.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.05 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    assert gw.abs().max() < 1e-3 and gb.abs().max() < 1e-3


# -- encoders on disk ---------------------------------------------------------------------
def _digits_encoder(path: Path, num_classes: int = 10, seed: int = 0) -> Network:
    from fewlabels.train.run import export_model

    torch.manual_seed(seed)
    net = Network("convnet", in_channels=1, image_size=8, num_classes=num_classes)
    export_model(path, net, [str(i) for i in range(10)], {"method": "random"})
    return net


def test_finetune_freezes_exactly_the_blocks_it_should(tmp_path):
    ckpt = tmp_path / "model.pt"
    _digits_encoder(ckpt)
    before, _ = load_encoder(ckpt)
    res = run_probe(
        ProbeConfig(
            checkpoint=str(ckpt),
            data="digits",
            labels_per_class=5,
            protocol="finetune",
            finetune_blocks=1,
            budget="6steps",
            out=str(tmp_path / "ft"),
            device="cpu",
        ),
        log=lambda s: None,
        progress=False,
    )
    after, _ = load_encoder(tmp_path / "ft" / "model.pt")
    blocks_b, blocks_a = backbone_blocks(before.backbone), backbone_blocks(after.backbone)
    assert len(blocks_b) == 4
    for i, (bb, ba) in enumerate(zip(blocks_b, blocks_a, strict=True)):
        sb, sa = bb.state_dict(), ba.state_dict()  # parameters and BatchNorm statistics
        same = all(torch.equal(sb[k], sa[k]) for k in sb)
        assert same == (i < 3), f"block {i}"
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["protocol"] == "finetune" and m["labeled"] == 50 and m["steps"] == 6
    assert res.metrics.n == m["n"] and len(res.curve) >= 1


def test_freeze_backbone_bounds_and_full():
    net = Network("convnet", in_channels=1, image_size=8, num_classes=3)
    assert freeze_backbone(net.backbone, None) == []
    assert all(p.requires_grad for p in net.parameters())
    frozen = freeze_backbone(net.backbone, 0)
    assert len(frozen) == 4 and not any(p.requires_grad for p in net.backbone.parameters())
    with pytest.raises(ConfigError, match=r"0\.\.4"):
        freeze_backbone(net.backbone, 5)


def test_linear_and_knn_probe_on_a_checkpoint_and_the_feature_cache(tmp_path):
    ckpt = tmp_path / "model.pt"
    _digits_encoder(ckpt)
    base = dict(checkpoint=str(ckpt), data="digits", labels_per_class=10, device="cpu")
    lin = run_probe(ProbeConfig(**base, out=str(tmp_path / "lin")), log=lambda s: None)
    m = json.loads((tmp_path / "lin" / "metrics.json").read_text())
    assert m["protocol"] == "linear" and m["labeled"] == 100 and m["features_cached"] == 0
    assert m["accuracy"] == pytest.approx(lin.metrics.accuracy)
    assert 0.3 < lin.metrics.accuracy <= 1.0  # random conv features of digits: far above 0.1
    # the exported classifier reproduces the probe's test predictions
    from fewlabels.evaluate.inference import evaluate_model, load_model
    from fewlabels.train.run import RunConfig, prepare_data

    _, splits = prepare_data(RunConfig(data="digits", labels_per_class=10))
    ev = evaluate_model(load_model(tmp_path / "lin" / "model.pt"), splits.test)
    assert ev.accuracy == pytest.approx(lin.metrics.accuracy, abs=0.01)
    # second run: every feature set comes from the cache, same answer
    run_probe(ProbeConfig(**base, out=str(tmp_path / "lin2")), log=lambda s: None)
    m2 = json.loads((tmp_path / "lin2" / "metrics.json").read_text())
    assert m2["features_cached"] == 3 and m2["accuracy"] == m["accuracy"]
    knn = run_probe(ProbeConfig(**base, protocol="knn", out=str(tmp_path / "knn")))
    assert json.loads((tmp_path / "knn" / "metrics.json").read_text())["k"] == 100
    assert 0.3 < knn.metrics.accuracy <= 1.0


def test_feature_cache_keys_on_weights_and_images(tmp_path):
    net = Network("convnet", in_channels=1, image_size=8, num_classes=0).eval()
    imgs = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    f1, hit1 = cached_features(net, imgs, cache_dir=tmp_path)
    f2, hit2 = cached_features(net, imgs, cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True) and torch.equal(f1, f2)
    assert torch.allclose(f1, extract_features(net, imgs), atol=1e-6)
    _, hit3 = cached_features(net, imgs[:6], cache_dir=tmp_path)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    _, hit4 = cached_features(net, imgs, cache_dir=tmp_path)
    assert (hit3, hit4) == (False, False)


def test_network_fingerprint_ignores_memory_format():
    from fewlabels.evaluate.features import network_fingerprint

    torch.manual_seed(0)
    net = Network("fastnet", in_channels=3, image_size=16, num_classes=2)  # has 1x1 kernels
    fp = network_fingerprint(net)
    assert network_fingerprint(net.to(memory_format=torch.channels_last)) == fp
    with torch.no_grad():
        net.head.bias[0] += 1e-3
    assert network_fingerprint(net) != fp


# -- online probe -------------------------------------------------------------------------
def _ssl(name: str = "simclr") -> Method:
    torch.manual_seed(0)
    net = Network("convnet", in_channels=1, image_size=8, num_classes=4)
    return build_method(name, net, projector=(32, 16))


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    v = (torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 1, 8, 8, generator=g))
    return Batch(
        labeled=[torch.rand(5, 1, 8, 8, generator=g)],
        labels=torch.randint(0, 4, (5,), generator=g),
        unlabeled=[v],
    )


def _grads(m: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in m.named_parameters()}


def test_online_probe_trains_only_the_head():
    method = _ssl()
    wrapped = with_online_probe(method)
    assert isinstance(wrapped, OnlineProbe) and wrapped.kind == "self-supervised"
    assert wrapped.views["labeled"] == ("weak",) and wrapped.primary == "unlabeled"
    assert wrapped.network is method.network
    # the inner method alone: the head gets no gradient
    torch.manual_seed(5)
    method.zero_grad()
    method.step(_batch())["loss"].backward()
    inner = _grads(method)
    assert inner["network.head.weight"] is None
    # with the probe: identical encoder/projector gradients, and a head gradient
    torch.manual_seed(5)
    method.zero_grad()
    out = wrapped.step(_batch())
    assert {"loss", "probe_loss", "probe_acc"} <= set(out)
    out["loss"].backward()
    both = _grads(method)
    for name, g in inner.items():
        if name.startswith("network.head."):
            continue
        assert g is not None and torch.equal(g, both[name]), name
    assert both["network.head.weight"] is not None
    assert both["network.head.weight"].abs().sum() > 0
    # the probe does not touch BatchNorm statistics: eval-mode features
    assert method.network.training


def test_online_probe_keeps_the_inner_checkpoint_keys():
    method = _ssl("byol")
    wrapped = with_online_probe(method)
    assert list(wrapped.state_dict()) == list(method.state_dict())
    other = with_online_probe(_ssl("byol"))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    wrapped.load_state_dict(other.state_dict())
    assert torch.equal(method.network.head.weight, other.network.head.weight)
    assert with_online_probe(build_method("supervised", method.network)).name == "supervised"


def test_two_view_methods_refuse_a_one_view_policy():
    net = Network("convnet", in_channels=1, image_size=8, num_classes=4)
    for name in ("simclr", "barlow_twins", "vicreg", "byol", "moco"):
        with pytest.raises(ConfigError, match="two-view"):
            build_method(name, net, augment="weak")


def test_loop_sizes_the_probe_batch_from_the_unlabeled_batch(tmp_path):
    """primary="unlabeled": --batch-size counts unlabeled images; labeled = B / ratio."""
    from fewlabels.data.imageset import ImageSet
    from fewlabels.train.loop import TrainConfig, Trainer

    seen: list[tuple[int, int]] = []

    class Spy(OnlineProbe):
        def step(self, batch):
            seen.append((len(batch.labeled[0]), len(batch.unlabeled[0][0])))
            return super().step(batch)

    method = Spy(_ssl())
    g = torch.Generator().manual_seed(0)
    lab = ImageSet(
        torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.arange(20) % 4,
        ["a", "b", "c", "d"],
    )
    unl = lab.unlabel()
    cfg = TrainConfig(budget="2steps", batch_size=14, unlabeled_batch_ratio=7.0, evals=1)
    fit = Trainer(cfg, out_dir=tmp_path, progress=False).fit(method, lab, unl, lab)
    assert seen == [(2, 14), (2, 14)]
    row = fit.curve[-1]
    assert row["knn_acc"] is not None and row["val_acc"] is not None
    saved = sorted((tmp_path / "embeddings").glob("step_*.npz"))
    assert [p.name for p in saved] == ["step_000002.npz"]
    z = np.load(saved[0])
    assert z["features"].shape == (20, method.network.feature_dim)
    assert z["labels"].tolist() == lab.labels.tolist()
