"""The command line in process: main(argv) returns the exit code, output goes to the stream given.

Bad input exits 2 naming file, key and what to do, and nothing runs. Runs here use SQLite files in
tmp_path (the MariaDB runs are in test_core_execute.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner import clock
from tests.fixtures.core import (clean_env, copy_fixture, copy_repo_project, ledger_attempts, ledger_runs,
                                 run_main, write_project)

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark

TWO_TASKS = """\
description: Two tasks
database: warehouse
tasks:
  - name: a
    sql: SELECT 1
  - name: b
    depends_on: [a]
    sql: SELECT 2
"""

# Rows: (id, job files, databases.yml or None, argv, fragments that stderr must hold).
BAD_INPUT = [
    ("unknown-job", {"two": TWO_TASKS}, None, ["--job", "nightly"],
     ["jobs/nightly.yml: unknown job 'nightly': no file nightly.yml in ", "(jobs: two); see --list"]),
    ("yaml-syntax", {"two": TWO_TASKS.replace("sql: SELECT 2", "sql: [SELECT 2")}, None, ["--job", "two"],
     ["jobs/two.yml:9: YAML syntax error: ", "(while parsing a flow sequence that starts at line 8); fix the YAML"]),
    ("unknown-database", {"two": TWO_TASKS.replace("    sql: SELECT 2", "    database: shop\n    sql: SELECT 2")},
     None, ["--job", "two"],
     ["jobs/two.yml:8 [tasks.1.database]: unknown database 'shop' in task 'b' (known: warehouse); "
      "add it to conf/databases.yml"]),
    ("unset-variable", {"two": TWO_TASKS}, "warehouse:\n  url: \"${WH_URL}\"\n", ["--job", "two"],
     ["conf/databases.yml:2 [warehouse.url]: environment variable WH_URL is not set and has no default: "
      "export WH_URL=... or write ${WH_URL:-default}"]),
    ("cycle", {"two": TWO_TASKS.replace("    sql: SELECT 1", "    depends_on: [b]\n    sql: SELECT 1")}, None,
     ["--job", "two"], ["jobs/two.yml:3 [tasks]: dependency cycle: ", "; remove one depends_on"]),
    ("unknown-from-task", {"two": TWO_TASKS}, None, ["--job", "two", "--from-task", "c"],
     ["jobs/two.yml: unknown task 'c' for --from-task (tasks in order: a, b)"]),
    ("malformed-param", {"two": TWO_TASKS}, None, ["--job", "two", "--param", "day"],
     ["malformed --param 'day': write --param KEY=VALUE"]),
    ("malformed-date", {"two": TWO_TASKS}, None, ["--job", "two", "--date", "2026-11-31"],
     ["malformed --date '2026-11-31': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"]),
    ("reversed-dates", {"two": TWO_TASKS}, None, ["--job", "two", "--date", "2026-11-07..2026-11-01"],
     ["--date '2026-11-07..2026-11-01' ends before it starts: write the earlier date first"]),
    ("unset-parameter", {"two": TWO_TASKS.replace("SELECT 2", "SELECT :region")}, None, ["--job", "two"],
     ["jobs/two.yml:8 [task b]: statement uses :region but no parameter region is set: add it to params in the "
      "job or pass --param region=..."]),
    ("unknown-placeholder", {"two": "params: {day: '{yesterdy}'}\n" + TWO_TASKS}, None, ["--job", "two"],
     ["jobs/two.yml:1 [params.day]: unknown placeholder {yesterdy} (built-ins: run_date, yesterday"]),
    ("dry-run-unknown-job", {"two": TWO_TASKS}, None, ["--job", "three", "--dry-run"], ["unknown job 'three'"]),
]


@pytest.mark.parametrize("jobs, databases, argv, fragments", [r[1:] for r in BAD_INPUT], ids=[r[0] for r in BAD_INPUT])
def test_bad_input_exits_2_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: dict[str, str],
                                            databases: str | None, argv: list[str], fragments: list[str]) -> None:
    write_project(tmp_path, jobs, databases)
    code, out = run_main(tmp_path, *argv)
    err = capsys.readouterr().err
    assert code == 2, (out, err)
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "var").exists(), "nothing may run (no database, no ledger) on bad input"
    assert out == ""


def test_a_malformed_state_url_is_a_configuration_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_project(tmp_path, {"two": TWO_TASKS})
    monkeypatch.setenv("RUNNER_STATE_URL", "mysql+pymysql://etl:State-Secret-9@db:port/state")
    expected = ("conf/runner.yml [state_url]: invalid url mysql+pymysql://etl:***@db:port/state (from "
                "RUNNER_STATE_URL): write dialect+driver://user:password@host:port/database")
    code, out = run_main(project, "--job", "two")
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    code, out = run_main(project, "--check")
    assert code == 2 and f"error: {expected}" in out, out
    assert "State-Secret-9" not in out + err + capsys.readouterr().err
    assert not (project / "var").exists()


def test_the_state_stores_password_is_hidden_in_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    project = write_project(tmp_path, {"two": TWO_TASKS})
    monkeypatch.setenv("RUNNER_STATE_URL", "mysql+pymysql://etl:Ledger-Secret-31@127.0.0.1:1/state")
    code, _ = run_main(project, "--history")
    assert code == 2  # nothing listens on port 1: the state store cannot be used
    logging.getLogger("runner").error("connecting as etl:Ledger-Secret-31")
    err = capsys.readouterr().err
    assert "state store mysql+pymysql://etl:***@127.0.0.1:1/state: the server cannot be reached" in err
    assert "connecting as etl:***" in err and "Ledger-Secret-31" not in err, err


def test_bad_command_line_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, {"two": TWO_TASKS})
    with pytest.raises(SystemExit) as info:
        run_main(tmp_path)
    assert info.value.code == 2
    assert "say what to do: --job NAME, --list, --check" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        run_main(tmp_path, "--job", "two", "--check")
    assert info.value.code == 2


# Options that only a run by hand uses: any other action would ignore them (--due --dry-run ran the jobs).
MISUSED_OPTIONS = [
    (["--due", "--date", "2026-11-01"], "--date is for a run by hand (--job NAME) and cannot be combined with --due"),
    (["--due", "--job", "two", "--param", "x=1"], "--param is for a run by hand"),
    (["--due", "--from-task", "b"], "--from-task is for a run by hand"),
    (["--history", "--job", "two", "--date", "2026-11-01"], "cannot be combined with --history"),
    (["--scheduler", "--dry-run"], "--dry-run is for a run by hand (--job NAME) or --due and cannot be combined "
                                   "with --scheduler"),
    (["--history", "--reason", "x"], "--reason goes with --pause, not with --history"),
    (["--job", "two", "--format", "json"], "--format goes with --list, --history, --check or --watermarks"),
    (["--list", "--status", "failed"], "--status goes with --history"),
    (["--pause", "two", "--job", "two"], "--pause names its job itself; leave out --job"),
    (["--watermark", "two.a"], "--watermark JOB.TASK needs one of --set VALUE or --reset"),
    (["--watermark", "two.a", "--set", "1", "--reset"], "needs one of --set VALUE or --reset"),
    (["--crontab", "--install", "--uninstall"], "--crontab takes one of --install or --uninstall"),
    (["--due", "--install"], "--install goes with --crontab"),
    (["--history", "--limit", "0"], "--limit takes a whole number from 1 to 1,000,000"),
    (["--history", "--limit", "99999999999999999999"], "--limit takes a whole number from 1 to 1,000,000"),
    (["--history", "--run", ""], "--run was given an empty value: give it one (is a shell variable unset?)"),
    (["--history", "--job", " "], "--job was given an empty value"),
    (["--rerun", ""], "--rerun was given an empty value"),
    (["--job", "two", "--job", "other"], "--job given twice ('two' and 'other'): give it once"),
    (["--pause", "two", "--pause", "other"], "--pause given twice ('two' and 'other'): give it once"),
    (["--job", "two", "--date", "2026-11-01", "--date", "2026-11-02"], "--date given twice"),
    (["--history", "--limit", "5", "--limit", "9"], "--limit given twice (5 and 9)"),
    (["--job", ""], "--job was given an empty value"),
    (["--job", "two", "--from-task", ""], "--from-task was given an empty value"),
    (["--history", "--force"], "--force goes with a run by hand (--job NAME) or --rerun, not with --history"),
    (["--list", "--param", "x=1"], "cannot be combined with --list"),
    (["--check", "--from-task", "a"], "cannot be combined with --check"),
    (["--crontab", "--date", "2026-11-01"], "cannot be combined with --crontab"),
    (["--dry-run"], "say what to do: --job NAME"),
    (["--job", "two", "--python", "/usr/bin/python3"], "--python only goes with --crontab"),
    (["--due", "--python", "/usr/bin/python3"], "--python only goes with --crontab"),
]


@pytest.mark.parametrize("argv, message", MISUSED_OPTIONS, ids=[" ".join(r[0]) for r in MISUSED_OPTIONS])
def test_options_an_action_would_ignore_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    argv: list[str], message: str) -> None:
    project = write_project(tmp_path, {"two": TWO_TASKS.replace("description:", "schedule: '* * * * *'\ndescription:")})
    with pytest.raises(SystemExit) as info:
        run_main(project, *argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (project / "var").exists(), "nothing may run"


# ------------------------------------------------------------------------------------- --check, --list

BROKEN_PROBLEMS = [
    "conf/runner.yml:2 [log_format]: invalid value 'xml': text or json",
    "conf/databases.yml:4 [shop.url]: environment variable FIXTURE_SHOP_URL is not set and has no default",
    "conf/databases.yml:5 [shop.pool.size]: invalid value 0: a whole number >= 1",
    "jobs/cycle.yml:3 [tasks]: dependency cycle: extract -> publish -> transform -> extract; remove one depends_on",
    "jobs/fields.yml:2 [schedule]: invalid cron expression 'every night': 2 field(s): five fields, minute hour "
    "day-of-month month day-of-week, e.g. \"30 2 * * *\"",
    "jobs/fields.yml:3 [timeout]: invalid duration 'soon': write seconds or e.g. 90s, 10m, 1h30m",
    "jobs/fields.yml:8 [tasks.0.retry.attempts]: invalid value 0: a whole number >= 1",
    "jobs/syntax.yml:8: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar that "
    "starts at line 5); fix the YAML",
    "jobs/unknown_db.yml:5 [tasks.0.database]: unknown database 'crm' in task 'copy' (known: warehouse, shop); "
    "add it to conf/databases.yml",
    "jobs/unknown_db.yml:9 [tasks.1.depends_on]: task 'from_shop' depends on unknown task 'ghost' "
    "(tasks: copy, from_shop)",
]


def test_check_prints_every_problem_of_a_broken_project_at_once(tmp_path: Path) -> None:
    project = copy_fixture("broken", tmp_path)
    code, out = run_main(project, "--check")
    assert code == 2
    errors = [line.removeprefix("error: ") for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(BROKEN_PROBLEMS), out
    for expected, got in zip(BROKEN_PROBLEMS, errors):
        assert got.startswith(expected), (expected, got)
    assert out.splitlines()[-1] == f"{len(BROKEN_PROBLEMS)} problem(s) found; nothing was run"
    assert not (project / "var").exists()


def test_check_says_a_good_project_is_valid(tmp_path: Path) -> None:
    code, out = run_main(copy_fixture("good", tmp_path), "--check")
    assert code == 0, out
    assert "error" not in out
    assert out.splitlines()[-1] == "configuration valid: 2 job(s), 1 database(s)"
    # The DDL task is not one transaction: --check says so, and that it is retried because idempotent.
    assert "note: jobs/sales_rollup.yml:7 [task setup]: non-atomic" in out
    assert "marked idempotent and will be retried" in out


def test_check_reports_parameters_nothing_sets(tmp_path: Path) -> None:
    """A scheduled job runs unattended: a :name nothing sets is an error. A manual run may pass --param:
    a note. A placeholder no built-in fills is an error in either."""
    manual = TWO_TASKS.replace("SELECT 2", "SELECT :region")
    project = write_project(tmp_path, {"manual": manual, "nightly": "schedule: '30 2 * * *'\n" + manual,
                                       "typo": "params: {day: '{yesterdy}'}\n" + TWO_TASKS})
    code, out = run_main(project, "--check")
    assert code == 2, out
    assert [line for line in out.splitlines() if line.startswith(("error", "note"))] == [
        "error: jobs/nightly.yml:9 [task b]: statement uses :region but no parameter region is set: add it to "
        "params in the job (a scheduled run has no --param)",
        "error: jobs/typo.yml:1 [params.day]: unknown placeholder {yesterdy} (built-ins: run_date, yesterday, "
        "tomorrow, job, run_id)",
        "note: jobs/manual.yml:8 [task b]: statement uses :region but no parameter region is set: add it to params "
        "in the job or pass --param region=...",
    ]
    (project / "jobs" / "nightly.yml").unlink()
    (project / "jobs" / "typo.yml").unlink()
    code, out = run_main(project, "--check")
    assert code == 0 and "note: jobs/manual.yml:8 [task b]: statement uses :region" in out, out
    code, out = run_main(project, "--job", "manual", "--param", "region=north")
    assert code == 0, out


def test_the_repositorys_own_project_is_valid(tmp_path: Path) -> None:
    code, out = run_main(copy_repo_project(tmp_path), "--check")
    assert code == 0, out
    assert out.splitlines()[-1].startswith("configuration valid: ")


def test_list_shows_description_schedule_and_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Friday 2026-11-20 12:00 UTC: the Monday 06:00 Shanghai slot is 2026-11-23.
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc))
    code, out = run_main(copy_fixture("good", tmp_path), "--list")
    assert code == 0
    header, cleanup, sales = out.splitlines()
    assert header.split() == ["JOB", "SCHEDULE", "TIMEZONE", "NEXT", "RUN", "STATE", "DESCRIPTION"]
    assert cleanup.split()[:5] == ["cleanup", "(manual)", "UTC", "-", "active"]
    assert "  active  Remove sales older than a" in cleanup  # cut with … to fit 100 columns
    assert "sales_rollup  0 6 * * 1  Asia/Shanghai  2026-11-23 06:00 CST  active  Roll up one day of sales" in sales
    assert all(len(line) <= 100 for line in out.splitlines())
    code, out = run_main(tmp_path, "--list", "--format", "json")
    docs = {d["job"]: d for d in json.loads(out)["jobs"]}
    assert docs["cleanup"]["description"] == "Remove sales older than a year; run by hand"
    assert docs["sales_rollup"]["next_run"] == "2026-11-22T22:00:00Z" and not docs["sales_rollup"]["paused"]
    assert not (tmp_path / "var").exists(), "--list creates no state store"


def test_list_points_to_check_for_invalid_jobs(tmp_path: Path) -> None:
    project = copy_fixture("broken", tmp_path)
    (project / "conf" / "databases.yml").write_text("warehouse: {url: 'sqlite:///var/w.db'}\n")
    (project / "conf" / "runner.yml").write_text("timezone: UTC\n")
    code, out = run_main(project, "--list")
    assert code == 0
    assert "fine" in out and "A valid job among broken ones" in out
    assert out.splitlines()[-1] == "4 job file(s) invalid; run --check for details"


# ------------------------------------------------------------------------------------- --dry-run

def test_dry_run_prints_the_plan_and_touches_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    project = copy_repo_project(tmp_path)
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", "mysql+pymysql://etl:Dry-Run-Secret-71@127.0.0.1:1/wh")
    code, out = run_main(project, "--job", "nightly_report", "--dry-run", "--date", "2026-11-02")
    err = capsys.readouterr().err
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "job nightly_report for 2026-11-02 (3 tasks, max_parallel 1); nothing is run"
    tasks = [line for line in lines if line[:1].isdigit()]
    assert [t.split()[1] for t in tasks] == ["tables", "rollup", "report"]
    assert all("on warehouse (mysql+pymysql://etl:***@127.0.0.1:1/wh)" in t for t in tasks)
    assert "after tables" in tasks[1] and "after rollup" in tasks[2]
    assert "jobs/nightly_report.yml:23: DELETE FROM daily_sales WHERE day = :day" in out
    assert "      bound: day='2026-11-01'" in out
    assert "   -> csv file reports/nightly_report_2026-11-01.csv" in out
    assert "Dry-Run-Secret-71" not in out + err
    assert not (project / "var").exists() and not (project / "reports").exists()


def test_dry_run_follows_dates_params_and_from_task(tmp_path: Path) -> None:
    project = copy_repo_project(tmp_path)
    code, out = run_main(project, "--job", "nightly_report", "--dry-run", "--date", "2026-11-01..2026-11-02",
                         "--param", "day={run_date}", "--from-task", "rollup")
    assert code == 0
    heads = [line for line in out.splitlines() if line.startswith("job ")]
    assert heads == ["job nightly_report for 2026-11-01 (2 tasks, max_parallel 1); nothing is run",
                     "job nightly_report for 2026-11-02 (2 tasks, max_parallel 1); nothing is run"]
    assert "tables [sql]" not in out
    assert out.count("bound: day='2026-11-01'") == 3 and out.count("bound: day='2026-11-02'") == 3
    assert not (project / "var" / "warehouse.db").exists()


# ------------------------------------------------------------------------------------- runs on SQLite

DAYS = """\
description: One row per run date
database: warehouse
tasks:
  - name: setup
    idempotent: true
    sql: CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY CHECK (day <> '2026-11-03'), note TEXT)
  - name: record
    depends_on: [setup]
    sql: INSERT INTO days (day, note) VALUES (:run_date, :note)
