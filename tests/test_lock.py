"""No overlap: a second start of a running job exits 3 naming the holder (host, pid, since), with the
lock in SQLite's folder (flock) or in MySQL (GET_LOCK); a MySQL lock lost with its connection stops
the run before its next task. Real subprocesses, a real private MariaDB."""

from __future__ import annotations

import re
from pathlib import Path

import pymysql

from runner.ledger import HOST, Ledger
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject, stop, wait_for

HOLDER = re.compile(rf"job (\w+) is already running: host {re.escape(HOST)} pid (\d+) \((\w+)\) since "
                    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)")


def running(ledger: Ledger, job: str) -> list[dict]:
    return [r for r in ledger.history(job) if r["status"] == "running"]


def slow_project(root: Path, mdb: PrivateMariaDB, db: str, state_url: str) -> SchedProject:
    p = SchedProject(root, {"mdb": mdb.url(db)}, state_url=state_url)
    p.job("slow", {"database": "mdb", "tasks": [{"name": "nap", "sql": "DO SLEEP(3)"}]})
    p.job("nightly", {"schedule": "30 2 * * *", "database": "mdb", "tasks": [{"name": "nap", "sql": "DO SLEEP(3)"}]})
    return p


def second_start_is_skipped(p: SchedProject, ledger: Ledger, args: tuple[str, ...], job: str, trigger: str) -> None:
    first = p.start(*args)
    try:
        wait_for("the first start to be running", lambda: running(ledger, job), 30)
        second = p.run(*args)
        assert second.returncode == 3, second.stderr + second.stdout
        m = HOLDER.search(second.stderr + second.stdout)
        assert m, second.stderr + second.stdout
        assert m.group(1) == job and int(m.group(2)) == first.pid and m.group(3) == trigger
        assert first.wait(timeout=60) == 0
    finally:
        stop(first)
    runs = ledger.history(job)
    assert [r["status"] for r in runs] == ["success"]  # the second start recorded nothing


def test_second_start_exits_3_naming_the_holder_with_a_file_lock(tmp_path: Path, mdb: PrivateMariaDB,
                                                                   fresh_db: str) -> None:
    p = slow_project(tmp_path, mdb, fresh_db, "sqlite:///var/state.db")
    ledger = Ledger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    second_start_is_skipped(p, ledger, ("--job", "slow"), "slow", "manual")


def test_second_start_exits_3_naming_the_holder_with_a_mysql_lock(tmp_path: Path, mdb: PrivateMariaDB,
                                                                    fresh_db: str) -> None:
    p = slow_project(tmp_path, mdb, fresh_db, mdb.url(fresh_db))
    second_start_is_skipped(p, Ledger(mdb.url(fresh_db)), ("--job", "slow"), "slow", "manual")


def test_two_overlapping_due_starts_the_second_exits_3(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """Cron mode: the catch-up line starts while a job's own line still runs it."""
    p = slow_project(tmp_path, mdb, fresh_db, "sqlite:///var/state.db")
    ledger = Ledger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    second_start_is_skipped(p, ledger, ("--due",), "nightly", "due")


def test_a_lost_mysql_lock_stops_the_run_before_its_next_task(tmp_path: Path, mdb: PrivateMariaDB,
                                                              fresh_db: str) -> None:
    """GET_LOCK dies with its connection: killed on the server during the first task, the run must
    not start the second task, since another process may now hold the lock."""
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)}, state_url=mdb.url(fresh_db))
    p.job("two", {"database": "mdb", "tasks": [
        {"name": "first", "sql": "DO SLEEP(2)"},
        {"name": "second", "depends_on": ["first"], "idempotent": True,
         "sql": "CREATE TABLE IF NOT EXISTS reached (n INT)"}]})
    ledger = Ledger(mdb.url(fresh_db))
    proc = p.start("--job", "two")
    try:
        wait_for("the run", lambda: running(ledger, "two"), 30)
        conn = mdb.connect(fresh_db, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT connection_id FROM runner_lock_holders WHERE job = 'two'")
            (holder,) = cur.fetchone()
            cur.execute(f"KILL CONNECTION {int(holder)}")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1, out
    finally:
        stop(proc)
    assert ("job two: the job's lock was lost (its state store connection dropped), so task second was not "
            "started: another process may be running the job") in out, out
    assert "unexpected error" not in out and "PendingRollbackError" not in out and "Traceback" not in out, out
    assert "job two failed" in out, out
    (run,) = ledger.history("two")
    assert run["status"] == "failed"
    assert [(a.task, a.status) for a in ledger.attempts_of(run["run_id"])] == [("first", "success")]
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT COUNT(*) FROM reached")
            raise AssertionError("the second task ran")
        except pymysql.err.ProgrammingError as exc:
            assert exc.args[0] == 1146  # table doesn't exist: the second task never ran


def test_tasks_running_in_parallel_all_check_one_mysql_lock(tmp_path: Path, mdb: PrivateMariaDB,
                                                              fresh_db: str) -> None:
    """Every task thread checks the job's GET_LOCK before it starts, on the one connection that holds
    it: eight at once must each see the lock held, every time."""
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)}, state_url=mdb.url(fresh_db))
    p.job("wide", {"database": "mdb", "max_parallel": 8,
                   "tasks": [{"name": f"t{i}", "sql": "SELECT 1"} for i in range(8)]})
    ledger = Ledger(mdb.url(fresh_db))
    for _ in range(6):
        done = p.run("--job", "wide")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "lock was lost" not in done.stderr and "unexpected error" not in done.stderr, done.stderr
    runs = ledger.history("wide")
    assert [r["status"] for r in runs] == ["success"] * 6
    for run in runs:
        assert sorted((a.task, a.status) for a in ledger.attempts_of(run["run_id"])) == [
            (f"t{i}", "success") for i in range(8)]
