"""`fewlabels study`: spec errors with file and line, the store's claims, resume after
SIGKILL, reports that load every figure, and the images budget."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from fewlabels.core.budget import Budget
from fewlabels.core.errors import ConfigError
from fewlabels.methods import METHODS
from fewlabels.methods.base import Batch
from fewlabels.study import Store, load_study, run_study, write_report
from fewlabels.study.store import STORE_NAME
from fewlabels.train.loop import count_images

# the deterministic columns of results.csv (times vary from run to run)
STABLE = [
    "cell",
    "method",
    "labels",
    "unlabeled",
    "n_labeled",
    "n_unlabeled",
    "seed",
    "status",
    "accuracy",
    "macro_f1",
    "steps",
    "run_key",
]


def _semi() -> str | None:
    """A semi-supervised method, if one is registered."""
    for name in ("fixmatch", "pseudo_label", "mean_teacher"):
        if name in METHODS:
            return name
    return None


def small_spec(
    name: str = "tiny", steps: int = 12, extra_methods: str = "", semi: bool = True
) -> str:
    semi_name = _semi() if semi else None
    methods = "  - supervised\n" + (f"  - {semi_name}\n" if semi_name else "") + extra_methods
    return f"""\
name: {name}
data: digits
budget: {steps}steps
train:
  batch_size: 16
  unlabeled_batch_ratio: 2
  evals: 2
  checkpoint_every_s: 0.2
  precision: fp32
grid:
  labels_per_class: [2, 4]
  unlabeled: [60]
  seeds: [0, 1]
methods:
{methods}upper_bound: true
report:
  accuracies: [0.3]
  tsne_points: 120
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: r[k] for k in STABLE} for r in csv.DictReader(f)]


# -- spec errors ---------------------------------------------------------------------------
BASE = small_spec()


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        (
            "  labels_per_class: [2, 4]",
            "  lables_per_class: [2, 4]",
            11,
            "unknown key 'lables_per_class'",
        ),
        ("budget: 12steps\n", "budget: 12steps\nbudget: 5steps\n", 4, "duplicate key 'budget'"),
        ("  seeds: [0, 1]", "  seeds: [0, one]", 13, "grid.seeds.1"),
        ("  - supervised\n", "  - supervisd\n", 15, "unknown method 'supervisd'"),
        ("  labels_per_class: [2, 4]", "  labels_per_class: [2, 500]", 11, "cannot exist"),
        ("budget: 12steps", "budget: 0steps", 3, "must be positive"),
        ("  unlabeled: [60]", "  unlabeled: [60000]", 12, "cannot exist"),
        ("  batch_size: 16", "  batch_sise: 16", 5, "unknown key 'batch_sise'"),
    ],
)
def test_spec_errors_name_the_key_and_line(tmp_path, old, new, line, words):
    assert old in BASE
    path = write(tmp_path / "study.yaml", BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_study(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} line {line}: "), msg
    assert words in msg
    assert "\n" not in msg


def test_cli_prints_one_line_error_before_training(tmp_path):
    path = write(tmp_path / "bad.yaml", BASE.replace("  - supervised\n", "  - nosuch\n"))
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "fewlabels.cli", "study", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stderr.strip() == p.stderr.strip().splitlines()[0]
    assert "line 15: unknown method 'nosuch'" in p.stderr
    assert not out.exists()  # refused before anything was created


def test_grid_sharing_and_changed_spec_is_a_new_run(tmp_path):
    plan = load_study(write(tmp_path / "a.yaml", BASE))
    n_grid = 2 * 1 * 2
    sup = [c for c in plan.cells if c.method == "supervised"]
    assert len(sup) == n_grid  # one per labeled amount and seed; unlabeled does not matter
    assert all(c.unlabeled == "0" for c in sup)
    assert len({c.run_key for c in plan.cells}) == len(plan.cells)
    assert {c.n_labeled for c in sup} == {20, 40}
    changed = load_study(write(tmp_path / "a.yaml", BASE.replace("12steps", "13steps")))
    assert not {c.run_key for c in plan.cells} & {c.run_key for c in changed.cells}
    store = Store(tmp_path / "s.sqlite")
    store.register(plan)
    store.register(changed)  # the same study, changed: new runs, old ones kept
    keys = set(store.runs())
    assert keys == set(plan.jobs) | set(changed.jobs)
    assert store.counts()["pending"] == len(changed.jobs)  # only the new spec's runs wanted
    store.close()


def test_pretrain_shared_between_probe_and_semi_cells(tmp_path):
    extra = "  - {pretrain: simclr, then: linear}\n"
    if _semi():
        extra += f"  - {{pretrain: simclr, then: {_semi()}}}\n"
    plan = load_study(write(tmp_path / "p.yaml", small_spec(extra_methods=extra)), check_data=False)
    pre = {c.job_keys[0] for c in plan.cells if c.pipeline.startswith("pretrain")}
    assert len(pre) == 2 * 2  # one per (labels, unlabeled, seed), shared by both pipelines
    first = list(plan.jobs)[: len(pre)]
    assert set(first) == pre  # pretrainings are claimed first


def test_store_refuses_another_study_and_newer_schema(tmp_path):
    plan = load_study(write(tmp_path / "a.yaml", BASE))
    other = load_study(write(tmp_path / "b.yaml", BASE.replace("name: tiny", "name: other")))
    store = Store(tmp_path / STORE_NAME)
    store.register(plan)
    with pytest.raises(ConfigError, match="holds study 'tiny', not 'other'"):
        store.register(other)
    store.close()
    con = sqlite3.connect(tmp_path / STORE_NAME)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="newer fewlabels"):
        Store(tmp_path / STORE_NAME)


