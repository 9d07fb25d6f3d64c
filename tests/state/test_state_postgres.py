"""The state store on PostgreSQL: the same ledger, slot and marker tables, and the job lock as a session
advisory lock (pg_try_advisory_lock). A second start exits 3 naming the holder; a lock lost with its
connection (pg_terminate_backend) stops the run before its next task; three daemons sharing the store
run every slot exactly once, even when one is killed mid-run. Real subprocesses, the private PostgreSQL."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.state.ledger import Ledger
from runner.state.lock import advisory_key, lock_name
from runner.state.slots import SlotLedger
from tests.harness.postgres import PrivatePostgres
from tests.schedkit import SchedProject, stop, wait_for
from tests.state.test_lock import HOLDER, running


def test_second_start_exits_3_naming_the_holder_with_an_advisory_lock(tmp_path: Path, pg: PrivatePostgres,
                                                                        fresh_pg: str) -> None:
    url = pg.url(fresh_pg)
    p = SchedProject(tmp_path, {"pg": url}, state_url=url)
    p.job("slow", {"database": "pg", "tasks": [{"name": "nap", "sql": "SELECT pg_sleep(3)"}]})
    ledger = Ledger(url)
    first = p.start("--job", "slow")
    try:
        wait_for("the first start to be running", lambda: running(ledger, "slow"), 30)
        key = advisory_key(lock_name(fresh_pg, "slow"))
        assert pg.rows(fresh_pg, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                                 "classid = %s AND objid = %s", ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)) == [(1,)]
        second = p.run("--job", "slow")
        assert second.returncode == 3, second.stderr + second.stdout
        m = HOLDER.search(second.stderr + second.stdout)
        assert m and m.group(1) == "slow" and int(m.group(2)) == first.pid, second.stderr
        assert first.wait(timeout=60) == 0
    finally:
        stop(first)
    assert [r["status"] for r in ledger.history("slow")] == ["success"]
    assert pg.rows(fresh_pg, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]  # released


def test_a_lost_advisory_lock_stops_the_run_before_its_next_task(tmp_path: Path, pg: PrivatePostgres,
                                                                 fresh_pg: str) -> None:
    url = pg.url(fresh_pg)
    p = SchedProject(tmp_path, {"pg": url}, state_url=url)
    p.job("two", {"database": "pg", "tasks": [
        {"name": "first", "sql": "SELECT pg_sleep(2)"},
        {"name": "second", "depends_on": ["first"], "sql": "CREATE TABLE reached (n INT)", "idempotent": True}]})
    ledger = Ledger(url)
    proc = p.start("--job", "two")
    try:
        wait_for("the run", lambda: running(ledger, "two"), 30)
        (holder,) = pg.rows(fresh_pg, "SELECT connection_id FROM runner_lock_holders WHERE job = 'two'")[0]
        assert pg.rows(fresh_pg, "SELECT pg_terminate_backend(%s)", (holder,)) == [(True,)]
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1, out
    finally:
        stop(proc)
    assert "the job's lock was lost (its state store connection dropped), so task second was not started" in out
    assert "unexpected error" not in out and "Traceback" not in out, out
    (run,) = ledger.history("two")
    assert run["status"] == "failed"
    assert pg.rows(fresh_pg, "SELECT to_regclass('reached')") == [(None,)]


def test_three_daemons_on_a_postgres_state_store_run_every_slot_exactly_once(tmp_path: Path, pg: PrivatePostgres,
                                                                             fresh_pg: str) -> None:
    url = pg.url(fresh_pg)
    pg.execute(fresh_pg, "CREATE TABLE ticks (run_id CHAR(32) PRIMARY KEY)")
    p = SchedProject(tmp_path, {"pg": url}, state_url=url)
    p.job("tick", {"schedule": "* * * * * *", "rerun_abandoned": True, "database": "pg", "tasks": [
        {"name": "tick", "sql": "INSERT INTO ticks (run_id) VALUES (:run_id); SELECT pg_sleep(0.4)"}]})
    ledger = SlotLedger(url)

    def runs(status: str | None = None) -> list[dict]:
        return [r for r in ledger.slot_runs("tick") if status is None or r["status"] == status]

    daemons = [p.start("--scheduler", log=tmp_path / f"daemon{i}.log") for i in range(3)]
    try:
        first = wait_for("a first run", lambda: runs("success"), 30)[0]["slot"]
        victim = wait_for("a run in progress", lambda: [r for r in runs("running")
                                                        if r["pid"] in {d.pid for d in daemons}], 20, every=0.01)[0]
        daemon = next(d for d in daemons if d.pid == victim["pid"])
        daemon.send_signal(signal.SIGKILL)
        assert daemon.wait(timeout=10) == -signal.SIGKILL
        wait_for("12 slots", lambda: len({r["slot"] for r in runs()}) >= 14, 60)
        last = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=2)
        assert [stop(d) for d in daemons if d is not daemon] == [0, 0]
    finally:
        for d in daemons:
            stop(d, signal.SIGKILL)
    logs = "".join((tmp_path / f"daemon{i}.log").read_text() for i in range(3))
    window = [r for r in runs() if first <= r["slot"] <= last]
    slots = [first + timedelta(seconds=i) for i in range(int((last - first).total_seconds()) + 1)]
    assert len(slots) >= 10
    assert sorted(r["slot"] for r in window if r["status"] == "success") == slots, logs  # each slot once
    ticked = {r[0] for r in pg.rows(fresh_pg, "SELECT run_id FROM ticks")}
    succeeded = {r["run_id"] for r in runs("success")}
    assert succeeded <= ticked  # every successful run's row is there; a killed run's row never committed
    assert len(ticked - succeeded) == 0, logs
