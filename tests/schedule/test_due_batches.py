"""`--due` over many jobs settles them in batches (state/lock's LOCKS_PER_CONNECTION jobs at a time: their
locks, one read of their slots, one transaction of their claims and missed stretches). Real `--due`
processes compete on one shared MariaDB state store after a day's outage; a signal stops a batch
half-way through."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from runner.cron import Schedule
from runner.run.executor import new_run_id
from runner.schedule.due import DUE_BATCH
from runner.state.ledger import runs
from runner.state.slots import SlotLedger, missed_slots
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject, stop, wait_for

MINUTELY = "* * * * *"


def seed(ledger: SlotLedger, jobs: list[str], slot: datetime) -> None:
    for job in jobs:
        run_id = new_run_id()
        ledger.claim(job, slot, run_id, slot.date().isoformat(), "cron")
        ledger.finish_run(run_id, "success", 1, 0)


def covered(ledger: SlotLedger, job: str) -> list[datetime]:
    """Every slot the job's runs stand for, each as often as it is recorded: a run's own slot, or each
    slot of a missed stretch."""
    out = []
    spans = {s["run_id"]: s for s in ledger.missed_spans(job)}
    for r in ledger.slot_runs(job):
        span = spans.get(r["run_id"])
        if span is None:
            out.append(r["slot"])
            continue
        assert r["status"] == "missed" and r["slot"] == span["last_slot"]
        slot, n = span["first_slot"], 0
        while slot <= span["last_slot"]:
            out.append(slot)
            slot, n = slot + timedelta(minutes=1), n + 1
        assert n == span["slots"], span
    return sorted(out)


def test_competing_due_processes_after_a_days_outage_record_every_slot_of_every_job_exactly_once(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """Three `--due` started at once over 2.5 batches of per-minute jobs whose last run was a day ago:
    every slot since is recorded once (a missed stretch, or the run of the latest slot), never twice
    and never left out, whichever process took which job's lock first; each latest slot ran once."""
    url = mdb.url(fresh_db)
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, state_url=url)
    names = [f"job{i:03d}" for i in range(DUE_BATCH * 5 // 2)]
    for name in names:
        p.job(name, {"schedule": MINUTELY, "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    ledger = SlotLedger(url)
    before = Schedule(MINUTELY, "UTC").latest_at_or_before(datetime.now(timezone.utc)) - timedelta(days=1)
    seed(ledger, names, before)

    procs = [p.start("--due") for _ in range(3)]
    outs = [proc.communicate(timeout=180)[0] for proc in procs]
    codes = [proc.returncode for proc in procs]
    assert all(code in (0, 3) for code in codes), outs
    assert any("missed slot(s) recorded as missed" in out for out in outs), outs

    latest = Schedule(MINUTELY, "UTC").latest_at_or_before(datetime.now(timezone.utc))
    for name in names:
        slots = covered(ledger, name)
        assert len(slots) == len(set(slots)), f"{name}: a slot recorded twice"
        last = slots[-1]
        assert latest - timedelta(minutes=3) <= last <= latest
        assert slots == [before + timedelta(minutes=k) for k in range(int((last - before) / timedelta(minutes=1)) + 1)], \
            f"{name}: a slot left out"
        done = [r for r in ledger.slot_runs(name) if r["slot"] > before]
        assert {r["status"] for r in done} <= {"missed", "success"}, done
        assert done[-1]["status"] == "success" and done[-1]["slot"] == last, done[-1]  # the latest slot ran
    with ledger.engine.connect() as conn:  # each stretch has its own missed run, and a day's worth of slots
        stretches = conn.execute(sa.select(sa.func.count(), sa.func.sum(missed_slots.c.slots))).one()
        missed_runs = conn.execute(sa.select(sa.func.count()).select_from(runs).where(
            runs.c.status == "missed")).scalar()
    assert stretches[0] >= len(names) and stretches[1] >= len(names) * 1438
    assert missed_runs >= stretches[0]
    history = p.run("--history", "--job", names[-1]).stdout
    assert " slots missed, " in history, history
    again = p.run("--due")
    assert again.returncode == 0, again.stderr
    assert "missed" not in again.stdout  # a minute may have begun meanwhile: its slot runs, nothing is missed
    ledger.dispose()


def test_a_signal_during_a_batch_records_its_runs_not_started_interrupted_and_leaves_their_slots_due(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """SIGTERM while the first job of a batch runs: its statement is killed and its run recorded
    interrupted; the jobs of the batch claimed after it start nothing, their runs are recorded
    interrupted (not left `running`) and their locks released, so the next `--due` runs all three."""
    p = SchedProject(tmp_path, {"mdb": mdb.url(fresh_db)})
    t = datetime.now(timezone.utc) - timedelta(hours=2)
    expr = f"{t.minute} {t.hour} * * *"
    latest = Schedule(expr, "UTC").latest_at_or_before(datetime.now(timezone.utc))
    names = ["a_slow", "b_next", "c_last"]
    for name in names:
        p.job(name, {"schedule": expr, "database": "mdb", "tasks": [{"name": "nap", "sql": "DO SLEEP(4)"}]})
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    seed(ledger, names, latest - timedelta(days=1))

    first = p.start("--due")
    try:
        wait_for("the first run", lambda: [r for r in ledger.slot_runs("a_slow") if r["status"] == "running"], 30)
        assert [r["status"] for r in ledger.slot_runs("c_last")] == ["success", "running"]  # claimed in the batch
        assert stop(first, signal.SIGTERM) == 130
    finally:
        stop(first, signal.SIGKILL)
    for name in names:
        last = ledger.slot_runs(name)[-1]
        assert (last["slot"], last["status"]) == (latest, "interrupted"), last
    for name in names[1:]:
        assert "not started (an earlier run of the same --due stopped)" in ledger.slot_runs(name)[-1]["error"]

    again = p.run("--due", timeout=90)
    assert again.returncode == 0, again.stderr + again.stdout
    for name in names:
        assert [r["status"] for r in ledger.slot_runs(name)] == ["success", "interrupted", "success"], name
    ledger.dispose()
