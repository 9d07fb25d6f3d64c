"""Numbers no one means: an infinite or ten-thousand-year duration, a timeout of 0 (which read as no
timeout at all), dates at the edge of the calendar, a --limit past the database's integers, an age of
a hundred billion days. Each is a problem naming the file, key and line (or the option) and what to
write, exit 2; never a traceback in a timer thread, never "unexpected error", never a run that quietly
drops its limit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.core import REPO, clean_env, run_main, write_project  # noqa: F401 - fixture

TASK = "tasks:\n  - name: a\n    sql: SELECT 1\n"
# file -> (its text, the line and key the problem names, what it says)
ODD = {
    "inf_timeout": (f"database: warehouse\ntimeout: .inf\n{TASK}", "jobs/inf_timeout.yml:2 [timeout]",
                    "at most 3650d"),
    "huge_timeout": (f"database: warehouse\ntimeout: 99999999999999999999d\n{TASK}",
                     "jobs/huge_timeout.yml:2 [timeout]", "at most 3650d"),
    "nan_window": (f"database: warehouse\nretry: {{window: .nan}}\n{TASK}", "jobs/nan_window.yml:2 [retry.window]",
                   "invalid duration"),
    "inf_delay": (f"database: warehouse\nretry: {{max_delay: .inf}}\n{TASK}",
                  "jobs/inf_delay.yml:2 [retry.max_delay]", "at most 3650d"),
    "zero_timeout": (f"database: warehouse\ntimeout: 0\n{TASK}", "jobs/zero_timeout.yml:2 [timeout]",
                     "must be more than 0 seconds (leave timeout out for no timeout)"),
    "zero_task_timeout": (f"database: warehouse\n{TASK}    timeout: 0s\n", "jobs/zero_task_timeout.yml:5 [tasks.0.timeout]",
                          "must be more than 0 seconds"),
    "zero_late": (f"database: warehouse\nschedule: '0 * * * *'\nlate_after: 0s\n{TASK}",
                  "jobs/zero_late.yml:3 [late_after]", "must be more than 0 seconds (leave late_after out"),
}


@pytest.fixture
def project(tmp_path: Path, clean_env: None) -> Path:  # noqa: F811
    jobs = {name: text for name, (text, _, _) in ODD.items()}
    jobs["fine"] = f"database: warehouse\ntimeout: 3650d\n{TASK}"
    return write_project(tmp_path, jobs, runner="timezone: UTC\nping_timeout: 0\n")


def test_each_odd_duration_is_a_problem_with_its_file_key_and_line(project: Path) -> None:
    code, out = run_main(project, "--check")
    assert code == 2
    for name, (_, where, says) in ODD.items():
        assert any(line.startswith(f"error: {where}") and says in line for line in out.splitlines()), (name, out)
    assert "conf/runner.yml:2 [ping_timeout]: must be more than 0 seconds" in out
    assert "jobs/fine.yml" not in out


def test_a_run_of_an_infinite_timeout_is_refused_before_it_starts_not_dropped_in_a_timer(project: Path) -> None:
    (project / "conf" / "runner.yml").write_text("timezone: UTC\n")
    for name in ("inf_timeout", "fine"):
        done = subprocess.run([sys.executable, "-m", "runner", "--conf", str(project / "conf"), "--job", name],
                              capture_output=True, text=True, timeout=60, cwd="/", env={"PYTHONPATH": str(REPO)})
        assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr, done.stderr
        if name == "fine":
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == 2 and "jobs/inf_timeout.yml:2 [timeout]: invalid duration" in done.stderr


@pytest.mark.parametrize("argv, says", [
    (["--job", "fine", "--date", "0001-01-01"], "--date '0001-01-01': give a date between 0001-01-02 and 9999-12-30"),
    (["--job", "fine", "--date", "9999-12-01..9999-12-31"], "give a date between 0001-01-02 and 9999-12-30"),
    (["--history", "--since", "99999999999d"], "malformed --since '99999999999d': write an age such as 7d, 12h or "
                                               "30m (at most 3650d)"),
])
def test_odd_dates_and_ages_on_the_command_line_are_usage_errors(project: Path, caplog: pytest.LogCaptureFixture,
                                                                 argv: list[str], says: str) -> None:
    (project / "conf" / "runner.yml").write_text("timezone: UTC\n")
    code, _ = run_main(project, *argv)
    assert code == 2 and says in caplog.text and "unexpected" not in caplog.text


LONG = "t" * 129
LOADS = {"loads": (
    "database: warehouse\ntasks:\n"
    f"  - name: {LONG}\n    sql: SELECT 1\n"
    "  - name: shaped\n    load: {source: warehouse, query: 'SELECT 1 AS id', table: x, mode: upsert, key: [{a: 1}]}\n"
    "  - name: twice\n    load: {source: warehouse, query: 'SELECT 1 AS id', table: y, mode: upsert, key: [id, id]}\n")}


def test_a_task_name_longer_than_the_ledger_holds_and_a_key_that_is_no_column_list_fail_check(
        tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    code, out = run_main(write_project(tmp_path, LOADS), "--check")
    assert code == 2
    assert "jobs/loads.yml:3 [tasks.0.name]: invalid value" in out and "at most 128 characters" in out
    assert ("jobs/loads.yml:6 [tasks.1.load.key]: invalid key [{'a': 1}]: a column name or a list of different "
            "column names") in out
    assert "jobs/loads.yml:8 [tasks.2.load.key]: invalid key ['id', 'id']" in out
    assert "upsert needs key" not in out  # one problem per key, not two


def test_a_load_key_the_query_does_not_select_fails_before_a_row_moves_or_a_table_is_made(
        tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    import sqlite3

    root = write_project(tmp_path, {"copy": (
        "database: warehouse\ntasks:\n  - name: copy\n    load: {source: other, query: 'SELECT id, v FROM src', "
        "table: copied, mode: upsert, key: [ident]}\n")},
        databases="warehouse:\n  url: sqlite:///var/warehouse.db\nother:\n  url: sqlite:///var/other.db\n")
    (root / "var").mkdir(exist_ok=True)
    with sqlite3.connect(root / "var" / "other.db") as db:
        db.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO src VALUES (1, 'a')")
    code, out = run_main(root, "--job", "copy")
    assert code == 1
    assert ("task copy: key column 'ident' is not a column of the query's result (columns: id, v); select it in "
            "the query or fix key:") in out
    with sqlite3.connect(root / "var" / "warehouse.db") as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'copied'").fetchall() == []


def test_an_export_file_name_too_long_for_the_file_system_is_refused_before_any_task_runs(
        tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    import sqlite3

    root = write_project(tmp_path, {"rep": (
        "database: warehouse\nparams: {k: x}\ntasks:\n  - name: first\n    sql: CREATE TABLE ran (n INTEGER)\n"
        "  - name: e\n    depends_on: [first]\n    export: {query: 'SELECT 1 AS n', path: 'out/{k}.csv'}\n")})
    code, _ = run_main(root, "--job", "rep", "--param", "k=" + "x" * 300)
    assert code == 2
    assert "jobs/rep.yml task e export.path: the name 'xxx" in caplog.text
    assert "is 304 bytes long; a file system takes at most 240 here: give a shorter value" in caplog.text
    assert not (root / "var" / "warehouse.db").exists() or not sqlite3.connect(root / "var" / "warehouse.db").execute(
        "SELECT name FROM sqlite_master WHERE name = 'ran'").fetchall()
    assert run_main(root, "--job", "rep", "--param", "k=" + "x" * 236)[0] == 0  # 240 bytes with .csv
    assert (root / "out" / ("x" * 236 + ".csv")).exists()


def test_history_days_past_what_a_date_reaches_fails_check_instead_of_every_task(
        tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    root = write_project(tmp_path, {"ok": f"database: warehouse\n{TASK}"}, runner="timezone: UTC\nhistory_days: 1000000\n")
    code, out = run_main(root, "--check")
    assert code == 2 and "conf/runner.yml:2 [history_days]: invalid value 1000000: a whole number of days from 1 to 36500" in out
    (root / "conf" / "runner.yml").write_text("timezone: UTC\nhistory_days: 36500\n")
    assert run_main(root, "--job", "ok")[0] == 0
