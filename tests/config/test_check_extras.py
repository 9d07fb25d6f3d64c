"""What --check finds beyond each file's shape: from a table of job files to the line it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, run_main, write_project

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env

EXPORT = "  - name: {name}\n    export: {{query: 'SELECT 1 AS x', path: '{path}'{extra}}}\n"


def job(*tasks: str, schedule: str | None = None) -> str:
    head = (f"schedule: '{schedule}'\n" if schedule else "") + "database: warehouse\ntasks:\n"
    return head + "".join(tasks)


CASES = [
    ("driver not installed", {"j": job(EXPORT.format(name="e", path="r/a.csv", extra=""))},
     "warehouse: {url: 'sqlite:///var/w.db'}\nshop: {url: 'mysql+mysqldb://u:pw@h/db'}\n",
     "error: conf/databases.yml [shop.url]: the driver of mysql+mysqldb (MySQLdb) is not installed: pip install "
     "mysqlclient"),
    ("unknown database kind", {"j": job(EXPORT.format(name="e", path="r/a.csv", extra=""))},
     "warehouse: {url: 'sqlite:///var/w.db'}\nshop: {url: 'nosuchdb://h/db'}\n",
     "error: conf/databases.yml [shop.url]: unknown database kind 'nosuchdb'"),
    ("export placeholder nothing fills, scheduled", {"j": job(EXPORT.format(name="e", path="r/{regoin}.csv", extra=""),
                                                          schedule="0 1 * * *")}, None,
     "error: jobs/j.yml:5 [tasks.0.export.path]: export path r/{regoin}.csv has {regoin}, which no built-in or job "
     "param fills"),
    ("export placeholder only --param fills, manual", {"j": job(EXPORT.format(name="e", path="r/{region}.csv",
                                                                             extra=""))}, None,
     "note: jobs/j.yml:3 [task e]: export path r/{region}.csv has {region}, which only --param fills"),
    ("incremental without :watermark", {"j": job("  - name: c\n    load: {source: warehouse, query: 'SELECT 1 AS id', "
                                                 "table: t, incremental: {column: id}}\n")}, None,
     "error: jobs/j.yml:4 [tasks.0.load.query]: incremental load 'c' has no :watermark in its query, so every run "
     "reads every row again: add WHERE id > :watermark"),
    ("two tasks write one file", {"j": job(EXPORT.format(name="e", path="r/a.csv", extra=""),
                                           EXPORT.format(name="f", path="r/a.csv", extra=""))}, None,
     "error: jobs/j.yml:6 [tasks.1.export.path]: task 'f' writes the same file as task 'e' (r/a.csv)"),
    ("two jobs write one file", {"j": job(EXPORT.format(name="e", path="r/a.csv", extra="")),
                                 "k": job(EXPORT.format(name="f", path="r/a.csv", extra=""))}, None,
     "error: jobs/k.yml:3 [task f]: export path r/a.csv is also written by job j task e"),
    ("gzip without .gz", {"j": job(EXPORT.format(name="e", path="r/a.csv", extra=", compress: true"))}, None,
     "warning: jobs/j.yml:3 [task e]: export path r/a.csv is gzip (compress: true) but does not end in .gz"),
]


@pytest.mark.parametrize("jobs, databases, line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_reports(tmp_path: Path, jobs: dict[str, str], databases: str | None, line: str) -> None:
    project = write_project(tmp_path, jobs, databases)
    code, out = run_main(project, "--check")
    assert any(got.startswith(line) for got in out.splitlines()), out
    assert code == (2 if line.startswith("error") else 0), out
    code, doc = run_main(project, "--check", "--format", "json")
    found = json.loads(doc)
    assert found["valid"] is (code == 0)
    kind = line.split(":")[0]
    listed = {"error": [e["message"] for e in found["errors"]], "warning": found["warnings"], "note": found["notes"]}
    assert listed[kind], found


def test_yaml_job_files_are_jobs_and_a_name_with_both_is_a_problem(tmp_path: Path) -> None:
    project = write_project(tmp_path, {})
    (project / "jobs" / "alpha.yaml").write_text(job(EXPORT.format(name="e", path="r/a.csv", extra="")))
    code, out = run_main(project, "--check")
    assert code == 0 and "configuration valid: 1 job(s)" in out, out
    assert run_main(project, "--job", "alpha")[0] == 0
    (project / "jobs" / "alpha.yml").write_text(job(EXPORT.format(name="e", path="r/b.csv", extra="")))
    code, out = run_main(project, "--check")
    assert code == 2 and "error: jobs/alpha.yaml: job alpha has two files, alpha.yml and alpha.yaml: keep one" in out