params: {note: "made on {run_date}"}
"""


def _rows(project: Path, sql: str) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(project / "var" / "warehouse.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_date_range_runs_each_date_in_order_and_stops_at_the_first_failure(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    code, out = run_main(project, "--job", "days", "--date", "2026-11-01..2026-11-05")
    assert code == 1
    runs = ledger_runs(project)
    assert [(r["run_date"], r["status"]) for r in runs] == [
        ("2026-11-01", "success"), ("2026-11-02", "success"), ("2026-11-03", "failed")]
    assert _rows(project, "SELECT day, note FROM days ORDER BY day") == [
        ("2026-11-01", "made on 2026-11-01"), ("2026-11-02", "made on 2026-11-02")]
    summaries = [line.split(":")[0] for line in out.splitlines() if line.startswith("days ")]
    assert summaries == ["days 2026-11-01", "days 2026-11-02", "days 2026-11-03"]
    # A constraint violation is permanent: one attempt, and the message says where and what to do.
    failed = ledger_attempts(project, runs[-1]["run_id"])
    assert [(a.task, a.attempt, a.status) for a in failed] == [("setup", 1, "success"), ("record", 1, "failed")]
    assert "job days: task record failed" in out
    assert "statement: jobs/days.yml:9: INSERT INTO days (day, note) VALUES (:run_date, :note)" in out
    assert "attempts: 1 " in out
    assert "--from-task record --date 2026-11-03" in out
    assert "job days: task record failed" in capsys.readouterr().err


def test_from_task_runs_that_task_and_what_follows(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    assert run_main(project, "--job", "days", "--date", "2026-11-01")[0] == 0
    code, out = run_main(project, "--job", "days", "--date", "2026-11-02", "--from-task", "record")
    assert code == 0, out
    last = ledger_runs(project)[-1]
    assert [a.task for a in ledger_attempts(project, last["run_id"])] == ["record"]
    assert _rows(project, "SELECT day FROM days ORDER BY day") == [("2026-11-01",), ("2026-11-02",)]


def test_param_overrides_the_jobs_param(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    code, _ = run_main(project, "--job", "days", "--date", "2026-11-05", "--param", "note=by hand {yesterday}")
    assert code == 0
    assert _rows(project, "SELECT day, note FROM days") == [("2026-11-05", "by hand 2026-11-04")]


TYPED = """\
database: warehouse
params: {n: 2, ratio: 0.5, flag: true, none: null, since: 2026-01-05, label: "{run_date}"}
tasks:
  - name: setup
    idempotent: true
    sql: CREATE TABLE IF NOT EXISTS seen (n, ratio, flag, none, since, label, given)
  - name: record
    depends_on: [setup]
    sql: |
      INSERT INTO seen SELECT typeof(:n), typeof(:ratio), :flag, typeof(:none), :since, :label, typeof(:given);
      DELETE FROM seen WHERE rowid NOT IN (SELECT rowid FROM seen ORDER BY rowid LIMIT :n)
