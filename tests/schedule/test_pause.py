"""A pause made by one process is honoured by another's running daemon, on a shared MariaDB state
store (real processes): the slots in the pause are recorded as paused, none as missed, and after the
resume the daemon goes on from the next slot."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.state.slots import SlotLedger
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject, stop, wait_for


def test_a_pause_from_another_process_is_honoured_by_the_daemon(tmp_path: Path, mdb: PrivateMariaDB,
                                                               fresh_db: str) -> None:
    url = mdb.url(fresh_db)
    p = SchedProject(tmp_path, {"mdb": url}, state_url=url)
    p.job("tick", {"schedule": "*/2 * * * * *", "database": "mdb", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    ledger = SlotLedger(url)

    def runs(status: str) -> list[dict]:
        return [r for r in ledger.slot_runs("tick") if r["status"] == status]

    daemon = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        wait_for("two runs", lambda: len(runs("success")) >= 2, 30)
        paused = p.run("--pause", "tick", "--reason", "warehouse migration")
        assert paused.returncode == 0, paused.stderr
        paused_at = datetime.now(timezone.utc)
        wait_for("two paused slots", lambda: len(runs("paused")) >= 2, 30)
        resuming_at = datetime.now(timezone.utc)  # slots from here on may run: the resume is under way
        resumed = p.run("--resume", "tick")
        assert resumed.returncode == 0, resumed.stderr
        resumed_at = datetime.now(timezone.utc)
        wait_for("a run after the resume", lambda: [r for r in runs("success") if r["slot"] > resumed_at], 30)
        assert stop(daemon) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    log = (tmp_path / "daemon.log").read_text()
    every = ledger.slot_runs("tick")
    assert not [r for r in every if r["status"] == "missed"], log
    in_pause = [r for r in every if paused_at + timedelta(seconds=0.5) < r["slot"] < resuming_at]
    assert in_pause and {r["status"] for r in in_pause} == {"paused"}, [(r["slot"], r["status"]) for r in every]
    assert all("warehouse migration" in r["error"] for r in in_pause)
    slots = [r["slot"] for r in every]
    assert slots == sorted(set(slots)), "one run per slot"
    assert "job tick is paused (paused by " in log
