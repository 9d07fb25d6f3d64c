"""The daemon (`python -m runner --scheduler`) as real subprocesses: three of them on one MariaDB state
store run every slot exactly once, also after one is killed with SIGKILL in the middle of a run;
SIGTERM lets a running job finish and exits 0; SIGHUP reloads, and a job whose file turned invalid
keeps its old definition; slots missed while no daemon was up are found in the ledger at start-up."""

from __future__ import annotations

import re
import signal
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.cron import Schedule
from runner.run.executor import new_run_id
from runner.schedule.daemon import MAX_LEAD, SlotTrigger
from runner.state.ledger import runs
from runner.state.slots import SlotLedger
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject, seen_since, stop, wait_for
from tests.schedule.test_due import seed_success, two_hours_ago

SLOTS = 22  # slots covered by the three-daemon test, at one a second


def runs_of(ledger: SlotLedger, job: str, status: str | None = None) -> list[dict]:
    return [r for r in ledger.slot_runs(job) if status is None or r["status"] == status]


def test_three_daemons_run_every_slot_exactly_once_even_when_one_is_killed_mid_run(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    url = mdb.url(fresh_db)
    conn = mdb.connect(fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE ticks (run_id CHAR(32) PRIMARY KEY)")
    p = SchedProject(tmp_path, {"mdb": url}, state_url=url)
    p.job("tick", {"schedule": "* * * * * *", "rerun_abandoned": True, "database": "mdb", "tasks": [
        {"name": "tick", "sql": "INSERT INTO ticks (run_id) VALUES (:run_id); DO SLEEP(0.4)"}]})
    ledger = SlotLedger(url)
    daemons = [p.start("--scheduler", log=tmp_path / f"daemon{i}.log") for i in range(3)]
    try:
        first = wait_for("a first run", lambda: runs_of(ledger, "tick", "success"), 30)[0]["slot"]
        wait_for("a few slots", lambda: len(runs_of(ledger, "tick")) >= 6, 30)
        victim = wait_for("a run in progress", lambda: [r for r in runs_of(ledger, "tick", "running")
                                                        if r["pid"] in {d.pid for d in daemons}], 20, every=0.01)[0]
        daemon = next(d for d in daemons if d.pid == victim["pid"])
        daemon.send_signal(signal.SIGKILL)
        assert daemon.wait(timeout=10) == -signal.SIGKILL
        wait_for(f"{SLOTS} slots", lambda: len({r["slot"] for r in runs_of(ledger, "tick")}) >= SLOTS + 2, 60)
        last = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=2)
        survivors = [d for d in daemons if d is not daemon]
        assert [stop(d) for d in survivors] == [0, 0]
    finally:
        for d in daemons:
            stop(d, signal.SIGKILL)
    logs = "".join((tmp_path / f"daemon{i}.log").read_text() for i in range(3))

    runs = [r for r in runs_of(ledger, "tick") if first <= r["slot"] <= last]
    slots = [first + timedelta(seconds=i) for i in range(int((last - first).total_seconds()) + 1)]
    assert len(slots) >= SLOTS
    success = [r["slot"] for r in runs if r["status"] == "success"]
    assert sorted(success) == slots, logs  # every slot ran, and exactly once
    assert not [r for r in runs if r["status"] == "missed"], logs  # none missed while a daemon was alive
    abandoned = [r for r in runs if r["status"] == "abandoned"]
    assert [r["run_id"] for r in abandoned] == [victim["run_id"]], logs
    assert len({r["host"] + str(r["pid"]) for r in runs if r["status"] == "success"}) >= 2  # shared between daemons
    with conn.cursor() as cur:  # the killed run's INSERT was rolled back; every other run's is there once
        cur.execute("SELECT run_id FROM ticks")
        ticked = {row[0] for row in cur.fetchall()}
    success_ids = {r["run_id"] for r in runs_of(ledger, "tick", "success")}
    assert victim["run_id"] not in ticked and success_ids <= ticked


def test_sigterm_lets_the_running_job_finish_records_it_and_exits_0(tmp_path: Path, mdb: PrivateMariaDB,
                                                                    fresh_db: str) -> None:
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    expr, latest = two_hours_ago()
    p.job("slow", {"schedule": expr, "database": "mdb", "tasks": [{"name": "nap", "sql": "DO SLEEP(2)"}]})
    p.job("tick", {"schedule": "* * * * * *", "database": "mdb", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    seen_since(ledger.url, ["slow"], latest - timedelta(minutes=1))
    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("the slow run", lambda: runs_of(ledger, "slow", "running"), 30)
        daemon.send_signal(signal.SIGTERM)
        stopped_at = datetime.now(timezone.utc)
        assert daemon.wait(timeout=30) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert re.search(r"SIGTERM: starting no new runs; waiting up to 20s for \d running job\(s\): .*slow", log), log
    (run,) = runs_of(ledger, "slow")
    assert run["slot"] == latest and run["status"] == "success" and run["ended_at"] is not None
    assert run["ended_at"] > stopped_at.replace(tzinfo=None)  # it went on after the signal
    late = [r for r in runs_of(ledger, "tick") if r["started_at"] > stopped_at.replace(tzinfo=None)
            + timedelta(milliseconds=100)]
    assert not late, late  # nothing new started after SIGTERM


def test_sighup_reloads_and_a_job_whose_file_turned_invalid_keeps_its_old_definition(tmp_path: Path) -> None:
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    task = [{"name": "t", "sql": "SELECT 1"}]
    p.job("a", {"schedule": "* * * * * *", "database": "wh", "tasks": task})
    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("job a", lambda: runs_of(ledger, "a", "success"), 30)
        p.job("b", {"schedule": "* * * * * *", "database": "wh", "tasks": task})
        daemon.send_signal(signal.SIGHUP)
        wait_for("job b after the reload", lambda: runs_of(ledger, "b", "success"), 30)

        p.job("c", {"schedule": "every minute", "database": "nowhere", "tasks": task})
        (p.root / "jobs" / "b.yml").write_text("tasks: [")
        daemon.send_signal(signal.SIGHUP)
        log_file = tmp_path / "daemon.log"
        wait_for("the reload with problems", lambda: "problem(s) in job file(s)" in log_file.read_text(), 30)
        reloaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
        for job in ("a", "b"):  # both keep their schedules
            wait_for(f"job {job} after the failed reload",
                     lambda job=job: [r for r in runs_of(ledger, job, "success") if r["started_at"] > reloaded_at], 10)
        assert stop(daemon) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert "reloaded: 2 scheduled job(s): a, b" in log
    assert "reload: jobs/b.yml" in log and "YAML syntax error" in log
    assert "reload: jobs/c.yml:1 [schedule]: invalid cron expression 'every minute'" in log
    assert "reload: jobs/c.yml:4 [tasks.0.database]: unknown database 'nowhere'" in log
    assert ("reload: 3 problem(s) in job file(s) b, c (see --check); job(s) b keep the definition loaded before; "
            "not scheduled: c") in log
    assert not runs_of(ledger, "c")


def test_slots_missed_while_no_daemon_was_up_are_recorded_at_start_up(tmp_path: Path) -> None:
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    expr, latest = two_hours_ago()
    p.job("nightly", {"schedule": expr, "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    seed_success(ledger, "nightly", latest - timedelta(days=3))
    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("the catch-up run", lambda: runs_of(ledger, "nightly", "success")[1:], 30)
        assert stop(daemon) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    assert [(r["slot"], r["status"], r["trigger"]) for r in runs_of(ledger, "nightly")][1:] == [
        (latest - timedelta(days=2), "missed", "daemon"), (latest - timedelta(days=1), "missed", "daemon"),
        (latest, "success", "daemon")]
    assert "job nightly: 2 slot(s) missed and recorded as missed" in (tmp_path / "daemon.log").read_text()


def test_a_run_longer_than_stop_grace_is_stopped_recorded_interrupted_and_exits_130(tmp_path: Path) -> None:
    """SIGTERM with a job still running when stop_grace is over: its statement is stopped (SQLite is
    interrupted), its run recorded `interrupted`, and the daemon exits 130 and says so."""
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, settings={"stop_grace": 1})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    expr, latest = two_hours_ago()
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000000) SELECT COUNT(*) FROM n"
    p.job("long", {"schedule": expr, "database": "wh", "tasks": [{"name": "count", "sql": slow}]})
    seen_since(ledger.url, ["long"], latest - timedelta(minutes=1))
    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("the long run", lambda: runs_of(ledger, "long", "running"), 30)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 130
    finally:
        stop(daemon, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert "stop grace of 1s is over and job(s) long are still running: stopping them" in log, log
    assert "statement interrupted (SQLite)" in log and "Traceback" not in log
    assert [(r["slot"], r["status"]) for r in runs_of(ledger, "long")] == [(latest, "interrupted")]


def test_many_jobs_due_at_one_second_on_a_mysql_state_store_all_run(tmp_path: Path, mdb: PrivateMariaDB,
                                                                     fresh_db: str) -> None:
    """Twelve jobs due together: each holds its own GET_LOCK connection while it runs, more than the
    ledger's pool has, and every one of them still runs every slot."""
    url = mdb.url(fresh_db)
    p = SchedProject(tmp_path, {"mdb": url}, state_url=url)
    names = [f"j{i:02d}" for i in range(12)]
    for name in names:
        p.job(name, {"schedule": "*/2 * * * * *", "database": "mdb", "tasks": [{"name": "t", "sql": "DO SLEEP(0.3)"}]})
    ledger = SlotLedger(url)
    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("three slots of every job",
                 lambda: all(len(runs_of(ledger, n, "success")) >= 3 for n in names), 40)
        assert stop(daemon) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    for name in names:
        slots = [r["slot"] for r in runs_of(ledger, name) if r["status"] == "success"]
        assert slots == sorted(set(slots)), log
        steps = {(b - a).total_seconds() for a, b in zip(slots[1:], slots[2:])}  # after the start-up one
        assert steps <= {2.0}, (name, slots, log)
        assert not runs_of(ledger, name, "missed"), log


def test_two_daemons_and_due_claim_many_jobs_in_batches_and_run_each_slot_once(tmp_path: Path, mdb: PrivateMariaDB,
                                                                              fresh_db: str) -> None:
    """Forty jobs due every two seconds, two daemons and `--due` in a loop on one MariaDB state store:
    each daemon takes the locks a moment before the slot and claims the slots of the jobs it holds in
    one transaction at the slot's time. No slot runs twice and nearly all run, each claimed by one of
    the daemons, never before the slot."""
    url = mdb.url(fresh_db)
    conn = mdb.connect(fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE ticks (run_id CHAR(32) PRIMARY KEY, job VARCHAR(32) NOT NULL)")
    p = SchedProject(tmp_path, {"mdb": url}, state_url=url)
    names = [f"b{i:02d}" for i in range(40)]
    for name in names:
        p.job(name, {"schedule": "*/2 * * * * *", "database": "mdb", "tasks": [
            {"name": "t", "sql": "INSERT INTO ticks (run_id, job) VALUES (:run_id, :job)"}]})
    ledger = SlotLedger(url)
    logs = [tmp_path / f"daemon{i}.log" for i in range(2)]
    daemons = [p.start("--scheduler", log=log) for log in logs]
    done, codes = threading.Event(), []

    def due_loop() -> None:
        while not done.is_set():
            codes.append(p.run("--due").returncode)

    looker = threading.Thread(target=due_loop)
    looker.start()
    try:
        wait_for("both daemons started", lambda: all("scheduler started" in log.read_text() for log in logs), 60)
        begin = datetime.now(timezone.utc) + timedelta(seconds=3)
        wait_for("nine slots after both started", lambda: len({r["slot"] for r in runs_of(ledger, names[-1], "success")
                                                              if r["slot"] >= begin}) >= 9, 60)
        end = datetime.now(timezone.utc) - timedelta(seconds=3)
        done.set()
        looker.join(timeout=60)
        assert [stop(d) for d in daemons] == [0, 0]
    finally:
        done.set()
        for d in daemons:
            stop(d, signal.SIGKILL)
    text = "".join(log.read_text() for log in logs)
    assert "Traceback" not in text, text
    assert set(codes) <= {0, 3} and codes, codes
    every = [r for n in names for r in runs_of(ledger, n)]
    assert not [r for r in every if r["status"] not in ("success", "missed")], text
    window = [r for r in every if begin <= r["slot"] <= end]
    slots = {r["slot"] for r in window}
    assert len(slots) >= 7 and all(s.second % 2 == 0 for s in slots)
    ran = Counter((r["job"], r["slot"]) for r in window if r["status"] == "success")
    assert set(ran.values()) == {1}, [k for k, v in ran.items() if v > 1]  # no slot ran twice
    wanted = {(n, s) for n in names for s in slots}
    # A slot is skipped when another process holds the job's lock at the slot's time (a `--due` that
    # looked a moment before and found nothing due): the daemons find the job locked. A few, never most.
    assert set(ran) <= wanted and len(ran) >= 0.9 * len(wanted), sorted(wanted - set(ran))
    with conn.cursor() as cur:  # each success committed its task once
        cur.execute("SELECT run_id FROM ticks")
        ticked = [row[0] for row in cur.fetchall()]
    assert sorted(ticked) == sorted(r["run_id"] for r in every if r["status"] == "success")
    by_daemons = [r for r in window if r["trigger"] == "daemon"]
    assert all(r["started_at"] >= r["slot"].replace(tzinfo=None) for r in by_daemons)  # never claimed early
    # Which daemon wins a slot's jobs is a race: each takes the locks of up to 50 jobs in one statement,
    # so the first to ask usually holds all forty. What holds either way: the daemons claimed the slots,
    # none twice (above), every claim by one of the two.
    assert by_daemons and {r["pid"] for r in by_daemons} <= {d.pid for d in daemons}


def test_a_schedule_wakes_a_lead_before_each_slot_and_each_wake_up_belongs_to_its_slot() -> None:
    """Pure: the trigger fires `lead` seconds before each slot (capped by MAX_LEAD and a quarter of the
    time between slots), a wake-up names the slot it comes early for, and a late one names none."""
    trigger = SlotTrigger(Schedule("*/5 * * * * *", "UTC"), lead=0.3)
    slots = [datetime(2026, 12, 1, 1, 0, s, tzinfo=timezone.utc) for s in (0, 5, 10, 15)]
    fires, fire = [], trigger.get_next_fire_time(None, slots[0] - timedelta(seconds=1.5))
    for _ in slots:
        fires.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    assert fires == [s - timedelta(seconds=0.3) for s in slots]
    assert [trigger.coming(f) for f in fires] == slots
    assert trigger.coming(slots[1] + timedelta(milliseconds=10)) is None  # late: the slot is claimed at once
    trigger.learned(1.5)  # twice as long, but a quarter of the five seconds between slots at most
    assert trigger.early_by(slots[1]) == 1.25
    trigger.learned(0.01)  # a shorter look gives the lead up slowly
    assert trigger.lead == 0.8 * MAX_LEAD
    nightly = SlotTrigger(Schedule("30 2 * * *", "Europe/Berlin"), lead=5.0)  # at most MAX_LEAD
    slot = datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)  # 03:00 CEST: 02:30 is skipped that night
    first = nightly.get_next_fire_time(None, slot - timedelta(hours=3))
    assert first == slot - timedelta(seconds=MAX_LEAD) and nightly.coming(first) == slot


def seed_failures(ledger: SlotLedger, job: str, slot: datetime, count: int, ended_ago: timedelta) -> None:
    """`count` failed runs of the slot, each taking its claim over from the one before, as cron lines
    and --due leave them; the last one ended `ended_ago`."""
    before = None
    for _ in range(count):
        run_id = new_run_id()
        ledger.claim(job, slot, run_id, slot.date().isoformat(), "cron", takes_over=before)
        ledger.finish_run(run_id, "failed", 1, 0, "task t failed")
        before = run_id
    ended = (datetime.now(timezone.utc) - ended_ago).replace(tzinfo=None)
    with ledger.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == before).values(ended_at=ended))


def test_the_daemon_runs_a_failed_slot_again_after_a_pause_and_a_few_times_only(tmp_path: Path) -> None:
    """The daemon looks every 30 seconds; a slot whose run failed is run again no sooner than five
    minutes after the failure, and no more once the slot has failed three times (--due still can)."""
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    expr, latest = two_hours_ago()
    for name in ("ready", "recent", "spent"):
        p.job(name, {"schedule": expr, "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    seed_failures(ledger, "ready", latest, 2, timedelta(minutes=10))
    seed_failures(ledger, "recent", latest, 1, timedelta(minutes=1))
    seed_failures(ledger, "spent", latest, 3, timedelta(minutes=10))
    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("the re-run of the ready slot", lambda: runs_of(ledger, "ready", "success"), 30)
        assert stop(daemon) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    assert [(r["slot"], r["status"], r["trigger"]) for r in runs_of(ledger, "ready")] == [
        (latest, "failed", "cron"), (latest, "failed", "cron"), (latest, "success", "daemon")], log
    assert "failed; running its slot again (2 failed run(s) of the slot so far)" in log, log
    assert [r["status"] for r in runs_of(ledger, "recent")] == ["failed"], log
    assert [r["status"] for r in runs_of(ledger, "spent")] == ["failed"] * 3, log
    done = p.run("--due", "--job", "spent")  # the catch-up line is not limited
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["status"] for r in runs_of(ledger, "spent")] == ["failed"] * 3 + ["success"]
