"""Files an export writes stay where the job file says and never gain privileges: a --param value cannot
move the file out of its folder (separators, `..`, absolute values) unless the export says
`outside_project: true`; built-in parameters cannot be overridden; a replaced report keeps at most its
old permission bits (the setuid bit is not copied). Real runs on SQLite, files on the real file system."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from runner.config.jobs import load_jobs
from runner.config.project import load_project
from tests.faultkit import FaultProject


def project_with(tmp_path: Path, path: str, **export: Any) -> FaultProject:
    project = FaultProject(tmp_path / "project", {"wh": {"url": "sqlite:///var/wh.db"}})
    project.job("report", {"database": "wh", "params": {"day": "{run_date}"}, "tasks": [{"name": "out", "export": {
        "query": "SELECT 1 AS a", "path": path, **export}}]})
    return project


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("value", ["../../../../tmp/x", "../x", "..", "sub/dir", "/tmp/absolute", "a\\b"])
def test_a_param_value_cannot_move_the_file(tmp_path: Path, value: str) -> None:
    project = project_with(tmp_path, "reports/{day}.csv")
    before = files_under(tmp_path)
    outcome = project.cli("--job", "report", "--param", f"day={value}")
    assert outcome.code == 2, outcome.output
    assert "holds a path separator or '..'" in outcome.output and "outside_project: true" in outcome.output
    assert files_under(tmp_path) == before  # nothing written anywhere, not even the ledger's run
    dry = project.cli("--job", "report", "--dry-run", "--param", f"day={value}")
    assert dry.code == 2


def test_outside_project_lets_the_job_file_say_otherwise(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    project = project_with(tmp_path, "reports/{day}.csv", outside_project=True)
    outcome = project.cli("--job", "report", "--param", "day=../../elsewhere/x")
    assert outcome.code == 0, outcome.output
    assert (elsewhere / "x.csv").read_text() == "a\n1\n"


def test_an_absolute_path_written_in_the_job_file_stays_allowed(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "{day}.csv"
    project = project_with(tmp_path, str(target))
    outcome = project.cli("--job", "report", "--param", "day=today")
    assert outcome.code == 0, outcome.output
    assert (tmp_path / "shared" / "today.csv").exists()
    refused = project.cli("--job", "report", "--param", "day=../escape")
    assert refused.code == 2 and not (tmp_path / "escape.csv").exists()


def test_check_refuses_paths_that_leave_the_project_and_job_params_that_would_move_them(tmp_path: Path) -> None:
    project = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}})
    project.job("up", {"database": "wh", "tasks": [{"name": "out", "export": {
        "query": "SELECT 1", "path": "../outside/{run_date}.csv"}}]})
    project.job("moved", {"database": "wh", "params": {"dir": "../../etc"}, "tasks": [{"name": "out", "export": {
        "query": "SELECT 1", "path": "reports/{dir}.csv"}}]})
    project.job("builtin", {"database": "wh", "params": {"run_date": "2020-01-01"}, "tasks": [
        {"name": "t", "sql": "SELECT :run_date"}]})
    _, problems = load_jobs(load_project(tmp_path / "conf", env={}))
    shown = {(p.file, p.key): p.message for p in problems}
    assert "leaves the project folder" in shown[("jobs/up.yml", "tasks.0.export.path")]
    assert "holds a path separator or '..'" in shown[("jobs/moved.yml", "params.dir")]
    assert "run_date is built in and cannot be set: pass --date" in shown[("jobs/builtin.yml", "params.run_date")]


@pytest.mark.parametrize("name, fix", [("run_date", "--date"), ("job", "set by the runner"),
                                       ("run_id", "set by the runner"), ("yesterday", "--date")])
def test_param_cannot_override_a_builtin(tmp_path: Path, name: str, fix: str) -> None:
    project = project_with(tmp_path, "reports/{day}.csv")
    outcome = project.cli("--job", "report", "--param", f"{name}=x")
    assert outcome.code == 2
    assert f"--param {name}: {name} is built in and cannot be set" in outcome.output and fix in outcome.output


def test_param_cannot_set_the_watermark_of_an_incremental_load(tmp_path: Path) -> None:
    project = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}})
    project.job("inc", {"database": "wh", "tasks": [{"name": "l", "load": {
        "source": "wh", "query": "SELECT 1 AS id WHERE 1 > :watermark", "table": "t", "incremental": {"column": "id"}}}]})
    outcome = project.cli("--job", "inc", "--param", "watermark=0")
    assert outcome.code == 2 and "--param watermark: watermark is set by the runner" in outcome.output


# ------------------------------------------------------------------------------------- file modes

@pytest.mark.parametrize("old, new", [(0o4755, 0o755), (0o6750, 0o750), (0o1777, 0o777), (0o640, 0o640)])
def test_a_replaced_report_keeps_at_most_its_permission_bits(tmp_path: Path, old: int, new: int) -> None:
    project = project_with(tmp_path, "reports/out.csv")
    report = project.root / "reports" / "out.csv"
    report.parent.mkdir(parents=True)
    report.write_text("old\n")
    os.chmod(report, old)
    assert stat.S_IMODE(report.stat().st_mode) == old
    outcome = project.cli("--job", "report")
    assert outcome.code == 0, outcome.output
    assert report.read_text() == "a\n1\n"
    assert stat.S_IMODE(report.stat().st_mode) == new


def test_a_new_report_gets_the_umask(tmp_path: Path) -> None:
    project = project_with(tmp_path, "reports/out.csv")
    outcome = project.cli("--job", "report")
    assert outcome.code == 0, outcome.output
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((project.root / "reports" / "out.csv").stat().st_mode) == 0o666 & ~mask