"""


def test_job_params_reach_the_driver_with_their_yaml_types(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"typed": TYPED})
    for _ in range(3):
        code, out = run_main(project, "--job", "typed", "--date", "2026-11-02", "--param", "given=7")
        assert code == 0, out
    assert _rows(project, "SELECT * FROM seen") == [
        ("integer", "real", 1, "null", "2026-01-05", "2026-11-02", "integer")] * 2  # LIMIT :n kept two rows
    code, out = run_main(project, "--job", "typed", "--date", "2026-11-02", "--param", "given='7'", "--param", "n=3")
    assert code == 0, out
    assert _rows(project, "SELECT given FROM seen") == [("integer",), ("integer",), ("text",)]  # quoted: text


def test_database_url_override_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", f"sqlite:///{elsewhere}")
    assert run_main(project, "--job", "days", "--date", "2026-11-01")[0] == 0
    assert elsewhere.exists() and not (project / "var" / "warehouse.db").exists()


def test_good_fixture_job_runs_and_exports(tmp_path: Path) -> None:
    project = copy_fixture("good", tmp_path)
    code, out = run_main(project, "--job", "sales_rollup", "--date", "2026-11-10")
    assert code == 0, out
    csv = (project / "reports" / "sales_2026-11-09_north.csv").read_text()
    assert csv.splitlines() == ["day,region,amount,note", "2026-11-09,north,10.5,at 10:30; by hand"]


def test_history_lists_runs_with_status_and_tasks(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    run_main(project, "--job", "days", "--date", "2026-11-02..2026-11-03")
    code, out = run_main(project, "--history", "--job", "days")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["RUN", "WHEN", "(UTC)", "JOB", "TRIGGER", "STATUS", "SECS", "NOTE"]
    assert len(rows) == 2 and all(len(line) <= 100 for line in out.splitlines())
    newest, oldest = rows
    assert "date 2026-11-03" in newest and " failed " in newest and "record: " in newest
    assert "date 2026-11-02" in oldest and " success " in oldest
    code, out = run_main(project, "--history", "--job", "days", "--format", "json")
    newest, oldest = json.loads(out)
    assert [(t["task"], t["status"], t["attempts"]) for t in newest["tasks"]][-1] == ("record", "failed", 1)
    assert (newest["run_date"], oldest["run_date"]) == ("2026-11-03", "2026-11-02")
    assert oldest["tasks"][0]["task"] == "setup" and oldest["tasks"][0]["status"] == "success"


def test_json_logs_are_one_object_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"days": DAYS})
    code, _ = run_main(project, "--job", "days", "--date", "2026-11-03", "--log-format", "json")
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    docs = [json.loads(line) for line in lines]
    assert docs and all({"time", "level", "message"} <= d.keys() for d in docs)
    assert any(d["level"] == "error" and "task record failed" in d["message"] for d in docs)


def test_run_date_defaults_to_today_in_the_jobs_timezone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026-11-20 17:30 UTC is already 2026-11-21 in Shanghai.
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 20, 17, 30, tzinfo=timezone.utc))
    project = write_project(tmp_path, {"days": "timezone: Asia/Shanghai\n" + DAYS, "utc": DAYS})
    assert run_main(project, "--job", "days")[0] == 0
    assert run_main(project, "--job", "utc")[0] == 0
    assert sorted((r["job"], r["run_date"]) for r in ledger_runs(project)) == [("days", "2026-11-21"), ("utc", "2026-11-20")]
    assert _rows(project, "SELECT day, note FROM days ORDER BY day") == [
        ("2026-11-20", "made on 2026-11-20"), ("2026-11-21", "made on 2026-11-21")]


# ------------------------------------------------------------------------------------- large SQL files

BIG = """\
description: Seeds 1,500 rows from one INSERT in a .sql file
database: warehouse
tasks:
  - name: setup
    idempotent: true
    sql: CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, label TEXT, day TEXT)
  - name: seed
    depends_on: [setup]
    sql_file: sql/big.sql
