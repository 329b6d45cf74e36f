"""The Python API (fewlabels.load / split / pretrain / probe / train / run / Study): real
results on digits with tiny budgets, no file without ``out``, the CLI's run folder with it,
and the same numbers as the CLI's code path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fewlabels
from fewlabels import ConfigError, DataError, Dataset, ImageSet, RunConfig, TrainConfig
from fewlabels.data.settings import DataSettings, LabelSettings
from fewlabels.models.settings import BackboneSettings
from fewlabels.train.probing import ProbeConfig
from fewlabels.train.run import prepare_data, run_training

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def splits():
    return fewlabels.split(fewlabels.load("digits"), labels_per_class=5, seed=0)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A fresh working directory, temp directory and data cache, to check for writes."""
    dirs = {name: tmp_path / name for name in ("cwd", "tmp", "cache")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.chdir(dirs["cwd"])
    monkeypatch.setenv("TMPDIR", str(dirs["tmp"]))
    monkeypatch.setattr(tempfile, "tempdir", str(dirs["tmp"]))
    monkeypatch.setenv("FEWLABELS_CACHE", str(dirs["cache"]))
    return dirs


def _files(d: Path) -> list[str]:
    """Every file and folder under ``d``, but for the empty folder torch itself may make in
    the temp directory (``torchinductor_USER``, its compile cache's home)."""
    torch_own = [p for p in d.glob("torchinductor_*") if p.is_dir() and not any(p.iterdir())]
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p not in torch_own)


# -- data ------------------------------------------------------------------------------
def test_from_numpy_takes_every_layout_and_names_classes():
    rng = np.random.default_rng(0)
    hw = rng.integers(0, 256, (6, 9, 7), dtype=np.uint8)
    a = ImageSet.from_numpy(hw, labels=[0, 1, 2, 0, 1, -1])
    assert tuple(a.images.shape) == (6, 1, 9, 7) and a.class_names == ["0", "1", "2"]
    assert a.labels.tolist() == [0, 1, 2, 0, 1, -1] and a.ids[0] == "array:0"
    hwc = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    b = ImageSet.from_numpy(hwc, labels=["cat", "dog", "cat", "ant"])
    assert tuple(b.images.shape) == (4, 3, 9, 7)
    assert torch.equal(b.images[2, 1], torch.from_numpy(hwc[2, :, :, 1]))
    assert b.class_names == ["ant", "cat", "dog"] and b.labels.tolist() == [1, 2, 1, 0]
    chw = torch.from_numpy(rng.integers(0, 256, (3, 3, 5, 5), dtype=np.uint8))
    c = ImageSet.from_numpy(chw, class_names=["x", "y"])
    assert torch.equal(c.images, chw) and not bool(c.is_labeled.any())
    with pytest.raises(DataError, match="uint8"):
        ImageSet.from_numpy(hw.astype(np.float32) / 255)
    with pytest.raises(DataError, match="not in class_names: zebra"):
        ImageSet.from_numpy(hwc, labels=["cat", "dog", "cat", "zebra"], class_names=["cat", "dog"])


def test_from_folder_reads_class_subfolders(tmp_path):
    for k, name in enumerate(["a", "b"]):
        (tmp_path / name).mkdir()
        for i in range(3):
            px = np.full((10, 12, 3), 40 * k + i, np.uint8)
            Image.fromarray(px).save(tmp_path / name / f"{i}.png")
    s = ImageSet.from_folder(tmp_path, size=8)
    assert len(s) == 6 and s.class_names == ["a", "b"] and s.counts() == [3, 3]
    assert tuple(s.images.shape[1:]) == (3, 8, 8)


