"""Retention and upgrades of the state store: a ledger of 100k runs (built with executemany) is pruned
to history_days in small batches, each job keeping its latest slot's claim; markers follow the same
retention in batches; a ledger made by the previous version is opened, upgraded and used."""

from __future__ import annotations

import io
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from runner import clock
from runner.state import markers
from runner.state.ledger import Ledger, attempts, runs
from runner.state.retention import prune, prune_due
from runner.state.slots import SlotLedger, slots
from tests.fixtures.core import run_main, write_project

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def fill(ledger: SlotLedger, jobs: int, per_job: int, every: timedelta) -> None:
    """`per_job` runs of each job, one per `every` back from NOW, each with one attempt and a claim."""
    ledger.ensure_schema()
    run_rows, attempt_rows, claim_rows = [], [], []
    for j in range(jobs):
        for i in range(per_job):
            at = (NOW - every * (i + 1)).replace(tzinfo=None)
            run_id = uuid.uuid4().hex
            run_rows.append(dict(run_id=run_id, job=f"job{j}", run_date=at.date().isoformat(), slot=at,
                                 trigger="daemon", host="h", pid=1, started_at=at, ended_at=at, status="success",
                                 attempts=1, rows=0))
            attempt_rows.append(dict(run_id=run_id, task="t", attempt=1, started_at=at, ended_at=at,
                                     status="success"))
            claim_rows.append(dict(job=f"job{j}", slot=at, run_id=run_id, trigger="daemon", host="h", pid=1,
                                   claimed_at=at))
    with ledger.engine.begin() as conn:
        conn.execute(runs.insert(), run_rows)
        conn.execute(attempts.insert(), attempt_rows)
        conn.execute(slots.insert(), claim_rows)


def count(ledger: Ledger, table: sa.Table) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_a_ledger_of_100k_runs_is_pruned_in_small_batches(tmp_path: Path) -> None:
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'state.db'}")
    fill(ledger, jobs=10, per_job=10_000, every=timedelta(hours=1))  # ~417 days each
    assert count(ledger, runs) == 100_000 and prune_due(ledger, 400, NOW)
    kept = sum(1 for i in range(10_000) if timedelta(hours=i + 1) <= timedelta(days=400))
    deleted, batches = prune(ledger, 400, NOW, batch=2000, budget=None)
    assert deleted == 10 * (10_000 - kept)
    assert batches == -(-deleted // 2000)  # one short transaction per 2,000 runs
    assert count(ledger, runs) == 10 * kept and count(ledger, attempts) == 10 * kept
    assert count(ledger, slots) == 10 * kept
    assert not prune_due(ledger, 400, NOW)
    assert prune(ledger, 400, NOW) == (0, 0)


def test_each_job_keeps_the_claim_of_its_latest_slot(tmp_path: Path) -> None:
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'state.db'}")
    fill(ledger, jobs=2, per_job=3, every=timedelta(days=500))  # every run is past the retention
    assert prune(ledger, 400, NOW, budget=None)[0] == 6
    assert count(ledger, runs) == 0
    latest = ledger.jobs_slots(["job0", "job1"])
    assert {j: s.last for j, s in latest.items()} == {j: NOW - timedelta(days=500) for j in ("job0", "job1")}


def test_prune_is_bounded_per_call(tmp_path: Path, monkeypatch) -> None:
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'state.db'}")
    fill(ledger, jobs=1, per_job=3000, every=timedelta(days=1))
    ticks = iter(range(1000))
    monkeypatch.setattr(clock, "monotonic", lambda: float(next(ticks)))
    deleted, batches = prune(ledger, 400, NOW, batch=500, budget=2.5)  # each batch "takes" a second
    assert batches == 2 and deleted == 1000 and prune_due(ledger, 400, NOW)


def test_the_due_line_prunes_what_history_days_leaves_out(tmp_path: Path) -> None:
    project = write_project(tmp_path, {}, runner="timezone: UTC\nhistory_days: 30\n")
    ledger = SlotLedger(f"sqlite:///{project / 'var' / 'runner-state.db'}")
    fill(ledger, jobs=1, per_job=100, every=timedelta(days=1))
    real_now = datetime.now(timezone.utc)
    assert run_main(project, "--due")[0] == 0
    left = [r["started_at"] for r in ledger.history(limit=1000)]
    assert left and min(left) >= (real_now - timedelta(days=30)).replace(tzinfo=None) - timedelta(minutes=1)


