"""Locks taken in batches (`job_locks`: one GET_LOCK statement per lock connection, one write of their
holder rows): real processes compete for the same jobs on one shared MariaDB state store, and each job
is held by exactly one of them, the others told who holds it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from runner.state.ledger import Ledger
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import REPO, SchedProject

NAMES = [f"job{i:03d}" for i in range(130)]

TAKER = """
import json, os, random, sys, time
from runner.config.project import load_project
from runner.errors import JobLocked
from runner.state.ledger import Ledger
from runner.state.lock import close_idle_locks, job_locks
conf, out, go, release, seed = sys.argv[1:]
names = json.loads(os.environ["NAMES"])
random.Random(int(seed)).shuffle(names)
from pathlib import Path
project = load_project(Path(conf))
ledger = Ledger(project.settings.state_url)
while not os.path.exists(go):
    time.sleep(0.001)
taken = job_locks(project, ledger, names, "daemon")
won = [n for n, t in zip(names, taken) if not isinstance(t, JobLocked)]
held = all(t.held.verify() for t in taken if not isinstance(t, JobLocked))
refused = {n: str(t) for n, t in zip(names, taken) if isinstance(t, JobLocked)}
with open(out + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "won": won, "held": held, "refused": refused}, f)
os.rename(out + ".tmp", out)
while not os.path.exists(release):
    time.sleep(0.01)
for t in taken:
    if not isinstance(t, JobLocked):
        t.close()
close_idle_locks(ledger)
"""


def test_processes_taking_the_same_jobs_locks_in_batches_each_get_a_job_exactly_once(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, state_url=mdb.url(fresh_db))
    go, release = tmp_path / "go", tmp_path / "release"
    outs = [tmp_path / f"taker{i}.json" for i in range(3)]
    env = {"PYTHONPATH": str(REPO), "NAMES": json.dumps(NAMES), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", TAKER, str(p.root / "conf"), str(out), str(go), str(release),
                               str(i)], env=env, stderr=subprocess.PIPE, text=True) for i, out in enumerate(outs)]
    try:
        time.sleep(3)  # all three started and waiting
        go.touch()
        deadline = time.monotonic() + 60
        while not all(out.exists() for out in outs):
            assert time.monotonic() < deadline, [proc.poll() for proc in procs]
            assert all(proc.poll() is None for proc in procs), [proc.stderr.read() for proc in procs if proc.stderr]
            time.sleep(0.05)
        results = [json.loads(out.read_text()) for out in outs]
        owners: dict[str, list[int]] = {}
        for r in results:
            assert r["held"]
            for name in r["won"]:
                owners.setdefault(name, []).append(r["pid"])
        assert sorted(owners) == NAMES and all(len(pids) == 1 for pids in owners.values()), owners
        for r in results:  # a refused job names the process holding it (unless asked before its holder row
            # was written, a round trip after the lock)
            assert sorted(r["refused"]) == sorted(set(NAMES) - set(r["won"]))
            for name, text in r["refused"].items():
                assert f"pid {owners[name][0]} (daemon)" in text or "another process (holder unknown)" in text, text
        ledger = Ledger(mdb.url(fresh_db))
        with ledger.engine.connect() as conn:
            holders = dict(conn.execute(sa.text("SELECT job, pid FROM runner_lock_holders")).all())
        assert holders == {name: pids[0] for name, pids in owners.items()}
        release.touch()
        for proc in procs:
            assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        from runner.config.project import load_project
        from runner.errors import JobLocked
        from runner.state.lock import close_idle_locks, job_locks, lock_name

        project = load_project(p.root / "conf")
        mine = job_locks(project, ledger, random.sample(NAMES, len(NAMES)), "due")
        assert all(not isinstance(t, Exception) and t.held.verify() for t in mine)  # every lock was released
        for t in mine:
            t.close()  # type: ignore[union-attr]
        # Holder rows outlive their locks; one whose session no longer holds the lock names nobody. Here
        # another session holds job000's lock and has not written its row (as in the round trip after
        # GET_LOCK): the refusal says the holder is unknown, not the pid of the row's last holder.
        other = mdb.connect(db=None, autocommit=True)
        try:
            with other.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(fresh_db, "job000"),))
                assert cur.fetchone()[0] == 1
            (refused,) = job_locks(project, ledger, ["job000"], "due")
            assert isinstance(refused, JobLocked) and "another process (holder unknown)" in str(refused), refused
            assert f"pid {owners['job000'][0]} " not in str(refused)
        finally:
            other.close()
        close_idle_locks(ledger)
        ledger.dispose()
    finally:
        release.touch()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
