"""Statements never outlive their run on the server: an export past its timeout, and a run ended by
SIGTERM, leave nothing running in the process list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.faultkit import FaultProject, mysql_url, statements_running, wait_for_statement, wait_until
from tests.harness.mariadb import PrivateMariaDB

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, server: PrivateMariaDB, db: str) -> FaultProject:
    return FaultProject(tmp_path, {"warehouse": {"url": mysql_url(server.host, server.port, db)}})


def test_an_export_past_its_timeout_is_killed_on_the_server_and_leaves_no_file(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    project = _project(tmp_path, mdb, fresh_db)
    project.job("slow_export", {"database": "warehouse", "tasks": [{
        "name": "report", "timeout": 1,
        "export": {"query": "SELECT SLEEP(6) AS slept, 'export-timeout-probe' AS probe",
                   "path": "reports/slow.csv"}}]})
    started = time.monotonic()
    outcome = project.run("slow_export")
    took = time.monotonic() - started
    assert outcome.code == 1
    assert took < 5, f"the export ran {took:.1f}s past a 1s timeout"
    assert "timed out after 1s" in outcome.output and "killed on the server" in outcome.output
    assert [a.status for a in outcome.of("report")] == ["failed"]  # timeouts fail fast
    assert statements_running(mdb, fresh_db, "%export-timeout-probe%") == []
    assert not (tmp_path / "reports" / "slow.csv").exists()


def test_sigterm_during_a_statement_kills_it_on_the_server_and_records_the_run_interrupted(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    project = _project(tmp_path, mdb, fresh_db)
    project.job("slow", {"database": "warehouse", "tasks": [{
        "name": "wait", "sql": "SELECT SLEEP(30) AS slept, 'sigterm-probe' AS probe"}]})
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--conf", str(tmp_path / "conf"),
                             "--jobs", str(tmp_path / "jobs"), "--job", "slow"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_statement(mdb, fresh_db, "%sigterm-probe%")
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    wait_until(lambda: statements_running(mdb, fresh_db, "%sigterm-probe%") == [], timeout=3,
               what="the interrupted statement to leave the server's process list")
    run_id, attempts = project.last_run("slow")
    from runner.state.ledger import Ledger

    ledger = Ledger(project.state_url)
    try:
        assert ledger.history("slow", 1)[0]["status"] == "interrupted"
    finally:
        ledger.dispose()
