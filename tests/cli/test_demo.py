"""The demo as a user runs it: real `python -m runner` processes on a copy of the repository's conf/
and jobs/, on SQLite (the embedded default) and unchanged on the private MariaDB.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fixtures.core import copy_repo_project, readme_commands, subprocess_env
from tests.harness.mariadb import PrivateMariaDB


def _readme_run_steps() -> list[list[str]]:
    """The README's run command after its set-up step (seed the demo, run the job), with this
    interpreter for the venv's."""
    steps = [step.split() for step in readme_commands()[0].split("&&")[1:]]
    assert steps and all(step[0] == ".venv/bin/python" for step in steps), steps
    return [[sys.executable, *step[1:]] for step in steps]


def _run_readme(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Every step of the README's run command in turn; the last one's result (or the first that failed)."""
    for step in _readme_run_steps():
        result = _run(step, cwd, env)
        if result.returncode != 0:
            return result
    return result


def _utc_yesterday() -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=1)


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=subprocess_env(env), capture_output=True, text=True, timeout=60,
                          check=False)


def _report(project: Path, days: set[date]) -> list[dict[str, str]]:
    """The rows of the report the demo wrote for one of `days` (yesterday, read before and after the run)."""
    files = [project / "reports" / f"nightly_report_{d.isoformat()}.csv" for d in sorted(days)]
    found = [f for f in files if f.exists()]
    assert len(found) == 1, (files, list((project / "reports").iterdir()))
    with found[0].open(newline="") as fh:
        return list(csv.DictReader(fh))


def _normalised(rows: list[dict[str, str]]) -> list[tuple[str, int, Decimal, int, Decimal]]:
    """Rows with their numbers as numbers (SQLite writes 3340.0, MariaDB 3340.00)."""
    return [(r["region"], int(r["orders"]), Decimal(r["revenue"]), int(r["customers"]), Decimal(r["day_total"]))
            for r in rows]


def _assert_real_report(rows: list[dict[str, str]]) -> None:
    got = _normalised(rows)
    assert [r[0] for r in got] == ["east", "north", "south", "west"]
    assert sum(r[1] for r in got) == 240
    assert all(r[2] > 0 and r[3] > 0 for r in got)
    assert {r[4] for r in got} == {sum(r[2] for r in got)}  # the rollup's total equals the regions' sum


def test_demo_on_sqlite_from_the_project_folder(tmp_path: Path) -> None:
    project = copy_repo_project(tmp_path / "project")
    before = _utc_yesterday()
    result = _run_readme(project)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()
    assert summary[0].startswith("nightly_report ") and ": success in " in summary[0]
    assert [line.split()[:2] for line in summary[1:4]] == [["tables", "success"], ["rollup", "success"],
                                                          ["report", "success"]]
    _assert_real_report(_report(project, {before, _utc_yesterday()}))
    assert (project / "var" / "warehouse.db").exists() and (project / "var" / "runner-state.db").exists()


def test_demo_from_root_resolves_paths_against_the_project(tmp_path: Path) -> None:
    project = copy_repo_project(tmp_path / "project")
    strays = [Path("/var/warehouse.db"), Path("/var/runner-state.db"), Path("/reports")]
    already = {p for p in strays if p.exists()}
    before = _utc_yesterday()
    for job in ("demo_data", "nightly_report"):
        result = _run([sys.executable, "-m", "runner", "--job", job, "--conf", str(project / "conf")], cwd=Path("/"))
        assert result.returncode == 0, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_real_report(_report(project, {before, _utc_yesterday()}))
    assert (project / "var" / "warehouse.db").exists() and (project / "var" / "runner-state.db").exists()
    assert {p for p in strays if p.exists()} == already, "nothing may land in the working directory /"


def test_demo_runs_unchanged_on_mariadb(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    lite = copy_repo_project(tmp_path / "sqlite")
    maria = copy_repo_project(tmp_path / "mariadb")
    before = _utc_yesterday()
    on_sqlite = _run_readme(lite)
    on_mariadb = _run_readme(maria, env={"RUNNER_DB_WAREHOUSE_URL": mdb.url(fresh_db),
                                         "RUNNER_DB_DEMO_URL": mdb.url(fresh_db)})
    assert on_mariadb.returncode == 0, on_mariadb.stdout + on_mariadb.stderr
    days = {before, _utc_yesterday()}
    rows = _report(maria, days)
    _assert_real_report(rows)
    assert _normalised(rows) == _normalised(_report(lite, days)), "the same job gives the same report"
    assert not (maria / "var" / "warehouse.db").exists()  # the data went to the server
    conn = mdb.connect(db=fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            assert cur.fetchone()[0] == 240
    finally:
        conn.close()
    assert on_sqlite.returncode == 0


def test_dry_run_as_a_process_touches_no_database(tmp_path: Path) -> None:
    project = copy_repo_project(tmp_path / "project")
    result = _run([sys.executable, "-m", "runner", "--job", "nightly_report", "--dry-run"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert "1. tables" in result.stdout and "3. report" in result.stdout
    assert not (project / "var").exists()


def test_the_report_job_brings_no_made_up_rows_to_a_real_warehouse(tmp_path: Path, mdb: PrivateMariaDB,
                                                                   fresh_db: str) -> None:
    """Pointed at a server whose orders table has none for the day, nightly_report writes an empty report
    and leaves the table as it was: the made-up orders are demo_data's, in the embedded demo database."""
    project = copy_repo_project(tmp_path / "project")
    conn = mdb.connect(db=fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE orders (order_day DATE NOT NULL, order_no INT NOT NULL, region VARCHAR(16) "
                        "NOT NULL, customer_id INT NOT NULL, amount DECIMAL(12,2) NOT NULL, "
                        "PRIMARY KEY (order_day, order_no))")
        conn.commit()
        env = {"RUNNER_DB_WAREHOUSE_URL": mdb.url(fresh_db)}
        before = _utc_yesterday()
        result = _run([sys.executable, "-m", "runner", "--job", "nightly_report"], cwd=project, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _report(project, {before, _utc_yesterday()}) == []
        seeded = _run([sys.executable, "-m", "runner", "--job", "demo_data"], cwd=project, env=env)
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            assert cur.fetchone()[0] == 0, "the demo seeds the embedded demo database, not the warehouse"
    finally:
        conn.close()
    assert (project / "var" / "warehouse.db").exists()


@pytest.mark.parametrize("argv, code", [(["--job", "nope"], 2), (["--check"], 0)])
def test_exit_codes_of_a_real_process(tmp_path: Path, argv: list[str], code: int) -> None:
    project = copy_repo_project(tmp_path / "project")
    assert _run([sys.executable, "-m", "runner", *argv], cwd=project).returncode == code