def test_dataset_from_sets_fingerprints_content_and_checks_classes():
    x = np.zeros((4, 8, 8), np.uint8)
    train = ImageSet.from_numpy(x, labels=[0, 1, 0, 1])
    d1 = Dataset.from_sets(train, test=ImageSet.from_numpy(x[:2], labels=[0, 1]))
    d2 = Dataset.from_sets(train, test=ImageSet.from_numpy(x[:2], labels=[0, 1]))
    x2 = x.copy()
    x2[0, 0, 0] = 1
    d3 = Dataset.from_sets(ImageSet.from_numpy(x2, labels=[0, 1, 0, 1]))
    assert d1.fingerprint == d2.fingerprint != d3.fingerprint
    assert d1.spec is None and "in-memory ImageSet (4 images, 1x8x8, 2 classes)" in d1.describe()
    with pytest.raises(DataError, match="classes"):
        Dataset.from_sets(train, test=ImageSet.from_numpy(x[:2], labels=[0, 1], class_names="xy"))
    with pytest.raises(ConfigError, match="in-memory data"):
        fewlabels.load(d1.describe())


def test_split_cuts_the_cli_splits(splits):
    # val auto: as many labels as the labeled set (5 per class)
    assert (len(splits.labeled), len(splits.val), len(splits.test)) == (50, 50, 360)
    _, cli = prepare_data(RunConfig(labels_per_class=5))
    assert torch.equal(splits.labeled.images, cli.labeled.images)
    assert torch.equal(splits.unlabeled.images, cli.unlabeled.images)


# -- tasks -----------------------------------------------------------------------------
def test_pretrain_and_probe_beat_chance_and_write_nothing(splits, sandbox):
    pre = fewlabels.pretrain(
        "simclr", splits.unlabeled, labeled=splits.labeled, val=splits.val,
        budget="30steps", batch_size=64, temperature=0.2,
    )  # fmt: skip
    assert isinstance(pre, fewlabels.PretrainResult) and pre.steps == 30
    assert pre.config.method_kwargs == {"temperature": 0.2} and pre.config.train.batch_size == 64
    assert "knn_acc" in pre.curve[-1] and pre.seconds > 0
    assert pre.encoder.features(splits.test.images[:3].float()).shape[0] == 3
    before = {k: v.clone() for k, v in pre.encoder.state_dict().items()}
    lin = fewlabels.probe(pre.encoder, splits.labeled, splits.test, protocol="linear")
    knn = fewlabels.probe(pre, splits.labeled, splits.test, val=splits.val, protocol="knn")
    assert lin.metrics.accuracy > 0.4 and knn.metrics.accuracy > 0.4  # chance: 0.1
    assert 0 < lin.metrics.macro_f1 <= 1 and lin.out_dir is None
    assert all(torch.equal(before[k], v) for k, v in pre.encoder.state_dict().items())
    assert all(_files(d) == [] for d in sandbox.values()), {
        k: _files(d) for k, d in sandbox.items()
    }


def test_train_semi_supervised_returns_metrics_and_writes_nothing(splits, sandbox):
    fit = fewlabels.train(
        "fixmatch", splits.labeled, unlabeled=splits.unlabeled, val=splits.val,
        test=splits.test, budget="8steps", batch_size=16, threshold=0.9,
    )  # fmt: skip
    assert isinstance(fit, fewlabels.TrainResult) and fit.steps == 8
    assert fit.metrics is not None and fit.metrics.n == len(splits.test)
    assert fit.config.method_kwargs == {"threshold": 0.9} and fit.curve[-1]["step"] == 8
    assert fit.network.num_classes == 10 if hasattr(fit.network, "num_classes") else True
    assert all(_files(d) == [] for d in sandbox.values())


