"""A database whose driver is not installed: a --check problem naming the database and the package to
install, and a job using it refused before anything runs (exit 2, no run left behind); the other jobs
of the project still run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, ledger_runs, run_main, write_project

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env

DATABASES = """\
warehouse: {url: "sqlite:///var/warehouse.db"}
legacy: {url: "mysql://etl:Legacy-Secret-4@db.example:3306/legacy"}
"""
USES_LEGACY = "database: legacy\ntasks:\n  - {name: a, sql: SELECT 1}\n"
LOCAL = "database: warehouse\ntasks:\n  - {name: a, sql: SELECT 1}\n"


def _project(tmp_path: Path) -> Path:
    return write_project(tmp_path, {"old": USES_LEGACY, "local": LOCAL}, databases=DATABASES)


def test_check_names_the_database_and_the_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path)
    code, out = run_main(project, "--check")
    assert code == 2
    assert ("conf/databases.yml [legacy.url]: the driver of mysql+mysqldb (MySQLdb) is not installed: pip install "
            "mysqlclient (conda: mysqlclient), or write mysql+pymysql:// to use PyMySQL") in out
    assert "jobs/old.yml" in out and "task 'a' uses database legacy" in out
    assert "Legacy-Secret-4" not in out + capsys.readouterr().err


def test_a_job_on_that_database_is_refused_and_the_others_run(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path)
    code, _ = run_main(project, "--job", "old")
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install mysqlclient" in err and "unexpected error" not in err
    assert ledger_runs(project) == []  # nothing started, nothing left `running`
    assert run_main(project, "--job", "local")[0] == 0
    assert [r["status"] for r in ledger_runs(project)] == ["success"]
