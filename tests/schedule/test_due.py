"""Cron mode (`--due`, `--due --job NAME`) as real subprocesses on a SQLite state store: after an outage
the latest slot runs once and the older ones are recorded as missed; a run whose process was killed
is marked abandoned and its slot run again when the job allows it."""

from __future__ import annotations

import json
import signal
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.run.executor import new_run_id
from runner.cron import Schedule
from runner.state.slots import SlotLedger
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.proxy import TcpProxy
from tests.schedkit import SchedProject, seen_since, stop, wait_for


def two_hours_ago() -> tuple[str, datetime]:
    """A daily schedule whose latest slot is two hours old (so no slot comes due while a test runs)."""
    t = datetime.now(timezone.utc) - timedelta(hours=2)
    expr = f"{t.minute} {t.hour} * * *"
    return expr, Schedule(expr, "UTC").latest_at_or_before(datetime.now(timezone.utc))


def seed_success(ledger: SlotLedger, job: str, slot: datetime) -> None:
    """The run the job had before the outage."""
    run_id = new_run_id()
    ledger.claim(job, slot, run_id, slot.date().isoformat(), "cron")
    ledger.finish_run(run_id, "success", 1, 0)


@pytest.fixture
def sqlite_project(tmp_path: Path) -> tuple[SchedProject, SlotLedger]:
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, settings={"misfire_grace": "1h"})
    return p, SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")


def statuses(ledger: SlotLedger, job: str) -> list[tuple[datetime | None, str, str]]:
    return [(r["slot"], r["status"], r["trigger"]) for r in ledger.slot_runs(job)]


def test_due_after_an_outage_runs_the_latest_slot_once_and_records_the_others_missed(
        sqlite_project: tuple[SchedProject, SlotLedger]) -> None:
    p, ledger = sqlite_project
    expr, latest = two_hours_ago()
    p.job("nightly", {"schedule": expr, "database": "wh", "tasks": [
        {"name": "mark", "idempotent": True,
         "sql": "CREATE TABLE IF NOT EXISTS marks (day TEXT); INSERT INTO marks VALUES (:run_date)"}]})
    before = latest - timedelta(days=5)  # the server was down for four nights
    seed_success(ledger, "nightly", before)

    done = p.run("--due")
    assert done.returncode == 0, done.stderr
    assert "nightly: 4 missed slot(s) recorded as missed" in done.stdout
    missed = [latest - timedelta(days=d) for d in (4, 3, 2, 1)]
    assert statuses(ledger, "nightly") == [(before, "success", "cron"), *[(m, "missed", "due") for m in missed],
                                           (latest, "success", "due")]
    history = p.run("--history", "--job", "nightly").stdout
    assert history.count(" missed ") == 4 and " due " in history

    again = p.run("--due")
    assert again.returncode == 0 and "nothing due" in again.stdout
    assert len(ledger.slot_runs("nightly")) == 6


