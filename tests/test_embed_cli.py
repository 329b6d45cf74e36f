"""pretrain -> probe -> embed through the command line on digits, and their one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from cli_helpers import one_line_error as _one_line_error

from fewlabels.core.checkpoint import save_checkpoint
from fewlabels.core.errors import ConfigError
from fewlabels.evaluate.embedding import project_2d, umap_2d


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pre")
    cfg = out / "run.yaml"
    cfg.write_text("method_kwargs:\n  projector: [64, 32]\n")
    r = invoke(
        "pretrain", "--data", "digits", "--labels-per-class", "10", "--budget", "16steps",
        "--batch-size", "32", "--evals", "2", "--config", str(cfg), "--out", str(out),
        "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output and "test macro-F1" in r.output
    return out


def test_pretrain_run_has_monitor_curve_and_embeddings(pretrained):
    rows = [json.loads(x) for x in (pretrained / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [8, 16]
    for r in rows:
        assert 0.0 <= r["knn_acc"] <= 1.0 and 0.0 <= r["val_acc"] <= 1.0
        assert r["time_s"] > 0 and r["wall_s"] >= r["time_s"]
    saved = sorted(p.name for p in (pretrained / "embeddings").glob("*.npz"))
    assert saved == ["step_000008.npz", "step_000016.npz"]
    cfg = json.loads((pretrained / "config.json").read_text())
    assert cfg["method"] == "simclr" and cfg["labels_per_class"] == 10
    # the online probe's head is in the exported model: a usable classifier
    model = torch.load(pretrained / "model.pt", weights_only=True)
    assert model["network_config"]["num_classes"] == 10
    assert model["state_dict"]["head.weight"].abs().sum() > 0


@pytest.mark.parametrize("protocol", ["linear", "knn", "finetune"])
def test_probe_protocols(pretrained, tmp_path, protocol):
    args = ["probe", str(pretrained), "--labels-per-class", "10", "--protocol", protocol]
    args += ["--out", str(tmp_path), "--no-progress"]
    if protocol == "finetune":
        args += ["--finetune-blocks", "1", "--budget", "4steps"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["protocol"] == protocol and m["labeled"] == 100 and m["n"] == 360
    assert f"test accuracy  {m['accuracy']:.4f}" in r.output
    assert f"test macro-F1  {m['macro_f1']:.4f}" in r.output
    assert (tmp_path / "confusion.png").exists()
    if protocol == "finetune":  # its training saved its validation embeddings
        assert sorted((tmp_path / "finetune" / "embeddings").glob("step_*.npz"))
    else:
        assert m["accuracy"] > 0.4  # digits features + 100 labels: far above chance


def test_probe_defaults_to_the_run_data_and_folder(pretrained):
    r = invoke(
        "probe", str(pretrained / "model.pt"), "--protocol", "knn", "--labels-per-class", "5"
    )
    assert r.exit_code == 0, r.output
    m = json.loads((pretrained / "probe-knn" / "metrics.json").read_text())
    assert m["labeled"] == 50


def test_embed_draws_one_panel_per_saved_point(pretrained, tmp_path):
    r = invoke("embed", str(pretrained), "--plot", "tsne", "--out", str(tmp_path))
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["tsne.png", "tsne_step_000008.png", "tsne_step_000016.png"]
    assert "test accuracy" in r.output


def test_embed_draws_the_points_a_supervised_run_saved(tmp_path):
    run = tmp_path / "run"
    r = invoke(
        "train", "--data", "digits", "--labels-per-class", "10", "--budget", "6steps",
        "--batch-size", "32", "--evals", "2", "--out", str(run), "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = sorted(p.name for p in (run / "embeddings").glob("*.npz"))
    assert saved == ["step_000003.npz", "step_000006.npz"]
    r = invoke("embed", str(run), "--out", str(tmp_path / "pics"))
    assert r.exit_code == 0, r.output
    assert "2 saved points" in r.output
    names = sorted(p.name for p in (tmp_path / "pics").glob("*.png"))
    assert names == ["tsne.png", "tsne_step_000003.png", "tsne_step_000006.png"]


def test_embed_umap_panels_and_a_missing_extra(pretrained, tmp_path, monkeypatch):
    pytest.importorskip("umap")
    r = invoke("embed", str(pretrained), "--plot", "umap", "--out", str(tmp_path))
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["umap.png", "umap_step_000008.png", "umap_step_000016.png"]
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    out = tmp_path / "none"
    _one_line_error(
        invoke("embed", str(pretrained), "--plot", "umap", "--out", str(out)), "fewlabels[umap]"
    )
    assert not out.exists()


def test_umap_keeps_separated_clusters_apart():
    pytest.importorskip("umap")
    from sklearn.neighbors import KNeighborsClassifier

    g = np.random.default_rng(0)
    centres = g.normal(0, 10, (3, 20))
    labels = np.repeat(np.arange(3), 60)
    x = centres[labels] + g.normal(0, 1, (180, 20))
    import numba

    threads = torch.get_num_threads()
    mine = numba.config.NUMBA_NUM_THREADS + 1  # not the count numba's layer would set
    torch.set_num_threads(mine)
    try:
        xy = umap_2d(x, seed=0)
        assert torch.get_num_threads() == mine  # numba's OpenMP layer does not leak into torch
    finally:
        torch.set_num_threads(threads)
    assert xy.shape == (180, 2) and np.isfinite(xy).all()
    knn = KNeighborsClassifier(5).fit(xy[::2], labels[::2])
    assert knn.score(xy[1::2], labels[1::2]) > 0.95


def test_project_2d_refuses_an_unknown_picture():
    with pytest.raises(ConfigError, match="unknown plot 'pca'"):
        project_2d(np.zeros((10, 4)), "pca")


def test_embed_a_bare_checkpoint_on_data(pretrained, tmp_path):
    r = invoke("embed", str(pretrained / "model.pt"), "--data", "digits", "--out", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tsne_checkpoint.png").exists()


def test_one_line_errors(pretrained, tmp_path):
    _one_line_error(invoke("pretrain", "--method", "nope", "--out", str(tmp_path)), "unknown")
    _one_line_error(
        invoke("pretrain", "--method", "supervised", "--out", str(tmp_path)),
        "not self-supervised",
    )
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("just some text\n")
    _one_line_error(invoke("probe", str(not_ckpt), "--data", "digits"), "not a")
    empty = tmp_path / "empty.pt"
    save_checkpoint({"kind": "model", "class_names": ["a"]}, empty)
    _one_line_error(invoke("probe", str(empty), "--data", "digits"), "no encoder")
    _one_line_error(invoke("probe", str(pretrained), "--protocol", "svm"), "protocol")
    _one_line_error(
        invoke("probe", str(pretrained), "--finetune-blocks", "9", "--protocol", "finetune"),
        "blocks",
    )
    _one_line_error(invoke("embed", str(pretrained), "--plot", "pca"), "choose from tsne, umap")
    _one_line_error(invoke("embed", str(empty)), "--data")
    _one_line_error(
        invoke("probe", str(pretrained), "--data", "npz:" + str(tmp_path / "missing.npz")),
        "missing.npz",
    )


def test_example_vicreg_config_with_flag_overrides(tmp_path):
    """examples/vicreg-cifar10.yaml is a valid pretraining config; flags beat its settings."""
    example = Path(__file__).resolve().parents[1] / "examples" / "vicreg-cifar10.yaml"
    r = invoke(
        "pretrain", "--config", str(example), "--data", "digits", "--budget", "3steps",
        "--batch-size", "64", "--evals", "1", "--grad-clip", "0.5", "--out", str(tmp_path),
        "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["method"] == "vicreg" and cfg["backbone"] == "fastnet-s"
    assert cfg["backbone_kwargs"] == {"widths": [32, 128, 256]}
    assert cfg["method_kwargs"]["projector"] == [1024, 1024, 1024]
    train = cfg["train"]
    assert (train["optimizer"], train["grad_clip"], train["budget"]) == ("lars", 0.5, "3steps")
    assert train["weight_decay"] == 1e-4 and train["batch_size"] == 64


def test_the_combined_picture_wraps_panels_into_rows(tmp_path):
    from matplotlib.image import imread

    from fewlabels.evaluate.embedding import PANELS_PER_ROW, plot_panels

    rng = np.random.default_rng(0)

    def picture(n: int) -> tuple[int, ...]:
        points = [
            {
                "name": f"step_{i}",
                "features": rng.normal(size=(40, 8)).astype(np.float32),
                "labels": np.arange(40) % 3,
                "class_names": ["a", "b", "c"],
                "step": float(i),
            }
            for i in range(n)
        ]
        paths = plot_panels(points, tmp_path / str(n), plot="tsne")
        assert len(paths) == n + 1 and all(p.is_file() for p in paths)
        return imread(tmp_path / str(n) / "tsne.png").shape

    full_row, wrapped = picture(PANELS_PER_ROW), picture(PANELS_PER_ROW + 2)
    # two more panels start a second row: as wide as one full row, and taller
    assert wrapped[1] == full_row[1] and wrapped[0] > full_row[0]
