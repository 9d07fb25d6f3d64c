"""Parameters are exact: a number written with a decimal point (in a job's params or on --param) binds
as the decimal of its text on MariaDB, PostgreSQL and SQLite, so `:discount + 0.01` is 0.07 and not
0.06999999999999999; --param values are typed like YAML values, quoted ones are text; --dry-run shows
each value with its type. Real servers, real runs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.faultkit import FaultProject, rows_of
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.postgres import PrivatePostgres
from tests.fixtures.core import run_main, write_project

JOB = {"database": "db", "params": {"discount": "PLACEHOLDER"}, "tasks": [
    {"name": "setup", "idempotent": True, "sql": "CREATE TABLE IF NOT EXISTS seen (v DECIMAL(10,4), n INT)"},
    {"name": "record", "depends_on": ["setup"],
     "sql": "INSERT INTO seen SELECT :discount + 0.01, 1 WHERE :discount + 0.01 = 0.07"},
    {"name": "limited", "depends_on": ["record"],
     "sql": "INSERT INTO seen SELECT v, 2 FROM (SELECT v FROM seen ORDER BY v LIMIT :n) AS s"},
]}


def _job_text(discount_yaml: str) -> str:
    import yaml

    return yaml.safe_dump(JOB, sort_keys=False).replace("PLACEHOLDER", discount_yaml)


@pytest.fixture(params=["mariadb", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, object]:
    if request.param == "mariadb":
        server: PrivateMariaDB = request.getfixturevalue("mdb")
        db = request.getfixturevalue("fresh_db")
        return server.url(db), lambda sql: rows_of(server, db, sql)
    pg: PrivatePostgres = request.getfixturevalue("pg")
    db = request.getfixturevalue("fresh_pg")
    return pg.url(db), lambda sql: pg.rows(db, sql)


def test_a_decimal_param_is_exact_on_the_server(tmp_path: Path, database) -> None:
    url, rows = database
    project = FaultProject(tmp_path, {"db": {"url": url}})
    (project.root / "jobs" / "exact.yml").write_text(_job_text("0.06"))
    first = project.run("exact", "--param", "n=1")  # --param n=1 binds the integer 1: LIMIT accepts it
    assert first.code == 0, first.output
    second = project.run("exact", "--param", "discount=0.06", "--param", "n=5")
    assert second.code == 0, second.output
    # run 1: one row, LIMIT 1 copies it; run 2: one more, LIMIT 5 copies the three there are
    assert sorted(rows("SELECT v, n FROM seen")) == [(Decimal("0.0700"), 1)] * 2 + [(Decimal("0.0700"), 2)] * 4


def test_sqlite_binds_a_decimal_it_holds_exactly_and_refuses_one_it_cannot(tmp_path: Path) -> None:
    """SQLite's numbers are 64-bit: 0.06 binds as the REAL that reads back as 0.06 (arithmetic on it is
    binary floating point there, as the README says); a value no REAL holds is refused, not rounded."""
    job = ("database: db\nparams: {d: 0.06}\ntasks:\n  - name: t\n    sql: |\n"
           "      CREATE TABLE IF NOT EXISTS seen (v NUMERIC);\n      INSERT INTO seen VALUES (:d)\n")
    project = write_project(tmp_path, {"exact": job}, databases="db:\n  url: sqlite:///var/db.db\n")
    assert run_main(project, "--job", "exact")[0] == 0
    import sqlite3

    conn = sqlite3.connect(project / "var" / "db.db")
    assert conn.execute("SELECT typeof(v), v, v < 0.07 FROM seen").fetchall() == [("real", 0.06, 1)]
    conn.close()
    code, out = run_main(project, "--job", "exact", "--param", "d=0.0600000000000000001")
    assert code == 1
    assert "parameter :d = 0.0600000000000000001 cannot be bound exactly on SQLite" in out


def test_dry_run_shows_each_value_with_its_type(tmp_path: Path) -> None:
    job = ("database: db\nparams: {d: 0.06, n: 2, day: '{yesterday}', since: 2026-01-05, none: null, yes_no: true}\n"
           "tasks:\n  - name: t\n    sql: SELECT :d, :n, :day, :since, :none, :yes_no, :given, :quoted\n")
    project = write_project(tmp_path, {"show": job}, databases="db:\n  url: sqlite:///var/db.db\n")
    code, out = run_main(project, "--job", "show", "--dry-run", "--date", "2026-11-02", "--param", "given=12.50",
                         "--param", "quoted='12.50'")
    assert code == 0, out
    assert ("bound: d=0.06 (decimal), n=2 (integer), day='2026-11-01' (text), since=2026-01-05 (date), none=NULL, "
            "yes_no=true (boolean), given=12.50 (decimal), quoted='12.50' (text)") in out


@pytest.mark.parametrize("value, says", [
    ("'a' b 'c'", "--param k='a' b 'c': starts and ends with a quote but is not one quoted text"),
    ('"a" "b"', "is not one quoted text: inside '...' write a quote twice"),
    ('"\\xZZ"', "is not one quoted text"),
])
def test_a_quoted_param_value_that_is_not_one_text_is_a_usage_error_naming_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str, says: str) -> None:
    root = write_project(tmp_path, {"p": "database: warehouse\nparams: {k: 1}\ntasks:\n  - name: a\n"
                                         "    sql: CREATE TABLE t AS SELECT :k AS k\n"})
    code, _ = run_main(root, "--job", "p", "--param", f"k={value}")
    assert code == 2 and says in caplog.text and "unexpected" not in caplog.text, caplog.text
    assert not (root / "var" / "warehouse.db").exists()  # nothing ran