def test_train_gives_the_cli_paths_numbers_and_its_run_folder(splits, tmp_path):
    settings = {"budget": "15steps", "batch_size": 16}
    cli = run_training(
        RunConfig(labels_per_class=5, train=settings, out=str(tmp_path / "cli")),
        progress=False, log=lambda s: None,
    )  # fmt: skip
    api = fewlabels.train(
        "supervised", splits.labeled, unlabeled=splits.unlabeled, val=splits.val,
        test=splits.test, train=TrainConfig(**settings), out=tmp_path / "api",
    )  # fmt: skip
    assert api.metrics is not None and cli.metrics is not None
    assert api.metrics.accuracy == cli.metrics.accuracy
    assert [r["loss"] for r in api.curve] == [r["loss"] for r in cli.curve]
    out = tmp_path / "api"
    assert {"config.json", "metrics.json", "model.pt", "split.json"} <= set(os.listdir(out))
    cfg = json.loads((out / "config.json").read_text())
    desc = "in-memory ImageSet (50 images, 1x8x8, 10 classes) + 1337 unlabeled + 360 test"
    assert cfg["data"] == desc
    assert len(cfg["data_fingerprint"]) == 64 and cfg["train"]["budget"] == "15steps"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == api.metrics.accuracy
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["data"] == "digits"
    # the saved model is the CLI's kind: it evaluates to the same accuracy
    from fewlabels.evaluate.inference import evaluate_model, load_model

    ev = evaluate_model(load_model(out / "model.pt"), splits.test)
    assert ev.accuracy == pytest.approx(api.metrics.accuracy, abs=1e-9)
    # a model.pt probes like an in-memory encoder, and probe out= writes its folder
    res = fewlabels.probe(out, splits.labeled, splits.test, protocol="knn", out=tmp_path / "p")
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["protocol"] == "knn"
    assert res.out_dir == tmp_path / "p"


def test_finetune_probe_on_in_memory_sets(splits, sandbox):
    net = fewlabels.train("supervised", splits.labeled, budget="5steps", batch_size=16).network
    res = fewlabels.probe(
        net, splits.labeled, splits.test, protocol="finetune", budget="4steps", finetune_blocks=1
    )
    assert res.extra["steps"] == 4 and res.extra["finetune_blocks"] == 1 and res.curve
    assert all(_files(d) == [] for d in sandbox.values())


def test_bad_api_input_is_one_line(splits):
    with pytest.raises(ConfigError, match="not self-supervised"):
        fewlabels.pretrain("supervised", splits.unlabeled)
    with pytest.raises(ConfigError, match="finetune_blocks"):
        fewlabels.probe(torch.nn.Identity(), splits.labeled, splits.test, finetune_blocks=1)
    with pytest.raises(ConfigError, match=r"^train\.lr: .*lr must be above 0"):
        fewlabels.train("supervised", splits.labeled, lr=-1.0)
    with pytest.raises(ConfigError, match=r"budget 'forever' is not understood"):
        fewlabels.run({"train": {"budget": "forever"}, "out": None})
    with pytest.raises(DataError, match="image shapes differ"):
        fewlabels.train(
            "supervised", splits.labeled, val=ImageSet.from_numpy(np.zeros((2, 4, 4), np.uint8))
        )
    with pytest.raises(ConfigError, match="select setting needs its selected splits"):
        run_training(RunConfig(select={"strategy": "random", "budget": 10}, out=None))


def test_run_takes_a_config_dict_and_writes_nothing_without_out(sandbox):
    res = fewlabels.run(
        {"labels_per_class": 3, "train": {"budget": "6steps", "batch_size": 16}, "out": None}
    )
    assert res.steps == 6 and res.metrics is not None and res.out_dir is None
    assert all(_files(d) == [] for d in sandbox.values())


def test_study_from_dict_runs_and_reports(tmp_path):
    study = fewlabels.Study.from_dict(
        {
            "name": "tiny",
            "data": "digits",
            "budget": "6steps",
            "train": {"batch_size": 16},
            "grid": {"labels_per_class": [3], "unlabeled": ["rest"], "seeds": [0]},
            "methods": [{"train": "supervised"}],
            "upper_bound": False,
        }
    )
    res = study.run(tmp_path / "s")
    assert res.report_dir == tmp_path / "s" and (tmp_path / "s" / "report.html").is_file()
    assert res.counts["done"] == len(res.rows) >= 1 and res.counts["failed"] == 0
    for row in res.rows:  # supervised cells: with the unlabeled amount, and with none
        assert row.status == "done" and row.method == "supervised" and row.n_labeled == 30
        assert row.accuracy is not None and 0 <= row.accuracy <= 1 and row.values["run_key"]


