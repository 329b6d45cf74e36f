"""Progress bars outside the training loop: silent when off or when stderr is not a
terminal, silent for quick work, and reporting a count and the time left for a long loop
(cache decode, feature extraction, t-SNE panels, selection, sampling)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fewlabels.cli import app
from fewlabels.core import progress as progress_mod
from fewlabels.core.progress import Progress, configure_progress, progress_shown, track
from fewlabels.data import load_dataset
from fewlabels.evaluate.embedding import project_sequence
from fewlabels.evaluate.features import extract_features
from fewlabels.models import Network

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _default_progress():
    configure_progress()
    yield
    configure_progress()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _slow_loop(n: int = 12, **kwargs) -> None:
    for _ in track(range(n), "slow work", **kwargs):
        time.sleep(0.02)


def test_silent_when_stderr_is_not_a_terminal(monkeypatch):
    err = io.StringIO()  # isatty() is False, as in a log file or CI
    monkeypatch.setattr(sys, "stderr", err)
    assert not progress_shown(True)
    _slow_loop(delay_s=0.0)
    assert err.getvalue() == ""


def test_reports_on_a_terminal_for_a_long_enough_loop(monkeypatch):
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    assert progress_shown(True) and progress_shown(None)
    _slow_loop(delay_s=0.05)
    text = err.getvalue()
    assert "slow work" in text and "12/12" in text


def test_quick_work_and_turned_off_bars_say_nothing(monkeypatch):
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    _slow_loop(n=3, delay_s=30.0)  # done before the bar would appear
    _slow_loop(enabled=False, delay_s=0.0)
    configure_progress(False)  # --no-progress: every bar left to its default is off
    _slow_loop(delay_s=0.0)
    assert err.getvalue() == ""


def test_forced_on_a_stream_with_elapsed_and_time_left():
    buf = io.StringIO()
    with Progress("decoding", 40, stream=buf, delay_s=0.0, unit="images") as bar:
        for _ in range(40):
            time.sleep(0.005)
            bar.advance()
    text = buf.getvalue()
    assert "decoding" in text and "40/40" in text and "images" in text
    assert "0:00:0" in text  # the elapsed and remaining clocks


def test_feature_extraction_and_tsne_panels_report(tmp_path):
    buf = io.StringIO()
    configure_progress(True, stream=buf, delay_s=0.0)
    net = Network("convnet", in_channels=1, image_size=8, num_classes=3)
    images = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8)
    feats = extract_features(net, images, batch_size=64)
    assert feats.shape[0] == 300
    assert "features" in buf.getvalue() and "300/300" in buf.getvalue()
    rng = np.random.default_rng(0)
    project_sequence([rng.normal(size=(30, 4)) for _ in range(2)])
    assert "tsne panels" in buf.getvalue() and "2/2" in buf.getvalue()
    buf.truncate(0)
    extract_features(net, images, batch_size=64, progress=False)
    assert buf.getvalue().strip("\x00") == ""


def test_decoding_a_folder_into_the_cache_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWLABELS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        d = tmp_path / "imgs" / "train" / cls
        d.mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(d / f"{i}.png")
    buf = io.StringIO()
    configure_progress(True, stream=buf, delay_s=0.0)
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert len(ds.train) == 30
    assert "decoding imgs" in buf.getvalue() and "30/30" in buf.getvalue()


def test_no_progress_flag_turns_the_default_off(tmp_path):
    sheet = str(tmp_path / "sheet.png")
    res = CliRunner().invoke(app, ["data", "inspect", "digits", "--sheet", sheet, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert progress_mod._DEFAULTS["enabled"] is False  # the cache's bar would be off
    assert not progress_shown(None, io.StringIO())
    for cmd in ("select", "embed", "study", "probe", "train", "pretrain", "generate"):
        out = CliRunner().invoke(app, [cmd, "--help"]).output
        assert "--no-progress" in out, cmd


def _quiet_decodes(spec: str, cache: Path, monkeypatch) -> str:
    """What decoding ``spec`` afresh draws when bars are off (--no-progress) and when
    stderr is not a terminal."""
    buf = io.StringIO()
    configure_progress(False, stream=buf, delay_s=0.0)
    load_dataset(spec, cache_dir=cache / "off")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    configure_progress(True, delay_s=0.0)
    load_dataset(spec, cache_dir=cache / "not-a-terminal")
    return buf.getvalue() + err.getvalue()


def test_decoding_a_csv_list_reports_under_its_name(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    rows = ["path,label"]
    for i in range(24):
        img = rng.integers(0, 256, (12, 12), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "imgs" / f"{i}.png")
        rows.append(f"imgs/{i}.png,{'ab'[i % 2]}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    spec = f"csv:{tmp_path / 'list.csv'}"
    buf = io.StringIO()
    configure_progress(True, stream=buf, delay_s=0.0)
    ds = load_dataset(spec, cache_dir=tmp_path / "cache" / "on")
    assert len(ds.train) == 24
    assert "decoding list.csv" in buf.getvalue() and "24/24" in buf.getvalue()
    assert _quiet_decodes(spec, tmp_path / "cache", monkeypatch) == ""


def test_decoding_a_hugging_face_dataset_reports(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    label = datasets.ClassLabel(num_classes=2)
    feats = datasets.Features({"img": datasets.Image(), "label": label})
    split = {
        n: datasets.Dataset.from_dict(
            {
                "img": [Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)) for _ in range(n)],
                "label": [i % 2 for i in range(n)],
            },
            features=feats,
        )
        for n in (14, 6)
    }
    datasets.DatasetDict({"train": split[14], "test": split[6]}).save_to_disk(str(tmp_path / "d"))
    spec = f"hf:{tmp_path / 'd'}"
    buf = io.StringIO()
    configure_progress(True, stream=buf, delay_s=0.0)
    ds = load_dataset(spec, cache_dir=tmp_path / "cache" / "on")
    assert len(ds.train) == 14
    assert "decoding d" in buf.getvalue() and "20/20" in buf.getvalue()  # both splits
    assert _quiet_decodes(spec, tmp_path / "cache", monkeypatch) == ""
