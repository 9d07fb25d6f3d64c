"""No overlap: a second start of a running job exits 3 naming the holder (host, pid, since), with the
lock in SQLite's folder (flock) or in MySQL (GET_LOCK); a MySQL lock lost with its connection stops
the run before its next task. Real subprocesses, a real private MariaDB."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pymysql
import pytest
import sqlalchemy as sa

from runner.cron import Schedule
from runner.state.ledger import HOST, Ledger
from runner.state.lock import lock_name
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject, seen_since, stop, wait_for

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
    latest = Schedule("30 2 * * *", "UTC").latest_at_or_before(datetime.now(timezone.utc))
    seen_since(ledger.url, ["nightly"], latest - timedelta(minutes=1))  # deployed before its latest slot
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


LONG = "regional_sales_rollup_for_every_warehouse_store_and_day_of_the_week"  # 67 characters


@pytest.mark.parametrize("store, job, other_store, other_job", [
    ("state_a", "nightly", "state_b", "nightly"),  # two projects on one server
    ("state", LONG + "_eu", "state", LONG + "_us"),  # alike in their first 64 characters and more
    ("state", "Nightly", "state", "nightly"),  # differ in case only: the digests differ whatever the server compares
])
def test_lock_names_differ_by_state_store_and_by_whole_job_name(store: str, job: str, other_store: str,
                                                                  other_job: str) -> None:
    a, b = lock_name(store, job), lock_name(other_store, other_job)
    assert a.lower() != b.lower()
    assert len(a) <= 64 and len(b) <= 64
    assert a.startswith(f"runner.{job}"[:40]) and b.startswith(f"runner.{other_job}"[:40])
    assert lock_name(store, job) == a  # every host sharing the store derives the same name


@pytest.fixture
def second_db(mdb: PrivateMariaDB) -> Iterator[str]:
    """A second database on the same server, as another project's state store."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = mdb.connect(db=None, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def runs_beside(first: tuple[SchedProject, Ledger, str], second: tuple[SchedProject, Ledger, str]) -> None:
    """Start the first job (a long one), and run the second while the first holds its lock: the second
    must run, not exit 3."""
    (p1, ledger1, job1), (p2, ledger2, job2) = first, second
    proc = p1.start("--job", job1)
    try:
        wait_for("the first job to be running", lambda: running(ledger1, job1), 30)
        done = p2.run("--job", job2)
        assert done.returncode == 0, done.stdout + done.stderr
        assert proc.poll() is None, "the first job must still be running"
    finally:
        assert stop(proc) == 130
    assert [r["status"] for r in ledger2.history(job2)] == ["success"]


def test_two_projects_on_one_server_do_not_block_each_other(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                           second_db: str) -> None:
    projects = []
    for db, sql in ((fresh_db, "DO SLEEP(30)"), (second_db, "SELECT 1")):
        p = SchedProject(tmp_path / db, {"mdb": mdb.url(db)}, state_url=mdb.url(db))
        p.job("nightly", {"database": "mdb", "tasks": [{"name": "t", "sql": sql}]})
        projects.append((p, Ledger(mdb.url(db)), "nightly"))
    runs_beside(projects[0], projects[1])


def test_two_long_job_names_alike_in_their_first_64_characters_do_not_block_each_other(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)}, state_url=mdb.url(fresh_db))
    ledger = Ledger(mdb.url(fresh_db))
    for job, sql in ((LONG + "_eu", "DO SLEEP(30)"), (LONG + "_us", "SELECT 1")):
        p.job(job, {"database": "mdb", "tasks": [{"name": "t", "sql": sql}]})
    runs_beside((p, ledger, LONG + "_eu"), (p, ledger, LONG + "_us"))


