"""The PostgreSQL study store, against a real server started for this test session.

The fixture runs initdb + pg_ctl in a temporary folder (unix socket only, no TCP port);
as root it runs them as the ``postgres`` user, since initdb refuses to run as root. The
tests skip only when no server binaries are installed (``.ci/run`` installs Debian's
``postgresql`` package).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from fewlabels.core.errors import ConfigError, FewlabelsError
from fewlabels.study import load_study, run_study, write_report

REPO = Path(__file__).resolve().parents[1]


def _server_bin() -> Path | None:
    found = [shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[::-1]]
    for c in found:
        if c and Path(c).with_name("initdb").exists() and Path(c).with_name("postgres").exists():
            return Path(c).parent
    return None


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server; yields a function that makes a fresh database URL."""
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    pytest.importorskip("psycopg", reason="psycopg missing: pip install 'fewlabels[postgres]'")
    import psycopg

    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="fewlabels-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    opts = f"-k {root} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-t", "60",
            "-l", str(root / "log"), "start")  # fmt: skip
    except subprocess.CalledProcessError as e:
        log = (root / "log").read_text()[-2000:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode()[-2000:]}\n{log}")

    def new_database() -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        admin = f"postgresql:///postgres?host={root}&user=postgres"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql:///{name}?host={root}&user=postgres"

    yield new_database
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(root, ignore_errors=True)


def fake_plan(n: int, name: str = "pg") -> NS:
    """A registered-study stand-in: ``n`` runs; the second half each wait on one of the first."""
    jobs = {}
    for i in range(n):
        deps = [f"r{i - n // 2:03d}"] if i >= n // 2 else []
        jobs[f"r{i:03d}"] = NS(key=f"r{i:03d}", kind="train", label=f"run {i}", spec={"i": i},
                               deps=deps)  # fmt: skip
    cells = [NS(id="c0", info=lambda: {"cell": "c0"}, run_key="r000", job_keys=["r000"])]
    return NS(
        name=name,
        source="pg.yaml",
        text=f"name: {name}\n",
        spec=NS(report=NS(model_dump=lambda: {"accuracies": [0.5]})),
        jobs=jobs,
        cells=cells,
    )


CLAIMER = """
import json, pathlib, random, sys, time
from fewlabels.study.pgstore import PgStore
url, worker, out = sys.argv[1:4]
store = PgStore(url)
# start together: a worker that is ready first must not drain the queue alone
here = pathlib.Path(out).parent
(here / (worker + ".ready")).touch()
deadline = time.time() + 60
while len(list(here.glob("*.ready"))) < 2 and time.time() < deadline:
    time.sleep(0.01)
mine = []
while True:
    row = store.claim(worker)
    if row is None:
        c = store.counts()
        if c["pending"] == 0 and c["running"] == 0:
            break
        time.sleep(0.01)
        continue
    mine.append(row["key"])
    time.sleep(random.random() * 0.003)
    assert store.finish(row["key"], worker, metrics={"accuracy": 0.5})
store.close()
open(out, "w").write(json.dumps(mine))
"""


def test_two_worker_processes_claim_every_run_once(pg_server, tmp_path):
    from fewlabels.study.pgstore import PgStore

    url = pg_server()
    plan = fake_plan(80)
    store = PgStore(url)
    store.register(plan)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, f"w{i}", str(tmp_path / f"w{i}.json")], env=env
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    got = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2)]
    claimed = got[0] + got[1]
    assert sorted(claimed) == sorted(plan.jobs)  # none done twice, none lost
    assert got[0] and got[1]  # both workers took runs
    runs = store.runs()
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in runs.values())
    for w in got:  # a run never starts before the run it depends on has finished
        for k in w:
            for d in runs[k]["deps"]:
                assert runs[d]["finished"] <= runs[k]["started"]
    assert store.counts() == {"pending": 0, "running": 0, "done": 80, "failed": 0}
    store.close()