def test_markers_older_than_the_retention_are_pruned_in_batches(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    markers.ensure_table(engine)
    old = (NOW - timedelta(days=401)).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(markers.markers_table.insert(), [
            dict(run_id=f"r{i}", task="t", attempt=1, rows_affected=0,
                 committed_at=old if i < 2500 else NOW.replace(tzinfo=None)) for i in range(3000)])
    assert markers.prune(engine, (NOW - timedelta(days=400)).replace(tzinfo=None), batch=1000) == 2500
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(markers.markers_table)).scalar() == 500
        assert "ix_runner_task_markers_committed" in {i["name"] for i in sa.inspect(conn).get_indexes(markers.TABLE)}


# The ledger as the previous version made it: no origins, pauses, first sightings, watermark changes,
# and no index on started_at.
OLD_SCHEMA = """
CREATE TABLE runner_runs (run_id VARCHAR(32) PRIMARY KEY, job VARCHAR(128) NOT NULL, run_date VARCHAR(10) NOT NULL,
  slot DATETIME, "trigger" VARCHAR(16) NOT NULL, host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL,
  started_at DATETIME NOT NULL, ended_at DATETIME, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL,
  "rows" BIGINT NOT NULL, error TEXT);
CREATE INDEX ix_runner_runs_job_started ON runner_runs (job, started_at);
CREATE INDEX ix_runner_runs_job_slot ON runner_runs (job, slot);
CREATE TABLE runner_task_attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id VARCHAR(32) NOT NULL,
  task VARCHAR(128) NOT NULL, attempt INTEGER NOT NULL, started_at DATETIME NOT NULL, ended_at DATETIME,
  status VARCHAR(16) NOT NULL, "rows" BIGINT, errno INTEGER, error TEXT);
CREATE INDEX ix_runner_task_attempts_run_id ON runner_task_attempts (run_id);
CREATE TABLE runner_watermarks (job VARCHAR(128) NOT NULL, task VARCHAR(128) NOT NULL, value TEXT,
  updated_at DATETIME NOT NULL, PRIMARY KEY (job, task));
CREATE TABLE runner_slots (job VARCHAR(128) NOT NULL, slot DATETIME NOT NULL, run_id VARCHAR(32) NOT NULL,
  "trigger" VARCHAR(16) NOT NULL, host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, claimed_at DATETIME NOT NULL,
  PRIMARY KEY (job, slot));
INSERT INTO runner_runs VALUES ('0123456789abcdef0123456789abcdef', 'two', '2026-11-01', NULL, 'manual', 'h', 1,
  '2026-11-01 06:00:00.000000', '2026-11-01 06:00:01.000000', 'failed', 1, 0, 'it broke');
INSERT INTO runner_watermarks VALUES ('two', 'copy', '{"value": {"type": "int", "text": "41"}}',
  '2026-11-01 06:00:01.000000');
"""

TWO = """\
database: warehouse
tasks:
  - name: a
    sql: SELECT 1
"""


def test_a_ledger_made_by_the_previous_version_is_upgraded_when_opened(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"two": TWO})
    (project / "var").mkdir()
    db = sqlite3.connect(project / "var" / "runner-state.db")
    db.executescript(OLD_SCHEMA)
    db.close()
    out = io.StringIO()
    code, text = run_main(project, "--history", "--status", "failed")
    assert code == 0 and "0123456" in text and "it broke" in text, text
    code, _ = run_main(project, "--pause", "two")
    assert code == 0
    code, text = run_main(project, "--rerun", "01234567", "--force")
    assert code == 0, text
    db = sqlite3.connect(project / "var" / "runner-state.db")
    indexes = {r[1] for r in db.execute("SELECT type, name FROM sqlite_master WHERE type = 'index'")}
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ix_runner_runs_started", "ix_runner_runs_status_started"} <= indexes
    assert {"runner_pauses", "runner_jobs_seen", "runner_run_origins", "runner_watermark_changes"} <= tables
    assert db.execute("SELECT COUNT(*) FROM runner_runs").fetchone() == (2,)
    assert out.getvalue() == ""