# -- claims --------------------------------------------------------------------------------
def test_concurrent_claims_never_give_a_run_twice(tmp_path):
    plan = load_study(write(tmp_path / "a.yaml", BASE), check_data=False)
    Store(tmp_path / STORE_NAME).register(plan)
    got: dict[str, list[str]] = {}

    def claimer(name: str) -> None:
        store = Store(tmp_path / STORE_NAME)
        mine = got.setdefault(name, [])
        while (row := store.claim(name)) is not None:
            mine.append(row["key"])
            store.finish(row["key"], name, metrics={"accuracy": 0.5})
        store.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [k for ks in got.values() for k in ks]
    assert sorted(claimed) == sorted(plan.jobs)  # every run once, none twice
    store = Store(tmp_path / STORE_NAME)
    assert store.counts()["done"] == len(plan.jobs)


def _a_claim_and_a_dead_pid(tmp_path: Path) -> tuple[Any, Store, Any, int]:
    """A registered study, one run claimed, and the pid of a process that has exited."""
    plan = load_study(write(tmp_path / "a.yaml", BASE), check_data=False)
    store = Store(tmp_path / STORE_NAME, stale_s=3600)
    store.register(plan)
    row = store.claim("w0")
    assert row is not None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return plan, store, row, dead.pid


def test_a_dead_workers_claim_is_taken_back(tmp_path):
    _, store, row, dead_pid = _a_claim_and_a_dead_pid(tmp_path)
    store.conn.execute("UPDATE runs SET pid = ? WHERE key = ?", (dead_pid, row["key"]))
    again = store.claim("w1")
    assert again is not None and again["key"] == row["key"]
    assert again["attempts"] == 2
    assert not store.finish(row["key"], "w0")  # the old claim can no longer record
    assert store.finish(row["key"], "w1", metrics={})


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="no Linux pid namespaces")
def test_a_claim_from_another_pid_namespace_is_not_judged_by_this_ones_pids(tmp_path):
    """A worker in another container with the same host name records another host
    (boot and pid namespace added), so a pid that is free here does not free its claim;
    a process of this machine's namespace records the same host as this one."""
    plan, store, row, dead_pid = _a_claim_and_a_dead_pid(tmp_path)
    elsewhere = socket.gethostname()  # the same name, seen from another namespace
    assert store.host.startswith(elsewhere) and store.host != elsewhere
    store.conn.execute(
        "UPDATE runs SET pid = ?, host = ? WHERE key = ?", (dead_pid, elsewhere, row["key"])
    )
    store.register(plan)  # neither register nor claim frees it: it is not ours to judge
    nxt = store.claim("w1")
    assert nxt is None or nxt["key"] != row["key"]
    assert store.runs()[row["key"]]["status"] == "running"
    code = "from fewlabels.study.sqlstore import process_host; print(process_host())"
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert here.stdout.strip() == store.host


# -- running -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def done_study(tmp_path_factory):
    """The tiny study run once, uninterrupted, in this process with one thread."""
    d = tmp_path_factory.mktemp("study")
    plan = load_study(write(d / "tiny.yaml", BASE))
    lines: list[str] = []
    run_study(plan, d / "out", workers=1, threads=1, log=lines.append)
    rep = write_report(d / "out")
    return d, plan, rep, lines


