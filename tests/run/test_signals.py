"""A signal means what it says, during every kind of task: SIGTERM or SIGINT sent to a real
`python -m runner --job` while it loads (LOAD DATA fast path, multi-row INSERT path, batched INSERT
path), exports (MariaDB and SQLite) or runs a statement (SQLite) stops the statement on the server,
leaves the target as it was (the old table of a replace, no staging table, the old report file),
records the run and its attempt `interrupted`, and exits 130 within seconds, without a traceback."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from runner.state.ledger import Ledger
from tests.faultkit import FaultProject, execute, rows_of, statements_running, wait_until
from tests.harness.mariadb import PrivateMariaDB
from tests.loadkit import mysql_db, other_db

assert other_db  # a fixture

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROWS = 4000
SLOW = "SLEEP(0.002) = 0"  # per row: the source query streams for about 8 s
OLD = [(1, "old one"), (2, "old two")]


def start(project: FaultProject, job: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", "--conf", str(project.root / "conf"), "--jobs",
                             str(project.root / "jobs"), "--job", job], cwd="/", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def interrupt(proc: subprocess.Popen[str], sig: int, when: Callable[[], bool], what: str) -> tuple[float, str]:
    """Send `sig` once `when()` holds; (seconds from the signal to the exit, stderr)."""
    try:
        wait_until(lambda: when() or proc.poll() is not None, timeout=30, what=what)
        assert proc.poll() is None, f"the job ended before {what}: {proc.communicate()}"
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        return time.monotonic() - sent, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def assert_interrupted(project: FaultProject, job: str, proc: subprocess.Popen[str], took: float, err: str,
                       sig: int) -> None:
    assert proc.returncode == 130, err
    assert took < 6, f"exit took {took:.1f}s after the signal:\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert f"interrupted by {signal.Signals(sig).name}" in err, err
    ledger = Ledger(project.state_url)
    try:
        run = ledger.history(job, 1)[0]
        assert run["status"] == "interrupted", run
        attempts = ledger.attempts_of(run["run_id"])
    finally:
        ledger.dispose()
    assert [a.status for a in attempts] == ["interrupted"], attempts


def seed_source(server: PrivateMariaDB, db: str) -> None:
    execute(server, db, "CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(40))",
            "INSERT INTO src (id, v) SELECT seq, CONCAT('new ', seq) FROM seq_1_to_%d" % SOURCE_ROWS)


def load_job(target: str, mode: str = "replace") -> dict[str, Any]:
    return {"database": target, "tasks": [{"name": "copy", "load": {
        "source": "shop", "query": f"SELECT id, v FROM src WHERE {SLOW}", "table": "dst", "mode": mode}}]}


@pytest.mark.parametrize("sig, path", [(signal.SIGTERM, "LOAD DATA"), (signal.SIGINT, "LOAD DATA"),
                                       (signal.SIGTERM, "multi-row INSERT")])
def test_a_signal_during_a_mariadb_to_mariadb_load_keeps_the_old_table(
        sig: int, path: str, tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, other_db: str) -> None:
    seed_source(mdb, fresh_db)
    execute(mdb, other_db, "CREATE TABLE dst (id INT PRIMARY KEY, v VARCHAR(40))",
            "INSERT INTO dst VALUES (1, 'old one'), (2, 'old two')")
    project = FaultProject(tmp_path, {"shop": mysql_db(mdb, fresh_db), "wh": mysql_db(mdb, other_db)})
    project.job("copy", load_job("wh"))
    if path == "multi-row INSERT":
        execute(mdb, None, "SET GLOBAL local_infile = 0")
    try:
        proc = start(project, "copy")
        # LOAD DATA runs while the rows stream; the INSERT path sends a statement per megabyte of rows
        took, err = interrupt(proc, sig, lambda: bool(statements_running(mdb, fresh_db, "%SLEEP(0.002)%")) and (
            path != "LOAD DATA" or bool(statements_running(mdb, other_db, "%LOAD DATA%"))), f"the {path} feed to run")
    finally:
        execute(mdb, None, "SET GLOBAL local_infile = 1")
    assert_interrupted(project, "copy", proc, took, err, sig)
    assert rows_of(mdb, other_db, "SELECT id, v FROM dst ORDER BY id") == OLD  # the old table, whole
    assert rows_of(mdb, other_db, "SHOW TABLES LIKE 'dst%'") == [("dst",)]  # the staging table is gone
    wait_until(lambda: not statements_running(mdb, fresh_db, "%SLEEP(0.002)%")
               and not statements_running(mdb, other_db, "%dst%"), timeout=3,
               what="the source query and the load to leave the servers")
    assert "killed on the server" in err, err


def test_a_signal_during_a_batched_load_into_sqlite_keeps_the_old_rows(tmp_path: Path, mdb: PrivateMariaDB,
                                                                        fresh_db: str) -> None:
    seed_source(mdb, fresh_db)
    target = tmp_path / "var" / "wh.db"
    target.parent.mkdir(parents=True)
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO dst VALUES (?, ?)", OLD)
    conn.commit()
    conn.close()
    project = FaultProject(tmp_path, {"shop": mysql_db(mdb, fresh_db), "wh": {"url": f"sqlite:///{target}"}})
    job = load_job("wh")
    job["tasks"][0]["load"]["batch_rows"] = 100
    project.job("copy", job)
    proc = start(project, "copy")
    took, err = interrupt(proc, signal.SIGTERM, lambda: bool(statements_running(mdb, fresh_db, "%SLEEP(0.002)%")),
                          "the source query to run")
    assert_interrupted(project, "copy", proc, took, err, signal.SIGTERM)
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT id, v FROM dst ORDER BY id").fetchall() == OLD
    conn.close()
    wait_until(lambda: not statements_running(mdb, fresh_db, "%SLEEP(0.002)%"), timeout=3,
               what="the source query to leave the server")


def _old_report(tmp_path: Path) -> Path:
    report = tmp_path / "reports" / "out.csv"
    report.parent.mkdir(parents=True)
    report.write_text("id\nthe old report\n")
    return report


def _temporary_files(report: Path) -> list[Path]:
    return [p for p in report.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_mariadb_export_keeps_the_old_file(sig: int, tmp_path: Path, mdb: PrivateMariaDB,
                                                            fresh_db: str) -> None:
    seed_source(mdb, fresh_db)
    report = _old_report(tmp_path)
    project = FaultProject(tmp_path, {"shop": mysql_db(mdb, fresh_db)})
    project.job("report", {"database": "shop", "tasks": [{"name": "export", "export": {
        "query": f"SELECT id, v FROM src WHERE {SLOW}", "path": "reports/out.csv"}}]})
    proc = start(project, "report")
    took, err = interrupt(proc, sig, lambda: bool(_temporary_files(report)) and bool(
        statements_running(mdb, fresh_db, "%SLEEP(0.002)%")), "the export to stream")
    assert_interrupted(project, "report", proc, took, err, sig)
    assert report.read_text() == "id\nthe old report\n" and not _temporary_files(report)
    wait_until(lambda: not statements_running(mdb, fresh_db, "%SLEEP(0.002)%"), timeout=3,
               what="the export's query to leave the server")
    assert "Unknown thread" not in err


SQLITE_ROWS = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50000000) "


def test_a_signal_during_a_sqlite_export_keeps_the_old_file(tmp_path: Path) -> None:
    report = _old_report(tmp_path)
    project = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}})
    project.job("report", {"database": "wh", "tasks": [{"name": "export", "export": {
        "query": SQLITE_ROWS + "SELECT x, x * 2 AS y FROM n", "path": "reports/out.csv"}}]})
    proc = start(project, "report")
    took, err = interrupt(proc, signal.SIGTERM, lambda: bool(_temporary_files(report)), "the export to stream")
    assert_interrupted(project, "report", proc, took, err, signal.SIGTERM)
    assert report.read_text() == "id\nthe old report\n" and not _temporary_files(report)


def test_a_signal_during_a_long_sqlite_statement_interrupts_it(tmp_path: Path) -> None:
    project = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}})
    project.job("count", {"database": "wh", "tasks": [{"name": "count", "sql": SQLITE_ROWS + "SELECT count(*) FROM n"}]})
    proc = start(project, "count")
    recorded: list[float] = []

    def running() -> bool:  # the attempt is recorded just before its statement starts; it runs for seconds
        if not recorded and project.attempts_so_far("count") > 0:
            recorded.append(time.monotonic())
        return bool(recorded) and time.monotonic() - recorded[0] > 1

    took, err = interrupt(proc, signal.SIGINT, running, "the statement to run")
    assert_interrupted(project, "count", proc, took, err, signal.SIGINT)
    assert "statement interrupted (SQLite)" in err