def test_a_days_outage_of_a_per_minute_job_is_one_missed_row_with_its_count_first_and_last(
        sqlite_project: tuple[SchedProject, SlotLedger]) -> None:
    """A ledger from before missed stretches were kept (no runner_missed_slots table, an old summary row
    of slots too many to list) is upgraded when opened; the day of missed slots is one transaction."""
    p, ledger = sqlite_project
    p.job("minutely", {"schedule": "* * * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    now = datetime.now(timezone.utc)
    before = Schedule("* * * * *", "UTC").latest_at_or_before(now) - timedelta(days=1)
    seed_success(ledger, "minutely", before)
    ledger.dispose()
    with sqlite3.connect(p.root / "var" / "state.db") as db:
        db.execute("DROP TABLE runner_missed_slots")
        db.execute("INSERT INTO runner_runs (run_id, job, run_date, slot, trigger, host, pid, started_at, ended_at, "
                   "status, attempts, rows, error) VALUES ('old', 'minutely', '2020-01-01', NULL, 'due', 'h', 1, "
                   "'2020-01-01 00:00:00', '2020-01-01 00:00:00', 'missed', 0, 0, 'every slot after ... was missed "
                   "too; too many to record one by one')")

    done = p.run("--due")
    assert done.returncode == 0, done.stderr
    ran = [r for r in ledger.slot_runs("minutely") if r["status"] == "success" and r["slot"] > before]
    assert len(ran) == 1
    latest = ran[0]["slot"]
    count = int((latest - before).total_seconds() // 60) - 1  # 1439, or more if a minute began meanwhile
    assert f"minutely: {count} missed slot(s) recorded as missed" in done.stdout
    [span] = ledger.missed_spans("minutely")
    assert (span["first_slot"], span["last_slot"], span["slots"]) == (
        before + timedelta(minutes=1), latest - timedelta(minutes=1), count)
    assert (span["schedule"], span["timezone"]) == ("* * * * *", "UTC")
    missed = [r for r in ledger.slot_runs("minutely") if r["status"] == "missed"]
    assert [(r["run_id"], r["slot"]) for r in missed] == [(span["run_id"], latest - timedelta(minutes=1))]
    history = p.run("--history", "--job", "minutely").stdout
    first = (before + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert f" missed   0.0   {count} slots missed, {first[:-1]}" in history, history  # the table cuts the note
    shown = json.loads(p.run("--history", "--job", "minutely", "--format", "json").stdout)
    last = (latest - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert [r["error"].split(" (")[0] for r in shown if r["status"] == "missed"] == [
        f"{count} slots missed, {first}Z to {last}Z"]
    assert "missed" not in p.run("--due").stdout  # a minute may have begun: its slot runs, nothing is missed


def test_catch_up_none_records_a_late_slot_as_missed_and_runs_nothing(
        sqlite_project: tuple[SchedProject, SlotLedger]) -> None:
    p, ledger = sqlite_project  # misfire_grace 1h: the slot two hours old is too late
    expr, latest = two_hours_ago()
    p.job("strict", {"schedule": expr, "catch_up": "none", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    seed_success(ledger, "strict", latest - timedelta(days=1))
    done = p.run("--due", "--job", "strict")
    assert done.returncode == 0, done.stderr
    assert statuses(ledger, "strict")[1:] == [(latest, "missed", "cron")]


def test_due_for_a_job_without_a_schedule_is_a_usage_error(sqlite_project: tuple[SchedProject, SlotLedger]) -> None:
    p, _ = sqlite_project
    p.job("by_hand", {"database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    done = p.run("--due", "--job", "by_hand")
    assert done.returncode == 2
    assert "job by_hand has no schedule, so nothing is ever due: run it with --job by_hand" in done.stderr


@pytest.mark.parametrize("rerun", [True, False])
def test_a_killed_run_is_abandoned_and_run_again_when_allowed(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                              rerun: bool) -> None:
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    expr, latest = two_hours_ago()
    p.job("slow", {"schedule": expr, "rerun_abandoned": rerun, "database": "mdb",
                   "tasks": [{"name": "nap", "sql": "DO SLEEP(2)"}]})
    first = p.start("--due", "--job", "slow")
    try:
        wait_for("the run", lambda: [r for r in ledger.slot_runs("slow") if r["status"] == "running"], 30)
        first.send_signal(signal.SIGKILL)  # the host dies mid-run: no chance to record anything
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        stop(first)
    assert statuses(ledger, "slow") == [(latest, "running", "cron")]

    done = p.run("--due")
    assert done.returncode == 0, done.stderr
    assert "slow: 1 abandoned run(s) found" in done.stdout
    runs = ledger.slot_runs("slow")
    assert [(r["slot"], r["status"]) for r in runs] == (
        [(latest, "abandoned"), (latest, "success")] if rerun else [(latest, "abandoned")])
    if rerun:
        assert f"run again as {runs[1]['run_id']}" in runs[0]["error"]
    else:
        assert f"pid {first.pid} (cron) never finished and job slow's lock was free" in runs[0]["error"]


@pytest.mark.parametrize("sql, code", [("SELECT 1", 2), ("SELECT * FROM no_such_table", 1)])
def test_an_invalid_job_file_does_not_stop_due_from_running_the_valid_jobs(
        sqlite_project: tuple[SchedProject, SlotLedger], sql: str, code: int) -> None:
    """Exit 2 says a job file is invalid, after the valid jobs ran; a run that failed says 1 instead."""
    p, ledger = sqlite_project
    expr, latest = two_hours_ago()
    p.job("good", {"schedule": expr, "database": "wh", "tasks": [{"name": "t", "sql": sql}]})
    p.job("broken", {"schedule": expr, "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}],
                     "no_such_key": 1})
    seen_since(ledger.url, ["good", "broken"], latest - timedelta(hours=1))
    done = p.run("--due")
    assert done.returncode == code, done.stderr
    assert "jobs/broken.yml" in done.stderr and "no_such_key" in done.stderr, done.stderr
    assert "job broken was not looked at: its file is invalid (see --check)" in done.stderr, done.stderr
    assert statuses(ledger, "good") == [(latest, "success" if code == 2 else "failed", "due")]
    assert ledger.slot_runs("broken") == []


def test_a_rerun_of_an_abandoned_run_does_not_apply_its_committed_tasks_again(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """Task a committed, then the process was killed during task b: the re-run of the slot finds a's
    marker under the abandoned run and leaves a alone, and runs b."""
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    conn = mdb.connect(fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, task VARCHAR(8), run_id CHAR(32))")
    expr, _ = two_hours_ago()
    p.job("two", {"schedule": expr, "rerun_abandoned": True, "database": "mdb", "tasks": [
        {"name": "a", "sql": "INSERT INTO hits (task, run_id) VALUES ('a', :run_id)"},
        {"name": "b", "depends_on": ["a"],
         "sql": "INSERT INTO hits (task, run_id) VALUES ('b', :run_id); DO SLEEP(2)"}]})
    first = p.start("--due", "--job", "two")
    try:
        def in_b() -> list:
            runs = ledger.slot_runs("two")
            return runs and [a for a in ledger.attempts_of(runs[0]["run_id"]) if a.task == "b"]
        wait_for("task b to start", in_b, 30, every=0.02)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        stop(first)
    (killed,) = ledger.slot_runs("two")

    done = p.run("--due")
    assert done.returncode == 0, done.stderr
    assert f"committed by the abandoned run {killed['run_id']}" in done.stdout, done.stdout
    with conn.cursor() as cur:
        cur.execute("SELECT task, run_id FROM hits ORDER BY id")
        hits = cur.fetchall()
    rerun = ledger.slot_runs("two")[1]
    assert [(r["status"]) for r in ledger.slot_runs("two")] == ["abandoned", "success"]
    assert list(hits) == [("a", killed["run_id"]), ("b", rerun["run_id"])]  # a once; b of the killed run rolled back
    assert [(a.task, a.status, a.rows, a.error) for a in ledger.attempts_of(rerun["run_id"])] == [
        ("a", "success", 1, f"committed by the abandoned run {killed['run_id']}"), ("b", "success", 1, None)]


def test_due_runs_a_failed_slot_again_once_per_call_until_it_succeeds(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, proxy: TcpProxy) -> None:
    """The job's cron line fails because the database stays down past the retry window: every later
    --due runs the slot once more, until a run succeeds; then nothing is due."""
    host, port = proxy.address
    p = SchedProject(tmp_path, {"mdb": f"mysql+pymysql://root:@{host}:{port}/{fresh_db}"})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    expr, latest = two_hours_ago()
    p.job("nightly", {"schedule": expr, "database": "mdb",
                      "retry": {"attempts": 3, "window": "1s", "base_delay": 0.05, "max_delay": 0.2},
                      "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    proxy.refuse_new()
    try:
        first = p.run("--due", "--job", "nightly")
        assert first.returncode == 1, first.stderr
        again = p.run("--due")  # still down: run once more, and only once
        assert again.returncode == 1, again.stderr
        assert statuses(ledger, "nightly") == [(latest, "failed", "cron"), (latest, "failed", "due")]
    finally:
        proxy.refuse_new(False)
    done = p.run("--due")
    assert done.returncode == 0, done.stderr
    assert "failed; running its slot again" in done.stderr, done.stderr
    assert statuses(ledger, "nightly") == [(latest, "failed", "cron"), (latest, "failed", "due"),
                                           (latest, "success", "due")]
    quiet = p.run("--due")
    assert quiet.returncode == 0 and "nothing due" in quiet.stdout, quiet.stdout + quiet.stderr
    assert len(ledger.slot_runs("nightly")) == 3


def test_a_rerun_of_a_failed_slot_leaves_the_tasks_it_committed_alone(
        sqlite_project: tuple[SchedProject, SlotLedger]) -> None:
    p, ledger = sqlite_project
    expr, _ = two_hours_ago()
    wh = sqlite3.connect(p.root / "var" / "wh.db")
    wh.execute("CREATE TABLE hits (task TEXT, run_id TEXT)")
    wh.commit()
    p.job("two", {"schedule": expr, "database": "wh", "tasks": [
        {"name": "a", "sql": "INSERT INTO hits VALUES ('a', :run_id)"},
        {"name": "b", "depends_on": ["a"], "sql": "INSERT INTO hits SELECT 'b', :run_id FROM gate"}]})
    failed = p.run("--due", "--job", "two")
    assert failed.returncode == 1 and "no such table: gate" in failed.stdout, failed.stdout + failed.stderr
    wh.execute("CREATE TABLE gate (x INT)")
    wh.execute("INSERT INTO gate VALUES (1)")
    wh.commit()
    done = p.run("--due")
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = ledger.slot_runs("two")
    assert (first["status"], second["status"]) == ("failed", "success")
    assert f"committed by the failed run {first['run_id']}" in done.stdout, done.stdout
    assert wh.execute("SELECT task, run_id FROM hits ORDER BY rowid").fetchall() == [
        ("a", first["run_id"]), ("b", second["run_id"])]
