"""The operator's morning-after verbs through main(argv) on a SQLite state store, with the clock
injected: --pause/--resume (paused slots, not missed, and not caught up), a first --due that runs
nothing old, --due --dry-run, --history filters and JSON, --list with pauses, misspelt names, unused
--param, --dry-run statements and watermarks, and a plain --job noticing a run its killed process left."""

from __future__ import annotations

import getpass
import json
import socket
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner import clock
from runner.state.jobstate import JobState
from runner.state.ledger import Ledger
from runner.state.slots import SlotLedger
from tests.fixtures.core import clean_env, run_main, write_project

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)  # a Monday

TICK = """\
description: Every ten minutes
schedule: "*/10 * * * *"
database: warehouse
tasks:
  - name: tick
    idempotent: true
    sql: |
      CREATE TABLE IF NOT EXISTS ticks (day TEXT, run_id TEXT);
      INSERT INTO ticks VALUES (:run_date, :run_id)
"""


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: datetime):
        self.at = at
        monkeypatch.setattr(clock, "now", lambda: self.at)

    def set(self, minutes: float) -> None:
        self.at = T0 + timedelta(minutes=minutes)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch, T0)


def state_url(project: Path) -> str:
    return f"sqlite:///{project / 'var' / 'runner-state.db'}"


def slot_statuses(project: Path, job: str) -> list[tuple[str, str, str]]:
    ledger = SlotLedger(state_url(project))
    try:
        return [(r["slot"].strftime("%H:%M"), r["status"], r["trigger"]) for r in ledger.slot_runs(job)]
    finally:
        ledger.dispose()


def test_a_first_due_runs_nothing_old_and_later_slots_run(tmp_path: Path, now: Clock) -> None:
    """Installed at 06:05: the 06:00 slot fell before the state store saw the job, so the first --due
    records the sighting and runs nothing; 06:10 is the job's first slot to run."""
    project = write_project(tmp_path, {"tick": TICK})
    now.set(5)
    code, out = run_main(project, "--due", "--dry-run")
    assert code == 0 and "tick: first look of this state store at the job" in out, out
    assert not (project / "var").exists(), "--due --dry-run creates nothing"
    code, out = run_main(project, "--due")
    assert (code, out.strip()) == (0, "nothing due")
    assert slot_statuses(project, "tick") == []
    now.set(11)
    code, out = run_main(project, "--due", "--dry-run")
    assert code == 0 and "tick: would run slot 2026-11-30 06:10:00Z (60s ago, within the grace of 86400s)" in out
    assert slot_statuses(project, "tick") == [], "the dry run claimed nothing"
    assert run_main(project, "--due")[0] == 0
    assert slot_statuses(project, "tick") == [("06:10", "success", "due")]
    now.set(45)
    code, out = run_main(project, "--due", "--dry-run")
    assert "tick: 2 slot(s) would be recorded as missed (2026-11-30 06:20:00Z .. 2026-11-30 06:30:00Z)" in out, out
    assert "would run slot 2026-11-30 06:40:00Z" in out


def test_by_name_a_never_seen_job_runs_its_latest_slot(tmp_path: Path, now: Clock) -> None:
    """The job's own cron line (--due --job NAME) fires at its slot: the slot runs even on a fresh store."""
    project = write_project(tmp_path, {"tick": TICK})
    now.set(0.1)
    assert run_main(project, "--due", "--job", "tick")[0] == 0
    assert slot_statuses(project, "tick") == [("06:00", "success", "cron")]


