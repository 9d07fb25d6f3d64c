"""The command line and configuration of alerts: notify/ping/late_after/metrics keys checked with
file, key and line; --check asks Apprise about each URL; --notify-test reports each target;
--history --run finds a run by the start of its id; JSON log lines carry job, run_id and task; a
ledger of the schema before alerts is upgraded on open."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, run_main, subprocess_env, write_project
from tests.notifykit import HttpReceiver, free_port

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark
FINE = "database: warehouse\ntasks: [{name: one, sql: SELECT 1}]\n"


def test_notify_keys_are_checked_with_file_key_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_project(tmp_path, {
        "a": "database: warehouse\nlate_after: 3h\nping: ftp://x\nnotify:\n  - url: json://h/x\n"
             "    on: [failure, loud]\ntasks: [{name: one, sql: SELECT 1}]\n",
        "b": "schedule: '0 2 * * *'\ndatabase: warehouse\nnotify:\n  - url: ${NOT_SET_ALERT_URL}\n"
             "tasks: [{name: one, sql: SELECT 1}]\n",
        "c": "schedule: '0 2 * * *'\ndatabase: warehouse\nnotify:\n  - url: json://h/x\n    on: [late]\n"
             "    timeout: 0s\ntasks: [{name: one, sql: SELECT 1}]\n",
    }, runner="timezone: UTC\nmetrics: {listen: 'nohost', textfile: ../outside.prom}\nnotify:\n  - url: nourl\n")
    code, out = run_main(tmp_path, "--check")
    assert code == 2
    for expected in ("conf/runner.yml:2 [metrics.listen]: invalid listen address 'nohost'",
                     "conf/runner.yml:2 [metrics.textfile]: ../outside.prom leads outside the project",
                     "conf/runner.yml:4 [notify.0.url]: needs url: an Apprise URL",
                     "jobs/a.yml:2 [late_after]: late_after needs a schedule",
                     "jobs/a.yml:3 [ping]: ping must be an http(s) URL",
                     "jobs/a.yml:6 [notify.0.on]: invalid events ['failure', 'loud']",
                     "jobs/b.yml:4 [notify.0.url]: environment variable NOT_SET_ALERT_URL is not set",
                     "jobs/c.yml:6 [notify.0.timeout]: must be more than 0 seconds"):
        assert expected in out, (expected, out)


def test_a_bare_on_key_is_read_as_on_and_check_asks_apprise_about_each_url(tmp_path: Path) -> None:
    write_project(tmp_path, {"a": "database: warehouse\nnotify:\n  - url: nosuchservice://h/x\n    on: [failure]\n"
                                  "tasks: [{name: one, sql: SELECT 1}]\n"},
                  runner="timezone: UTC\nnotify:\n  - url: json://127.0.0.1:9/hook\n    on: [failure, success]\n")
    from runner.config.jobs import load_job
    from runner.config.project import load_project

    project = load_project(tmp_path / "conf")
    assert project.settings.notify[0].on == ("failure", "success")  # `on` unquoted: YAML 1.1 reads it as true
    assert load_job(project, "a").notify[0].on == ("failure",)
    code, out = run_main(tmp_path, "--check")
    assert code == 2
    assert "jobs/a.yml:3 [notify.0.url]: Apprise does not understand the URL of target nosuchservice#" in out
    assert "conf/runner.yml" not in out


def test_notify_test_reports_each_target(tmp_path: Path) -> None:
    http = HttpReceiver()
    try:
        down = free_port()
        write_project(tmp_path, {"a": FINE}, runner=(
            f"timezone: UTC\nnotify:\n  - url: json://127.0.0.1:{http.port}/hook\n    name: ops\n"
            f"  - url: json://user:Secr3tHookPw@127.0.0.1:{down}/hook\n    timeout: 2s\n"))
        code, out = run_main(tmp_path, "--notify-test")
        assert code == 1
        assert "sent   ops  json://127.0.0.1:" in out
        assert "FAILED json#" in out and "(conf/runner.yml)" in out
        assert "1 of 2 target(s) took the test message" in out
        assert "Secr3tHookPw" not in out
        assert [p["title"] for p in http.json_posts()] == ["runner: test message"]
    finally:
        http.close()


def test_history_run_finds_a_run_by_the_start_of_its_id(tmp_path: Path) -> None:
    write_project(tmp_path, {"a": FINE})
    assert run_main(tmp_path, "--job", "a")[0] == 0
    with sqlite3.connect(tmp_path / "var" / "runner-state.db") as conn:
        (run_id,), = conn.execute("SELECT run_id FROM runner_runs").fetchall()
    code, out = run_main(tmp_path, "--history", "--run", run_id[:8])
    assert code == 0 and out.startswith(f"run {run_id} of job a")
    assert "one attempt 1: success" in out and "notifications (0):" in out
    assert run_main(tmp_path, "--history", "--run", "ffffffffzz")[0] == 2
    with pytest.raises(SystemExit) as refused:  # --run goes with --history
        run_main(tmp_path, "--job", "a", "--run", run_id)
    assert refused.value.code == 2


def test_json_log_lines_of_a_run_carry_job_run_id_and_task(tmp_path: Path) -> None:
    write_project(tmp_path, {"a": "database: warehouse\ntasks:\n  - {name: one, sql: SELECT 1}\n"
                                  "  - {name: two, depends_on: [one], sql: SELECT * FROM missing}\n"})
    done = subprocess.run([sys.executable, "-m", "runner", "--job", "a", "--conf", str(tmp_path / "conf"),
                           "--log-format", "json"], capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert done.returncode == 1
    lines = [json.loads(ln) for ln in done.stderr.splitlines()]
    run_lines = [d for d in lines if d["logger"] == "runner.executor"]
    assert len(run_lines) >= 3
    assert all(d["job"] == "a" and len(d["run_id"]) == 32 for d in run_lines), run_lines
    failed = next(d for d in run_lines if d["level"] == "error")
    assert failed["task"] == "two"


def test_a_ledger_from_before_alerts_is_upgraded_on_open(tmp_path: Path) -> None:
    http = HttpReceiver()
    try:
        write_project(tmp_path, {"a": "database: warehouse\ntasks: [{name: one, sql: SELECT * FROM missing}]\n"},
                      runner=f"timezone: UTC\nnotify:\n  - url: json://127.0.0.1:{http.port}/hook\n")
        (tmp_path / "var").mkdir()
        with sqlite3.connect(tmp_path / "var" / "runner-state.db") as conn:  # the tables as they were
            conn.executescript("""
                CREATE TABLE runner_runs (run_id VARCHAR(32) PRIMARY KEY, job VARCHAR(128) NOT NULL,
                    run_date VARCHAR(10) NOT NULL, slot DATETIME, "trigger" VARCHAR(16) NOT NULL,
                    host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, started_at DATETIME NOT NULL,
                    ended_at DATETIME, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL,
                    "rows" BIGINT NOT NULL, error TEXT);
                CREATE TABLE runner_task_attempts (id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id VARCHAR(32) NOT NULL, task VARCHAR(128) NOT NULL, attempt INTEGER NOT NULL,
                    started_at DATETIME NOT NULL, ended_at DATETIME, status VARCHAR(16) NOT NULL,
                    "rows" BIGINT, errno INTEGER, error TEXT);
                INSERT INTO runner_runs VALUES ('old', 'a', '2026-01-01', NULL, 'manual', 'h', 1,
                    '2026-01-01 00:00:00', '2026-01-01 00:00:01', 'success', 1, 0, NULL);
            """)
        assert run_main(tmp_path, "--job", "a")[0] == 1
        assert len(http.json_posts()) == 1
        code, out = run_main(tmp_path, "--history")
        assert code == 0 and "2026-01-01" in out
    finally:
        http.close()