def test_stale_and_dead_claims_are_taken_back_and_checks_hold(pg_server):
    from fewlabels.study.pgstore import PgStore

    url = pg_server()
    store = PgStore(url, stale_s=3600)
    store.register(fake_plan(4))
    row = store.claim("w0")
    assert row is not None and row["key"] == "r000"
    assert store.claim("w1")["key"] == "r001"  # the claimed run is not handed out again
    # w0's heartbeat stops (its machine died): after stale_s, the run goes to another worker
    store.conn.execute("UPDATE fewlabels_runs SET heartbeat = 0, host = 'elsewhere' "
                       "WHERE key = 'r000'")  # fmt: skip
    again = store.claim("w2")
    assert again["key"] == "r000" and again["attempts"] == 2
    assert not store.finish("r000", "w0")  # the old claim can no longer record
    assert store.finish("r000", "w2", metrics={})
    # a worker process on this machine that is gone: taken back at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.conn.execute("UPDATE fewlabels_runs SET pid = %s WHERE key = 'r001'", (dead.pid,))
    assert store.claim("w3")["key"] == "r001"
    # a heartbeat keeps a claim alive
    store.heartbeat("r001", "w3")
    assert store.claim("w4")["key"] == "r002"
    with pytest.raises(ConfigError, match="holds study 'pg', not 'other'"):
        store.register(fake_plan(4, name="other"))
    store.conn.execute("UPDATE fewlabels_meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(ConfigError, match="newer fewlabels"):
        PgStore(url)


STUDY = """\
name: pgtiny
data: digits
budget: 6steps
train:
  batch_size: 16
  evals: 1
  precision: fp32
grid:
  labels_per_class: [2]
  unlabeled: [0]
  seeds: [0, 1]
methods:
  - supervised
upper_bound: false
report:
  accuracies: [0.3]
"""


def test_study_with_two_workers_and_report_from_postgresql(pg_server, tmp_path):
    url = pg_server()
    (tmp_path / "s.yaml").write_text(STUDY)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "fewlabels.cli"]
    cmd = [*cli, "study", str(tmp_path / "s.yaml"), "--out", str(out), "--workers", "2"]
    res = subprocess.run([*cmd, "--store", url], capture_output=True, text=True, env=env,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (out / "study.sqlite").exists()  # the runs went to PostgreSQL
    assert json.loads((out / "store.json").read_text()) == {"url": url}
    from fewlabels.study.pgstore import PgStore

    store = PgStore(url)
    runs = store.runs()
    chosen = store.get_meta("backbone")  # what another machine starting now would keep
    store.close()
    assert chosen and json.loads(chosen) == json.loads((out / "backbone.json").read_text())
    assert json.loads(chosen)["backbone"] == "convnet"
    assert len(runs) == 2 and all(r["status"] == "done" for r in runs.values())
    assert all(r["attempts"] == 1 for r in runs.values())
    first = (out / "results.csv").read_text()
    (out / "results.csv").unlink()
    # the report finds the database from store.json, or from --store into another folder
    res = subprocess.run([*cli, "report", str(out)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert (out / "results.csv").read_text() == first
    other = tmp_path / "elsewhere"
    write_report(other, url)  # --store URL: any study's database into any folder
    assert (other / "results.csv").read_text() == first
    # a database that is not there: one line, and no study folder is created
    missing = url.replace(url.split("///")[1].split("?")[0], "t_missing")
    gone = tmp_path / "gone"
    plan = load_study(tmp_path / "s.yaml", check_data=False)
    with pytest.raises(FewlabelsError, match='database "t_missing" does not exist') as e:
        run_study(plan, gone, store_url=missing)
    assert str(e.value).startswith("study store postgresql:///t_missing?host=")
    assert "\n" not in str(e.value) and not gone.exists()
    with pytest.raises(ConfigError, match="expected a postgresql://USER@HOST/DATABASE URL"):
        write_report(other, "mysql://x")