"""


def test_a_sql_file_with_a_1500_row_insert_is_valid_and_runs(tmp_path: Path) -> None:
    from tests.config.test_sqltext import big_insert

    project = write_project(tmp_path, {"big": BIG}, files={"sql/big.sql": big_insert(1500)})
    code, out = run_main(project, "--check")
    assert (code, out.splitlines()[-1]) == (0, "configuration valid: 1 job(s), 1 database(s)"), out
    code, out = run_main(project, "--list")
    assert code == 0 and "invalid" not in out and "Seeds 1,500 rows" in out
    code, out = run_main(project, "--job", "big", "--date", "2026-11-02")
    assert code == 0, out
    assert _rows(project, "SELECT COUNT(*), MIN(day), MAX(label) FROM big") == [(1500, "2026-11-02", "row 999")]


def test_a_statement_nested_deeply_is_checked_and_runs(tmp_path: Path) -> None:
    """Splitting does not build a parse tree, so nesting costs nothing: the server has the last word
    (SQLite's parser stops at about a hundred levels)."""
    deep = "SELECT " + "(" * 60 + "1" + ")" * 60
    project = write_project(tmp_path, {"big": BIG, "fine": TWO_TASKS},
                            files={"sql/big.sql": f"SELECT 1;\n\n{deep};\n"})
    code, out = run_main(project, "--check")
    assert code == 0, out
    code, out = run_main(project, "--job", "big")
    assert code == 0, out