def test_pause_records_slots_as_paused_and_resume_catches_none_up(tmp_path: Path, now: Clock,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"tick": TICK})
    now.set(1)
    assert run_main(project, "--due", "--job", "tick")[0] == 0  # 06:00 ran
    code, out = run_main(project, "--pause", "tick", "--reason", "warehouse  migration")
    assert code == 0 and "tick: paused by " in out and ": warehouse migration;" in out, out
    code, out = run_main(project, "--pause", "tick")
    assert code == 0 and "was already paused" in out
    code, out = run_main(project, "--list")
    assert " paused " in out.splitlines()[1] and "tick: paused by" in out and "warehouse migration" in out, out
    (doc,) = json.loads(run_main(project, "--list", "--format", "json")[1])["jobs"]
    assert doc["paused"] and doc["reason"] == "warehouse migration"
    assert doc["paused_by"] == f"{getpass.getuser()}@{socket.gethostname()}", doc  # who: user@host

    now.set(35)
    code, out = run_main(project, "--due")
    assert code == 0 and "tick: paused; 3 slot(s) recorded as paused" in out, out
    assert slot_statuses(project, "tick") == [("06:00", "success", "cron"), ("06:10", "paused", "due"),
                                              ("06:20", "paused", "due"), ("06:30", "paused", "due")]
    capsys.readouterr()
    code, _ = run_main(project, "--job", "tick")
    err = capsys.readouterr().err
    assert code == 2 and "job tick is paused by " in err and "run it anyway with --job tick --force" in err, err
    assert run_main(project, "--job", "tick", "--force")[0] == 0

    code, out = run_main(project, "--resume", "tick")
    assert code == 0 and "tick: resumed (it was paused by" in out and "--due --job tick runs its latest slot" in out
    now.set(38)
    code, out = run_main(project, "--due")
    assert (code, out.strip()) == (0, "nothing due"), "the paused slots are not caught up"
    code, out = run_main(project, "--due", "--job", "tick", "--dry-run")
    assert "would run slot 2026-11-30 06:30:00Z again: its run" in out and "recorded as paused" in out, out
    assert run_main(project, "--due", "--job", "tick")[0] == 0  # asked by name: the latest slot runs
    now.set(41)
    assert run_main(project, "--due")[0] == 0
    assert [s for s in slot_statuses(project, "tick") if s[1] != "paused"] == [
        ("06:00", "success", "cron"), ("06:30", "success", "cron"), ("06:40", "success", "due")]
    code, out = run_main(project, "--history", "--status", "paused", "--format", "json")
    assert code == 0 and [d["slot"][11:16] for d in json.loads(out)] == ["06:30", "06:20", "06:10"], out
    assert all(d["error"].startswith("paused by ") for d in json.loads(out))
    assert not [s for s in slot_statuses(project, "tick") if s[1] == "missed"]


def test_enabled_false_pauses_a_job_from_its_file(tmp_path: Path, now: Clock,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"tick": "enabled: false\n" + TICK})
    JobState(Ledger(state_url(project))).see(["tick"], T0 - timedelta(minutes=1))
    now.set(21)
    code, out = run_main(project, "--due")
    assert code == 0 and "tick: paused; 3 slot(s) recorded as paused" in out, out
    capsys.readouterr()
    assert run_main(project, "--job", "tick")[0] == 2
    assert "paused (enabled: false in jobs/tick.yml)" in capsys.readouterr().err
    code, out = run_main(project, "--list")
    assert "tick: enabled: false in jobs/tick.yml" in out


DAYS = """\
description: Fails on the third
database: warehouse
params: {region: north}
tasks:
  - name: setup
    idempotent: true
    sql: CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY CHECK (day <> '2026-11-03'), region TEXT)
  - name: record
    depends_on: [setup]
    sql: INSERT INTO days (day, region) VALUES (:run_date, :region)
"""