def connections_opened(mdb: PrivateMariaDB) -> int:
    conn = mdb.connect(db=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            return int(cur.fetchone()[1])
    finally:
        conn.close()


def test_due_over_many_jobs_on_a_mysql_store_reuses_lock_connections_and_locks_only_what_is_due(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """Thirty jobs due: each runs under its GET_LOCK, the locks taken one after another on a connection
    or two instead of thirty. Then nothing is due: no lock is taken at all (one read of every job's
    latest slot), so the catch-up line costs a shared store a couple of connections, not one per job."""
    t = datetime.now(timezone.utc) - timedelta(hours=2)
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, state_url=mdb.url(fresh_db))
    for i in range(30):
        p.job(f"job{i:02d}", {"schedule": f"{t.minute} {t.hour} * * *", "database": "wh",
                              "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    from runner.cron import Schedule
    from runner.run.executor import new_run_id
    from runner.state.slots import SlotLedger

    book = SlotLedger(mdb.url(fresh_db))  # each job ran yesterday's slot: today's is due
    today = Schedule(f"{t.minute} {t.hour} * * *").latest_at_or_before(datetime.now(timezone.utc))
    yesterday = today - timedelta(days=1)
    for i in range(30):
        run_id = new_run_id()
        book.claim(f"job{i:02d}", yesterday, run_id, yesterday.date().isoformat(), "cron")
        book.finish_run(run_id, "success", 1, 0)
    book.dispose()
    before = connections_opened(mdb)
    done = p.run("--due")
    assert done.returncode == 0, done.stderr
    runs = Ledger(mdb.url(fresh_db)).history(limit=100)
    assert sorted(r["job"] for r in runs if r["status"] == "success" and r["trigger"] == "due") == [
        f"job{i:02d}" for i in range(30)]
    assert connections_opened(mdb) - before <= 1 + 8, "lock connections were not reused"  # ours, pool, locks

    before = connections_opened(mdb)
    again = p.run("--due")
    assert again.returncode == 0 and "nothing due" in again.stdout, again.stderr
    assert connections_opened(mdb) - before <= 1 + 2  # ours and the ledger's read: no lock connection


def test_an_idle_lock_connection_the_server_closed_is_replaced(tmp_path: Path, mdb: PrivateMariaDB,
                                                               fresh_db: str) -> None:
    """A released lock leaves its connection for the next lock; KILLed meanwhile on the server, the next
    lock takes a new connection instead of failing."""
    from runner.config.project import load_project
    from runner.state.lock import _holders, close_idle_locks, job_lock

    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, state_url=mdb.url(fresh_db))
    project = load_project(p.root / "conf")
    ledger = Ledger(mdb.url(fresh_db))
    try:
        with job_lock(project, ledger, "a") as held, ledger.engine.connect() as conn:
            first = conn.execute(sa.select(_holders.c.connection_id).where(_holders.c.job == "a")).scalar()
            assert held.verify()
        kill = mdb.connect(db=None, autocommit=True)
        with kill.cursor() as cur:
            cur.execute(f"KILL {int(first)}")  # the idle lock connection, left for the next lock
        kill.close()
        with job_lock(project, ledger, "b") as held, ledger.engine.connect() as conn:
            second = conn.execute(sa.select(_holders.c.connection_id).where(_holders.c.job == "b")).scalar()
            assert held.verify() and second != first
        with job_lock(project, ledger, "c"), ledger.engine.connect() as conn:
            third = conn.execute(sa.select(_holders.c.connection_id).where(_holders.c.job == "c")).scalar()
            assert third == second  # released cleanly: used again
    finally:
        close_idle_locks(ledger)
        ledger.dispose()


def test_many_jobs_locks_share_a_few_connections_and_still_exclude(tmp_path: Path, mdb: PrivateMariaDB,
                                                                   fresh_db: str) -> None:
    """120 jobs held at once (a daemon's batch) on 3 server connections, not 120 (max_connections is 151
    by default). Each lock still excludes other connections and this process; a connection KILLed on
    the server loses exactly its own jobs' locks, which others may then take."""
    import contextlib

    from runner.config.project import load_project
    from runner.errors import JobLocked
    from runner.state.lock import LOCKS_PER_CONNECTION, close_idle_locks, job_lock

    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, state_url=mdb.url(fresh_db))
    project = load_project(p.root / "conf")
    ledger = Ledger(mdb.url(fresh_db))
    names = [f"job{i:03d}" for i in range(120)]
    other = mdb.connect(db=None, autocommit=True)
    try:
        with contextlib.ExitStack() as stack:
            held = {n: stack.enter_context(job_lock(project, ledger, n, "daemon")) for n in names}
            with ledger.engine.connect() as conn:
                carriers = dict(conn.execute(sa.text("SELECT job, connection_id FROM runner_lock_holders")).all())
            assert sorted(carriers) == names
            assert len(set(carriers.values())) == -(-len(names) // LOCKS_PER_CONNECTION) == 3
            with pytest.raises(JobLocked, match="already running in this process"):
                stack.enter_context(job_lock(project, ledger, "job000"))
            with other.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(fresh_db, "job000"),))
                assert cur.fetchone()[0] == 0  # held: another connection cannot take it
                victim = carriers["job000"]
                cur.execute(f"KILL {int(victim)}")
                assert not held["job000"].verify()
                assert all(held[n].verify() is (carriers[n] != victim) for n in names)
                cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(fresh_db, "job000"),))
                assert cur.fetchone()[0] == 1  # lost with its connection: free for others
                cur.execute("SELECT RELEASE_LOCK(%s)", (lock_name(fresh_db, "job000"),))
        with job_lock(project, ledger, "job000") as again:  # after the killed connection is gone
            assert again.verify()
    finally:
        other.close()
        close_idle_locks(ledger)
        ledger.dispose()