def test_study_runs_and_writes_the_report(done_study):
    d, plan, rep, lines = done_study
    out = d / "out"
    assert sum(" done " in ln for ln in lines) == len(plan.jobs)
    assert all("ETA" in ln for ln in lines if ln.startswith("["))
    rows = read_rows(rep.csv)
    assert [r["cell"] for r in rows] == [c.id for c in plan.cells]
    assert all(r["status"] == "done" and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    text = rep.html.read_text()
    for p in rep.figures:
        assert p.exists() and p.stat().st_size > 1000
        assert f"src='{p.relative_to(out).as_posix()}'" in text
        Image.open(p).verify()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    md = rep.markdown.read_text()
    assert "| method | labels |" in md and "At 2/class labeled" in md
    names = {p.name for p in rep.figures}
    assert {"acc_vs_unlabeled.png", "acc_vs_labeled.png", "time_to_accuracy.png"} <= names
    assert "confusion.png" in names
    # t-SNE panels from the embeddings the runs saved (supervised and semi-supervised alike)
    assert "tsne.png" in names and "No t-SNE panel" not in md
    for c in plan.cells:
        assert sorted((out / "runs" / c.run_key / "embeddings").glob("step_*.npz")), c.id


def test_rerun_skips_finished_runs_and_report_regenerates(done_study, tmp_path):
    d, plan, rep, _ = done_study
    before = Store(d / "out" / STORE_NAME).runs()
    lines: list[str] = []
    run_study(plan, d / "out", workers=1, threads=1, log=lines.append)
    assert not [ln for ln in lines if ln.startswith("[")]  # nothing ran
    after = Store(d / "out" / STORE_NAME).runs()
    assert {k: r["finished"] for k, r in before.items()} == {
        k: r["finished"] for k, r in after.items()
    }
    p = subprocess.run(
        [sys.executable, "-m", "fewlabels.cli", "report", str(d / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert read_rows(rep.csv) == read_rows(d / "out" / "results.csv")


def test_sigkill_at_random_moments_then_resume_gives_the_same_table(done_study, tmp_path):
    _d, plan, rep, _ = done_study
    spec = write(tmp_path / "tiny.yaml", BASE)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "fewlabels.cli",
        "study",
        str(spec),
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    rng = random.Random(0)
    total = len(plan.jobs)
    interrupted = 0

    def done_runs() -> int:
        if not (out / STORE_NAME).exists():
            return 0
        store = Store(out / STORE_NAME)
        n = store.counts()["done"]
        store.close()
        return n

    for _ in range(3):
        # a random moment in progress, not in seconds, so a fast machine cannot finish the
        # study before the kill: after a random number of further runs, plus up to 0.2 s
        done = done_runs()
        target = done + rng.randint(1, max(1, (total - 2 - done) // 2))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while proc.poll() is None and done_runs() < target and time.time() - t0 < 300:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not (out / STORE_NAME).exists():
            continue
        store = Store(out / STORE_NAME)
        c = store.counts()
        store.close()
        interrupted += c["pending"] + c["running"] > 0
    assert interrupted >= 2  # the kills landed while work was left
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert read_rows(out / "results.csv") == read_rows(rep.csv)
    store = Store(out / STORE_NAME)
    runs = store.runs()
    assert set(runs) == set(plan.jobs)  # no lost run, no extra one
    assert all(r["status"] == "done" for r in runs.values())


def test_two_workers_share_a_study(done_study, tmp_path):
    _d, _plan, rep, _ = done_study
    out = tmp_path / "out"
    text = BASE.replace("  labels_per_class: [2, 4]", "  labels_per_class: [2]")
    small = load_study(write(tmp_path / "two.yaml", text))
    run_study(small, out, workers=2, threads=1, log=lambda s: None)
    runs = Store(out / STORE_NAME).runs()
    assert set(runs) == set(small.jobs)
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in runs.values())
    assert len({r["worker"] for r in runs.values()}) == 2  # both workers took runs
    write_report(out)
    same = [r for r in read_rows(rep.csv) if r["run_key"] in small.jobs]
    assert read_rows(out / "results.csv") == same  # the same results as one worker


def test_a_failing_run_is_recorded_and_the_study_carries_on(tmp_path):
    text = small_spec(semi=False).replace(
        "  - supervised\n",
        "  - supervised\n  - {name: boom, train: supervised, settings: {lr: 1.0e+30}}\n",
    )
    text = text.replace("  labels_per_class: [2, 4]", "  labels_per_class: [2]").replace(
        "  seeds: [0, 1]", "  seeds: [0]"
    )
    plan = load_study(write(tmp_path / "f.yaml", text))
    lines: list[str] = []
    res = run_study(plan, tmp_path / "out", workers=1, threads=1, log=lines.append)
    assert res.counts["failed"] == 1 and res.counts["done"] == 2  # supervised, all labels
    with open(write_report(tmp_path / "out").csv) as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert rows["boom"]["status"] == "failed" and "loss became" in rows["boom"]["error"]
    assert rows["supervised"]["status"] == "done"


# -- the report in a browser -----------------------------------------------------------------
_CHECK = """<script>
window.addEventListener('load', function () {
  var bad = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (!im.complete || im.naturalWidth === 0) bad.push(im.getAttribute('src'));
  }
  var p = document.createElement('pre');
  p.id = 'imgcheck';
  p.textContent = 'IMAGES ' + document.images.length + ' BROKEN [' + bad.join(',') + ']';
  document.body.appendChild(p);
});
</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome-headless-shell"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _render(browser: str, page: Path) -> str:
    p = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return p.stdout


@pytest.mark.skipif(
    _chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium_with_every_figure(done_study, tmp_path):
    """The report (script-free) plus a load check, rendered offline; a missing PNG fails."""
    d, _plan, rep, _ = done_study
    site = tmp_path / "site"
    shutil.copytree(d / "out" / "figures", site / "figures")
    page = site / "check.html"
    page.write_text(rep.html.read_text().replace("</body>", _CHECK + "</body>"))
    dom = _render(_chromium(), page)
    n = len(rep.figures)
    assert f"IMAGES {n} BROKEN []" in dom, dom[-500:]
    (site / "figures" / rep.figures[0].name).unlink()
    dom = _render(_chromium(), page)
    assert f"IMAGES {n} BROKEN [figures/{rep.figures[0].name}]" in dom, dom[-500:]


# -- the images budget -------------------------------------------------------------------
def test_images_budget_parses_and_counts_every_view():
    assert Budget.parse("200kimg") == Budget("images", 200_000.0)
    assert Budget.parse("1.5mimg").amount == 1_500_000
    assert Budget.parse("640img").steps_for_images(48) == 14  # ceil(640 / 48)
    with pytest.raises(ConfigError):
        Budget.parse("0kimg")
    x = torch.zeros(8, 1, 8, 8)
    rot = (torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))  # image + label
    b = Batch(labeled=[x], unlabeled=[(torch.zeros(24, 1, 8, 8), torch.zeros(24, 1, 8, 8)), rot])
    assert count_images(b) == 8 + 48 + 8
    assert count_images(b, unlabeled_copies=4) == 8 + 4 * (48 + 8)  # labeled counted once


def test_images_budget_sets_the_step_count(tmp_path):
    from fewlabels.train.run import RunConfig, run_training

    torch.set_num_threads(1)
    cfg = RunConfig(
        labels_per_class=3,
        train={"budget": "640img", "batch_size": 16, "evals": 1},
        out=str(tmp_path / "r"),
    )
    res = run_training(cfg, progress=False, log=lambda s: None)
    assert res.steps == 40  # 640 images / 16 per step
    assert res.curve[-1]["backbone_images"] == 640


def test_images_budget_counts_rotnet_rotations(tmp_path):
    """RotNet puts each unlabeled image through the backbone four times (all rotations):
    an image budget counts those passes, and the online probe's labeled images once."""
    from fewlabels.train.run import RunConfig, run_training

    torch.set_num_threads(1)
    cfg = RunConfig(
        labels_per_class=3,
        method="rotnet",
        backbone="fastnet-s",
        train={"budget": "1400img", "batch_size": 32, "unlabeled_batch_ratio": 8, "evals": 1},
        out=str(tmp_path / "r"),
    )
    res = run_training(cfg, progress=False, log=lambda s: None)
    per_step = 4 * 32 + 32 // 8  # 4 rotations of 32 unlabeled + the probe's 4 labeled
    assert res.steps == -(-1400 // per_step) == 11
    assert res.curve[-1]["backbone_images"] == 11 * per_step