def test_history_filters_json_and_misspelt_names(tmp_path: Path, now: Clock,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"days": DAYS, "tick": TICK})
    assert run_main(project, "--job", "days", "--date", "2026-11-01..2026-11-02")[0] == 0
    now.set(60 * 24)
    assert run_main(project, "--job", "days", "--date", "2026-11-03")[0] == 1
    code, out = run_main(project, "--history", "--status", "failed")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and " failed " in lines[1] and "record: " in lines[1], out
    assert all(len(line) <= 100 for line in lines)
    code, out = run_main(project, "--history", "--since", "12h", "--format", "json")
    (doc,) = json.loads(out)
    assert {"run_id", "job", "status", "trigger", "slot", "started", "ended"} <= doc.keys()
    assert (doc["status"], doc["trigger"], doc["slot"], doc["run_date"]) == ("failed", "manual", None, "2026-11-03")
    assert doc["started"] == "2026-12-01T06:00:00Z" and "CHECK constraint failed" in doc["error"]
    code, out = run_main(project, "--history", "--since", "2026-11-30", "--limit", "1")
    assert code == 0 and len(out.splitlines()) == 3 and "(the latest 1;" in out
    code, out = run_main(project, "--history", "--job", "tick")
    assert (code, out.splitlines()[-1]) == (0, "no runs recorded yet")
    capsys.readouterr()
    for argv, message in [(["--history", "--job", "dyas"], "unknown job 'dyas'; did you mean days? (jobs: days, "
                                                          "tick); see --list"),
                          (["--history", "--status", "broken"], "unknown --status 'broken': one of running, success"),
                          (["--history", "--since", "last week"], "malformed --since 'last week'"),
                          (["--pause", "tik"], "unknown job 'tik'; did you mean tick?"),
                          (["--watermarks", "--job", "nope"], "unknown job 'nope'"),
                          (["--job", "days", "--param", "regoin=south"], "--param regoin: no statement or export "
                                                                         "path of job days uses it (its parameters: "
                                                                         "region)")]:
        assert run_main(project, *argv)[0] == 2, argv
        assert message in capsys.readouterr().err, argv


def test_a_plain_run_marks_a_run_its_killed_process_left_as_abandoned(tmp_path: Path, now: Clock,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    ledger = SlotLedger(state_url(project))
    ledger.start_run("deadbeef" * 4, "days", "2026-11-01")  # its process was killed: never finished
    assert run_main(project, "--job", "days", "--date", "2026-11-02")[0] == 0
    assert "run deadbeef (started 2026-11-30 06:00:00 by" in capsys.readouterr().err
    assert ledger.run("deadbeef")["status"] == "abandoned"


BIG_QUERY = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(80))


def test_dry_run_shows_statements_whole_with_v_and_the_stored_watermark(tmp_path: Path, now: Clock) -> None:
    job = f"""\
database: warehouse
tasks:
  - name: wide
    sql: "{BIG_QUERY}"
  - name: copy
    load: {{source: shop, query: "SELECT id FROM src WHERE id > :watermark", table: dst,
           incremental: {{column: id}}}}
"""
    project = write_project(tmp_path, {"wide": job}, databases="warehouse: {url: 'sqlite:///var/warehouse.db'}\n"
                                                              "shop: {url: 'sqlite:///var/shop.db'}\n")
    code, out = run_main(project, "--job", "wide", "--dry-run")
    assert code == 0 and f"({len(BIG_QUERY):,} characters in all; -v shows every statement whole)" in out, out
    assert "watermark: none yet: the first load reads every row" in out and "bound: watermark=NULL" in out
    assert not (project / "var").exists()
    code, out = run_main(project, "--job", "wide", "--dry-run", "-v")
    assert BIG_QUERY in out
    (project / "var").mkdir()
    wh = sqlite3.connect(project / "var" / "shop.db")
    wh.execute("CREATE TABLE src (id INTEGER)")
    wh.executemany("INSERT INTO src VALUES (?)", [(i,) for i in range(1, 8)])
    wh.commit()
    assert run_main(project, "--job", "wide")[0] == 0
    code, out = run_main(project, "--job", "wide", "--dry-run")
    assert "watermark: 7 (advanced 2026-11-30 06:00:00Z by run " in out and "bound: watermark=7 (integer)" in out, out