# -- the package -----------------------------------------------------------------------
def test_import_is_lazy_and_train_is_both_package_and_function():
    code = (
        "import sys, fewlabels; print('torch' in sys.modules); "
        "import fewlabels.train.loop; print(callable(fewlabels.train), "
        "fewlabels.train.loop.TrainConfig is fewlabels.TrainConfig)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr
    assert set(fewlabels.__all__) <= set(dir(fewlabels))
    with pytest.raises(AttributeError):
        fewlabels.no_such_name  # noqa: B018


def test_configs_compose_the_shared_settings():
    for part in (DataSettings, LabelSettings, BackboneSettings):
        assert set(part.model_fields) <= set(RunConfig.model_fields)
    assert set(DataSettings.model_fields) | set(LabelSettings.model_fields) <= set(
        ProbeConfig.model_fields
    )
    # a flat config.json of an older run still loads, defaults and refusals unchanged
    old = {
        **{"data": "digits", "test": None, "labels_per_class": 4, "backbone": "convnet"},
        **{"stem": "auto", "backbone_kwargs": {}, "method": "supervised", "select": None},
        **{"train": {"budget": "5steps"}, "device": "cpu", "strict": False, "out": "runs/x"},
    }
    cfg = RunConfig(**old)
    assert cfg.val == "auto" and cfg.unlabeled == "rest" and cfg.labels_per_class == 4
    with pytest.raises(ValueError, match="extra"):
        RunConfig(**old, bogus=1)
    with pytest.raises(ValueError, match="data"):
        ProbeConfig(checkpoint="x", out="y")  # a probe names its data


def test_a_run_folder_of_in_memory_data_resumes_only_with_the_same_images(splits, tmp_path):
    from fewlabels.api import _as_splits
    from fewlabels.core.errors import CheckpointError

    cfg = RunConfig(train={"budget": "6steps", "batch_size": 16}, out=str(tmp_path / "r"))
    same = (splits.labeled, None, splits.val, splits.test)
    run_training(cfg, progress=False, log=lambda s: None, data=_as_splits(same), stop_at_step=3)
    assert (tmp_path / "r" / "checkpoint.pt").exists()
    flipped = ImageSet(
        splits.labeled.images.flip(-1).contiguous(),
        splits.labeled.labels,
        splits.labeled.class_names,
    )
    other = _as_splits((flipped, None, splits.val, splits.test))  # same sizes, other pixels
    with pytest.raises(CheckpointError, match="data_fingerprint"):
        run_training(cfg, progress=False, log=lambda s: None, data=other)
    res = run_training(cfg, progress=False, log=lambda s: None, data=_as_splits(same))
    assert res.steps == 6


def test_study_from_yaml_reads_the_example():
    study = fewlabels.Study.from_yaml(Path(__file__).parents[1] / "examples" / "digits.yaml")
    assert study.name == "digits-demo" and len(study.plan.cells) > 10


def test_fingerprint_of_images_kept_on_disk_is_that_of_the_same_images_in_memory(
    tmp_path, monkeypatch
):
    from fewlabels.data import mapped

    monkeypatch.setattr(mapped, "lazy_min_bytes", 1)  # every subset stays on disk
    for c in "ab":
        (tmp_path / c).mkdir()
        for i in range(5):
            px = np.full((8, 8, 3), i * 20 + (c == "b") * 7, np.uint8)
            Image.fromarray(px).save(tmp_path / c / f"{i}.png")
    on_disk = ImageSet.from_folder(tmp_path).subset([0, 2, 4, 6])
    assert isinstance(on_disk.images, mapped.MappedRows)
    in_memory = ImageSet(on_disk.images[:].clone(), on_disk.labels, on_disk.class_names)
    assert on_disk.fingerprint() == in_memory.fingerprint()
    changed = in_memory.images.clone()
    changed[0, 0, 0, 0] += 1
    assert ImageSet(changed, in_memory.labels, in_memory.class_names).fingerprint() != (
        in_memory.fingerprint()
    )
