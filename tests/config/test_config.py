"""Configuration: ${VAR} expansion, url overrides, durations, and every pinned validation message.

Each message names the file, the key, the line (where YAML gives one) and what to do. Rows build a
small project under tmp_path and load it; nothing touches a database and nothing sleeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.checks import expand_vars, parse_duration
from runner.config.jobs import load_jobs
from runner.config.project import env_override_name, load_project, resolve_url
from runner.errors import ConfigError, Problem

RUNNER = "timezone: UTC\n"
DATABASES = "warehouse:\n  url: sqlite:///var/warehouse.db\n"
JOB = "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n"


# ------------------------------------------------------------------------------------- ${VAR} expansion

@pytest.mark.parametrize("text, env, expected, missing", [
    ("${A}", {"A": "x"}, "x", []),
    ("${A:-d}", {}, "d", []),
    ("${A:-d}", {"A": "set"}, "set", []),
    ("${A:-d}", {"A": ""}, "d", []),  # an empty variable counts as unset, as in the shell's :-
    ("${A:-}", {}, "", []),
    ("${A}", {}, "", ["A"]),
    ("${A}", {"A": ""}, "", []),  # set to empty is set: empty, as in the shell
    ("${A:-}", {"A": ""}, "", []),
    ("pre-${A}-${B:-b}-post", {"A": "1"}, "pre-1-b-post", []),
    ("${A}${B}", {}, "", ["A", "B"]),
    ("${URL:-sqlite:///var/w.db}", {}, "sqlite:///var/w.db", []),
    ("mysql+pymysql://u:${PW}@h/db", {"PW": "p@ss"}, "mysql+pymysql://u:p@ss@h/db", []),
    ("$A and ${} and ${1A}", {"A": "x"}, "$A and ${} and ${1A}", []),  # not variables: left alone
])
def test_expand_vars(text: str, env: dict[str, str], expected: str, missing: list[str]) -> None:
    seen: list[str] = []
    assert expand_vars(text, env, seen) == expected
    assert seen == missing


@pytest.mark.parametrize("name, variable", [
    ("warehouse", "RUNNER_DB_WAREHOUSE_URL"),
    ("shop", "RUNNER_DB_SHOP_URL"),
    ("shop-eu.v2", "RUNNER_DB_SHOP_EU_V2_URL"),
])
def test_env_override_name(name: str, variable: str) -> None:
    assert env_override_name(name) == variable


@pytest.mark.parametrize("file_url, env, expected", [
    ("${WH_URL:-sqlite:///var/a.db}", {}, "sqlite:///{root}/var/a.db"),
    ("${WH_URL:-sqlite:///var/a.db}", {"WH_URL": "sqlite:///var/b.db"}, "sqlite:///{root}/var/b.db"),
    ("${WH_URL:-sqlite:///var/a.db}", {"RUNNER_DB_WAREHOUSE_URL": "mysql+pymysql://u:p@h:3307/d"},
     "mysql+pymysql://u:p@h:3307/d"),
    ("${WH_URL:-sqlite:///var/a.db}", {"WH_URL": "sqlite:///var/b.db", "RUNNER_DB_WAREHOUSE_URL": "sqlite://"},
     "sqlite://"),
    # Overriding the url makes the variables of the url it replaces irrelevant.
    ("${WH_URL}", {"RUNNER_DB_WAREHOUSE_URL": "sqlite:////abs/w.db"}, "sqlite:////abs/w.db"),
    ("mysql+pymysql://etl:${PW}@db:3306/wh", {"PW": "pw"}, "mysql+pymysql://etl:pw@db:3306/wh"),
    ("mysql+pymysql://etl:${PW}@db:3306/wh", {"PW": ""}, "mysql+pymysql://etl:@db:3306/wh"),  # no password
])
def test_database_url_expansion_and_override(tmp_path: Path, file_url: str, env: dict[str, str],
                                             expected: str) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "databases.yml").write_text(f'warehouse:\n  url: "{file_url}"\n')
    project = load_project(tmp_path / "conf", env=env)
    assert project.databases["warehouse"].url == expected.format(root=tmp_path.resolve())


@pytest.mark.parametrize("runner_yml, env, expected", [
    (None, {}, "sqlite:///{root}/var/runner-state.db"),
    (None, {"RUNNER_STATE_URL": "sqlite:///var/s.db"}, "sqlite:///{root}/var/s.db"),  # no runner.yml: env applies
    ("state_url: sqlite:///var/f.db\n", {}, "sqlite:///{root}/var/f.db"),
    ("state_url: sqlite:///var/f.db\n", {"RUNNER_STATE_URL": "mysql+pymysql://u:p@h/s"}, "mysql+pymysql://u:p@h/s"),
])
def test_state_url_from_runner_yml_or_the_environment(tmp_path: Path, runner_yml: str | None, env: dict[str, str],
                                                      expected: str) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "databases.yml").write_text(DATABASES)
    if runner_yml is not None:
        (tmp_path / "conf" / "runner.yml").write_text(runner_yml)
    project = load_project(tmp_path / "conf", env=env)
    assert project.settings.state_url == expected.format(root=tmp_path.resolve())


def test_passwords_for_the_log_redactor_include_the_state_stores(tmp_path: Path) -> None:
    from runner.config.urls import passwords

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "databases.yml").write_text("wh:\n  url: mysql+pymysql://etl:Db-Pw-1@h/wh\nlite:\n"
                                                     "  url: sqlite:///var/x.db\n")
    env = {"RUNNER_STATE_URL": "mysql+pymysql://ledger:State-Pw-2@h/state"}
    assert sorted(passwords(load_project(tmp_path / "conf", env=env))) == ["Db-Pw-1", "State-Pw-2"]


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///var/w.db", "sqlite:///{root}/var/w.db"),
    ("sqlite:///var/w.db?timeout=5", "sqlite:///{root}/var/w.db?timeout=5"),
    ("sqlite+pysqlite:///w.db", "sqlite+pysqlite:///{root}/w.db"),
    ("sqlite:////abs/w.db", "sqlite:////abs/w.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("sqlite://", "sqlite://"),
    ("mysql+pymysql://u:p@h/var/w", "mysql+pymysql://u:p@h/var/w"),
])
def test_relative_sqlite_paths_resolve_against_the_project_root(url: str, expected: str) -> None:
    root = Path("/srv/etl")
    assert resolve_url(url, root) == expected.format(root=root)


# ------------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("value, seconds", [
    (90, 90.0), (1.5, 1.5), (0, 0.0), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0),
    ("1h30m", 5400.0), ("1h 30m 5s", 5405.0), ("1.5h", 5400.0), ("2m30s", 150.0), (" 45s ", 45.0),
    ("1d", 86400.0), ("2d", 172800.0), ("1d12h", 129600.0), ("0.5d", 43200.0), ("1d 1h 1m 1s", 90061.0),
    ("10 minutes", None), ("", None), ("  ", None), ("m", None), ("d", None), ("-5", None), (-1, None),
    (True, None), (None, None), ([10], None), ("30m1h", None), ("1h1d", None), ("1w", None),
    (float("inf"), None), (float("nan"), None), (1e309, None), ("99999999999d", None), ("3650d", 3650 * 86400.0),
    ("3651d", None), (3650 * 86400 + 1, None),
])
def test_parse_duration(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


# ------------------------------------------------------------------------------------- validation messages

def _load_all(root: Path, files: dict[str, str], env: dict[str, str]) -> list[Problem]:
    base = {"conf/runner.yml": RUNNER, "conf/databases.yml": DATABASES, "jobs/job.yml": JOB}
    for rel, text in {**base, **files}.items():
        if text is None:
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    try:
        project = load_project(root / "conf", env=env)
    except ConfigError as exc:
        return exc.problems
    return load_jobs(project)[1]


# Rows: (id, files that replace the good base, env, [(file, key, line, message fragment), ...]).
# The expected list is complete: a row fails on any extra problem, so no message is printed twice.
PROBLEMS = [
    ("runner-timezone", {"conf/runner.yml": "timezone: Mars/Base\n"}, {},
     [("conf/runner.yml", "timezone", 1, "unknown timezone 'Mars/Base': use an IANA name such as Asia/Shanghai")]),
    ("runner-log-format", {"conf/runner.yml": "timezone: UTC\nlog_format: xml\n"}, {},
     [("conf/runner.yml", "log_format", 2, "invalid value 'xml': text or json")]),
    ("runner-unknown-key", {"conf/runner.yml": "timezone: UTC\ncolour: red\n"}, {},
     [("conf/runner.yml", "colour", 2, "unknown key 'colour' (known keys: ")]),
    ("runner-retry-attempts", {"conf/runner.yml": "retry:\n  attempts: 0\n"}, {},
     [("conf/runner.yml", "retry.attempts", 2, "invalid value 0: a whole number >= 1")]),
    ("runner-yaml-syntax", {"conf/runner.yml": "timezone: UTC\nretry: {attempts: 3\nlog_format: text\n"}, {},
     [("conf/runner.yml", "", 3, "YAML syntax error: ")]),
    ("databases-unset-var",
     {"conf/databases.yml": "# the warehouse\nwarehouse:\n  url: \"${WH_URL}\"\n"}, {},
     [("conf/databases.yml", "warehouse.url", 3,
       "environment variable WH_URL is not set and has no default: export WH_URL=... or write ${WH_URL:-default}")]),
    ("databases-missing-url", {"conf/databases.yml": "warehouse:\n  pool: {size: 2}\n"}, {},
     [("conf/databases.yml", "warehouse.url", 1,
       "missing url: give a SQLAlchemy URL such as mysql+pymysql://user:pw@host/db")]),
    ("databases-pool", {"conf/databases.yml": "warehouse:\n  url: sqlite://\n  pool:\n    size: 0\n"
                                              "    timeout: soon\n    colour: red\n"}, {},
     [("conf/databases.yml", "warehouse.pool.size", 4, "invalid value 0: a whole number >= 1"),
      ("conf/databases.yml", "warehouse.pool.timeout", 5,
       "invalid duration 'soon': write seconds or e.g. 90s, 10m, 1h30m"),
      ("conf/databases.yml", "warehouse.pool.colour", 6, "unknown key 'colour'")]),
    ("databases-bad-url", {"conf/databases.yml": "warehouse:\n  url: mysql+pymysql://etl:Hush-77@db:port/wh\n"}, {},
     [("conf/databases.yml", "warehouse.url", 2, "invalid url mysql+pymysql://etl:***@db:port/wh: write "
       "dialect+driver://user:password@host:port/database")]),
    ("databases-bad-override", {}, {"RUNNER_DB_WAREHOUSE_URL": "not a url with Hush-77"},
     [("conf/databases.yml", "warehouse.url", 2, "(from RUNNER_DB_WAREHOUSE_URL): write dialect+driver://")]),
    ("runner-bad-state-url",
     {"conf/runner.yml": "timezone: UTC\nstate_url: mysql+pymysql://etl:Hush-77@db:port/state\n"}, {},
     [("conf/runner.yml", "state_url", 2, "invalid url mysql+pymysql://etl:***@db:port/state: write "
       "dialect+driver://user:password@host:port/database")]),
    ("runner-bad-state-url-env", {}, {"RUNNER_STATE_URL": "mysql://etl:Hush-77@db:port/state"},
     [("conf/runner.yml", "state_url", None, "invalid url mysql://etl:***@db:port/state (from RUNNER_STATE_URL): "
       "write dialect+driver://")]),
    ("runner-bad-state-url-env-no-file", {"conf/runner.yml": None}, {"RUNNER_STATE_URL": "not a url with Hush-77"},
     [("conf/runner.yml", "state_url", None, "invalid url (not shown: no user@host part to hide a password in) "
       "(from RUNNER_STATE_URL)")]),
    ("databases-not-a-mapping", {"conf/databases.yml": "- warehouse\n"}, {},
     [("conf/databases.yml", "", None, "must be a mapping of database names to {url: ...}")]),
    ("databases-file-missing", {"conf/databases.yml": None}, {},
     [("conf/databases.yml", "", None, "file not found: create it with one entry per database")]),
    ("job-unknown-database",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: SELECT 1\n"
                      "  - name: b\n    database: shop\n    sql: SELECT 2\n"}, {},
     [("jobs/job.yml", "tasks.1.database", 6,
       "unknown database 'shop' in task 'b' (known: warehouse); add it to conf/databases.yml")]),
    ("job-no-database", {"jobs/job.yml": "tasks:\n  - name: a\n    sql: SELECT 1\n"}, {},
     [("jobs/job.yml", "tasks.0", 2, "task 'a' has no database: set database at the job or task level")]),
    ("job-unknown-dependency",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    depends_on: [ghost]\n    sql: SELECT 1\n"},
     {}, [("jobs/job.yml", "tasks.0.depends_on", 4, "task 'a' depends on unknown task 'ghost' (tasks: a)")]),
    ("job-cycle",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - {name: a, depends_on: [c], sql: SELECT 1}\n"
                      "  - {name: b, depends_on: [a], sql: SELECT 2}\n  - {name: c, depends_on: [b], sql: SELECT 3}\n"},
     {}, [("jobs/job.yml", "tasks", 2, "dependency cycle: ")]),
    ("job-self-dependency",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - {name: a, depends_on: a, sql: SELECT 1}\n"}, {},
     [("jobs/job.yml", "tasks", 2, "dependency cycle: a -> a; remove one depends_on")]),
    ("job-duplicate-task",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - {name: a, sql: SELECT 1}\n  - {name: a, sql: SELECT 2}\n"},
     {}, [("jobs/job.yml", "tasks.1.name", 4, "duplicate task name 'a'")]),
    ("job-two-bodies",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: SELECT 1\n    sql_file: sql/a.sql\n"},
     {}, [("jobs/job.yml", "tasks.0", 3, "task 'a' needs exactly one of sql, sql_file, export, load "
                                         "(found: sql, sql_file)")]),
    ("job-no-body", {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n"}, {},
     [("jobs/job.yml", "tasks.0", 3, "task 'a' needs exactly one of sql, sql_file, export, load (found: none)")]),
    ("job-no-tasks", {"jobs/job.yml": "description: nothing to do\ndatabase: warehouse\n"}, {},
     [("jobs/job.yml", "tasks", None, "a job needs a list of tasks, e.g. tasks: [{name: load, sql: 'SELECT 1'}]")]),
    ("job-empty-file", {"jobs/job.yml": "# nothing yet\n"}, {},
     [("jobs/job.yml", "", None, "empty job file: give at least tasks: [{name: ..., sql: ...}]")]),
    ("job-unknown-key", {"jobs/job.yml": "databse: warehouse\n" + JOB}, {},
     [("jobs/job.yml", "databse", 1, "unknown key 'databse' (known keys: ")]),
    ("task-unknown-key",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: SELECT 1\n    dependson: [b]\n"}, {},
     [("jobs/job.yml", "tasks.0.dependson", 5, "unknown key 'dependson' (known keys: ")]),
    ("job-schedule", {"jobs/job.yml": "schedule: \"61 2 * * *\"\n" + JOB}, {},
     [("jobs/job.yml", "schedule", 1, "invalid cron expression '61 2 * * *': minute field: 61 in '61' is out of "
                                      "range: 0 to 59")]),
    ("job-schedule-five-fields", {"jobs/job.yml": "schedule: \"0 2 * *\"\n" + JOB}, {},
     [("jobs/job.yml", "schedule", 1, "invalid cron expression '0 2 * *': 4 field(s): five fields, minute hour "
                                      "day-of-month month day-of-week, e.g. \"30 2 * * *\"")]),
    ("job-schedule-equal-range-is-valid-but-a-step-needs-a-range",
     {"jobs/job.yml": "schedule: \"0 2 * 3-3 5/2\"\n" + JOB},
     {}, [("jobs/job.yml", "schedule", 1, "invalid cron expression '0 2 * 3-3 5/2': day of week field: '5/2' has a "
                                          "step without a range, which cron refuses")]),
    ("job-schedule-seven-fields", {"jobs/job.yml": "schedule: \"0 0 30 2 * * *\"\n" + JOB}, {},
     [("jobs/job.yml", "schedule", 1, "invalid cron expression")]),
    ("job-timeout", {"jobs/job.yml": "timeout: 10 minutes\n" + JOB}, {},
     [("jobs/job.yml", "timeout", 1, "invalid duration '10 minutes': write seconds or e.g. 90s, 10m, 1h30m")]),
    ("job-catch-up-window", {"jobs/job.yml": "catch_up_window: 1 day\n" + JOB}, {},
     [("jobs/job.yml", "catch_up_window", 1, "invalid duration '1 day': write seconds or e.g. 90s, 10m, 1h30m, 1d "
                                             "(units d, h, m, s)")]),
    ("job-timezone", {"jobs/job.yml": "timezone: Europe/Atlantis\n" + JOB}, {},
     [("jobs/job.yml", "timezone", 1, "unknown timezone 'Europe/Atlantis'")]),
    ("job-max-parallel", {"jobs/job.yml": "max_parallel: 0\n" + JOB}, {},
     [("jobs/job.yml", "max_parallel", 1, "invalid value 0: a whole number >= 1")]),
    ("job-retry", {"jobs/job.yml": "retry: {attempts: many, max_delay: forever}\n" + JOB}, {},
     [("jobs/job.yml", "retry.attempts", 1, "invalid value 'many': a whole number >= 1"),
      ("jobs/job.yml", "retry.max_delay", 1, "invalid duration 'forever'")]),
    ("task-bad-name", {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: two words\n    sql: SELECT 1\n"}, {},
     [("jobs/job.yml", "tasks.0.name", 3, "invalid value 'two words': letters, digits, _ . - only")]),
    ("task-no-name", {"jobs/job.yml": "database: warehouse\ntasks:\n  - sql: SELECT 1\n"}, {},
     [("jobs/job.yml", "tasks.0.name", 3, "every task needs a name")]),
    ("task-only-comments",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: |\n      -- to do; later\n"}, {},
     [("jobs/job.yml", "tasks.0.sql", 4, "sql holds no statement (only comments?)")]),
    ("task-sql-file-missing",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql_file: sql/missing.sql\n"}, {},
     [("jobs/job.yml", "tasks.0.sql_file", 4, "cannot read sql/missing.sql: No such file or directory; "
                                              "paths are relative to ")]),
    ("export-no-path",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    export:\n      query: SELECT 1\n"
                      "      format: xlsx\n"}, {},
     [("jobs/job.yml", "tasks.0.export.path", 4, "needs a path for the file, e.g. reports/{job}_{run_date}.csv"),
      ("jobs/job.yml", "tasks.0.export.format", 6, "invalid value 'xlsx': csv or jsonl")]),
    ("export-two-queries",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    export:\n      query: SELECT 1; SELECT 2\n"
                      "      path: out.csv\n"}, {},
     [("jobs/job.yml", "tasks.0.export.query", 5, "must hold exactly one SELECT statement")]),
    ("load-problems",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    load:\n      source: shop\n"
                      "      query: SELECT 1\n      table: t\n      mode: upsert\n"}, {},
     [("jobs/job.yml", "tasks.0.load.key", 4, "upsert needs key: the column(s) that identify a row"),
      ("jobs/job.yml", "tasks.0.load.source", 5, "unknown source database 'shop' (known: warehouse)")]),
    ("job-param-not-a-value",
     {"jobs/job.yml": "params:\n  n: 2\n  regions: [north, south]\n" + JOB}, {},
     [("jobs/job.yml", "params.regions", 3, "invalid value ['north', 'south']: a parameter is one value (text, "
                                            "number, true/false, null or a date)")]),
    ("job-param-unknown-placeholder",
     {"jobs/job.yml": "params:\n  day: '{yesterdy}'\n  tag: 'x-{jobname}-{job}'\n  n: 2\n" + JOB}, {},
     [("jobs/job.yml", "params.day", 2, "unknown placeholder {yesterdy} (built-ins: run_date, yesterday, tomorrow, "
                                        "job, run_id)"),
      ("jobs/job.yml", "params.tag", 3, "unknown placeholder {jobname} (built-ins: ")]),
    ("scheduled-job-unset-param",
     {"jobs/job.yml": "schedule: '0 1 * * *'\nparams: {day: '{run_date}'}\ndatabase: warehouse\ntasks:\n"
                      "  - name: a\n    sql: SELECT :day, :run_date, :region\n"}, {},
     [("jobs/job.yml", "task a", 6, "statement uses :region but no parameter region is set: add it to params in "
                                    "the job (a scheduled run has no --param)")]),
    # A manual run may still pass --param region=... (--check notes it); a load binds its own :watermark.
    ("manual-job-unset-param",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: SELECT :region\n"}, {}, []),
    ("scheduled-load-watermark",
     {"jobs/job.yml": "schedule: '0 1 * * *'\ndatabase: warehouse\ntasks:\n  - name: a\n    load:\n"
                      "      {source: warehouse, table: t, query: 'SELECT * FROM s WHERE id > :watermark'}\n"}, {}, []),
    ("job-yaml-syntax",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: \"SELECT 1\n  - name: b\n"}, {},
     [("jobs/job.yml", "", 6, "YAML syntax error: ")]),
    ("job-yaml-bad-indent",
     {"jobs/job.yml": "database: warehouse\ntasks:\n  - name: a\n    sql: SELECT 1\n   depends_on: [b]\n"}, {},
     [("jobs/job.yml", "", 5, "YAML syntax error: ")]),
]


@pytest.mark.parametrize("files, env, expected", [row[1:] for row in PROBLEMS], ids=[row[0] for row in PROBLEMS])
def test_validation_message(tmp_path: Path, files: dict[str, str], env: dict[str, str],
                            expected: list[tuple[str, str, int | None, str]]) -> None:
    problems = _load_all(tmp_path, files, env)
    got = [(p.file, p.key, p.line, p.message) for p in problems]
    assert not any("Hush-77" in str(p) for p in problems), "a password never appears in a message"
    assert len(problems) == len(expected), got
    for file, key, line, fragment in expected:
        assert any((p.file, p.key, p.line) == (file, key, line) and fragment in p.message for p in problems), \
            (file, key, line, fragment, got)


def test_good_base_project_has_no_problem(tmp_path: Path) -> None:
    assert _load_all(tmp_path, {}, {}) == []


def test_problem_text_names_file_line_and_key() -> None:
    p = Problem("jobs/x.yml", "tasks.1.database", "unknown database 'shop'", 7)
    assert str(p) == "jobs/x.yml:7 [tasks.1.database]: unknown database 'shop'"
    assert str(Problem("conf/databases.yml", "", "file not found")) == "conf/databases.yml: file not found"


def test_job_params_keep_their_yaml_types(tmp_path: Path) -> None:
    from datetime import date, datetime

    from decimal import Decimal

    job = ("params:\n  n: 2\n  ratio: 0.25\n  flag: true\n  none: null\n  since: 2026-01-05\n"
           "  at: 2026-01-05 02:30:00\n  quoted: '2'\n  day: '{yesterday}'\n  wide: 12345678901234567890.10\n"
           "  big: 1_000.5\n  clock: 12:30\n  huge: .inf\n" + JOB)
    _load_all(tmp_path, {"jobs/job.yml": job}, {})
    from runner.config.jobs import load_job

    params = load_job(load_project(tmp_path / "conf", env={}), "job").params
    assert params == {"n": 2, "ratio": Decimal("0.25"), "flag": True, "none": None, "since": date(2026, 1, 5),
                      "at": datetime(2026, 1, 5, 2, 30), "quoted": "2", "day": "{yesterday}",
                      "wide": Decimal("12345678901234567890.10"), "big": Decimal("1000.5"), "clock": "12:30",
                      "huge": float("inf")}
    assert [type(v) for v in params.values()] == [int, Decimal, bool, type(None), date, datetime, str, str,
                                                  Decimal, Decimal, str, float]
    assert str(params["wide"]) == "12345678901234567890.10"  # every digit as written, the trailing zero too


def test_catch_up_window_in_days_as_the_readme_shows(tmp_path: Path) -> None:
    from runner.config.jobs import load_job

    assert _load_all(tmp_path, {"jobs/job.yml": "schedule: '30 2 * * *'\ncatch_up_window: 1d\n" + JOB}, {}) == []
    assert load_job(load_project(tmp_path / "conf", env={}), "job").catch_up_window == 86400.0


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    job = ("schedule: \"99 * * * *\"\ntimeout: soon\ndatabase: warehouse\ntasks:\n"
           "  - {name: a, depends_on: [b], sql: SELECT 1}\n"
           "  - {name: b, depends_on: [a], sql: SELECT 2}\n"
           "  - {name: c, database: shop, sql: SELECT 3}\n")
    problems = _load_all(tmp_path, {"jobs/job.yml": job}, {})
    keys = sorted(p.key for p in problems)
    assert keys == ["schedule", "tasks", "tasks.2.database", "timeout"], problems
