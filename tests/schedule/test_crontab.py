"""--crontab: valid cron lines with the absolute interpreter, CRON_TZ where a job's timezone is not the
system's, output appended under the project; crontab.example is exactly what the runner generates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.project import load_project
from runner.cron import cron_reads_it, cron_spec
from runner.schedule.crontab import ROOT_ENV, TZ_ENV, crontab_text
from tests.schedkit import REPO, SchedProject

EXAMPLE_PYTHON = "/opt/miniconda3/envs/etl-runner/bin/python"


def test_crontab_example_is_what_the_runner_generates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV, "/opt/etl-runner")
    monkeypatch.setenv(TZ_ENV, "UTC")
    generated = crontab_text(load_project(REPO / "conf", REPO / "jobs"), python=EXAMPLE_PYTHON)
    assert (REPO / "crontab.example").read_text() == generated, (
        "crontab.example is stale: regenerate it with RUNNER_CRONTAB_ROOT=/opt/etl-runner RUNNER_CRONTAB_TZ=UTC "
        f"python -m runner --crontab --python {EXAMPLE_PYTHON} > crontab.example")


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture
def project(tmp_path: Path) -> SchedProject:
    p = SchedProject(tmp_path / "etl%runner", {"wh": "sqlite:///var/wh.db"})
    task = [{"name": "t", "sql": "SELECT 1"}]
    p.job("nightly", {"schedule": "30 2 * * *", "database": "wh", "tasks": task})
    p.job("also_utc", {"schedule": "0 * * * *", "timezone": "Etc/UTC", "database": "wh", "tasks": task})
    p.job("shanghai", {"schedule": "0 6 * * 1-5", "timezone": "Asia/Shanghai", "database": "wh", "tasks": task})
    p.job("berlin", {"schedule": "15 3 * * *", "timezone": "Europe/Berlin", "database": "wh", "tasks": task})
    p.job("fast", {"schedule": "*/10 * * * * *", "database": "wh", "tasks": task})
    p.job("month_end", {"schedule": "0 23 L * *", "database": "wh", "tasks": task})
    p.job("second_friday", {"schedule": "0 7 * * fri#2", "database": "wh", "tasks": task})
    p.job("weekly", {"schedule": "@weekly", "database": "wh", "tasks": task})
    p.job("odd_saturdays", {"schedule": "0 16 */2 * sat", "database": "wh", "tasks": task})
    p.job("by_hand", {"database": "wh", "tasks": task})
    return p


def test_every_scheduled_job_gets_a_valid_cron_line(project: SchedProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TZ_ENV, "UTC")
    monkeypatch.delenv(ROOT_ENV, raising=False)
    text = crontab_text(load_project(project.root / "conf"), python="/opt/x/bin/python")
    root = str(project.root.resolve()).replace("%", "\\%")
    tz_in_effect, jobs = "UTC", {}
    for line in lines_of(text):
        if re.match(r"^[A-Z_]+=", line):
            key, value = line.split("=", 1)
            assert key in ("SHELL", "CRON_TZ"), line
            if key == "CRON_TZ":
                tz_in_effect = value
            continue
        fields = line.split(None, 1 if line.startswith("@") else 5)
        when, command = " ".join(fields[:-1]), fields[-1]
        assert cron_spec(when) and cron_reads_it(when) is None, line  # cron reads it exactly as the runner does
        m = re.fullmatch(rf"cd '?{re.escape(root)}'? && mkdir -p var/log && /opt/x/bin/python -m runner "
                         rf"(--due(?: --job (\w+))?) >> var/log/(\w+)\.log 2>&1", command)
        assert m, command
        name = m.group(2) or "due"
        assert m.group(3) == name
        jobs[name] = (when, tz_in_effect)
    assert jobs == {
        "due": ("*/5 * * * *", "UTC"),
        "nightly": ("30 2 * * *", "UTC"),
        "also_utc": ("0 * * * *", "UTC"),  # Etc/UTC is the system's zone under another name: no CRON_TZ
        "shanghai": ("0 6 * * 1-5", "Asia/Shanghai"),
        "berlin": ("15 3 * * *", "Europe/Berlin"),
        "weekly": ("@weekly", "UTC"),
        "odd_saturdays": ("0 16 */2 * sat", "UTC"),
    }
    assert '# fast: schedule "*/10 * * * * *" uses a seconds field, which cron does not read' in text
    assert '# month_end: schedule "0 23 L * *" uses L (the last day of the month), which cron does not read' in text
    assert '# second_friday: schedule "0 7 * * fri#2" uses # or L in the day of week, which cron does not' in text
    assert "by_hand" not in text


def test_a_generated_line_runs_from_slash_as_cron_would(project: SchedProject, monkeypatch: pytest.MonkeyPatch) -> None:
    """The nightly job's line, run by sh from / with cron's unescaping of %: it claims the latest slot
    (nothing ran yet, 24 h catch-up window) and appends to var/log/nightly.log under the project."""
    monkeypatch.setenv(TZ_ENV, "UTC")
    monkeypatch.delenv(ROOT_ENV, raising=False)
    text = crontab_text(load_project(project.root / "conf"), python=sys.executable)
    line = next(line for line in lines_of(text) if "--job nightly" in line)
    command = line.split(None, 5)[5].replace("\\%", "%")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}  # cron's PATH, no activated environment
    assert subprocess.run(["/bin/sh", "-c", command], cwd="/", env=env, timeout=60).returncode == 0
    log = (project.root / "var" / "log" / "nightly.log").read_text()
    assert "nightly " in log and ": success in " in log, log
    history = project.run("--history", "--job", "nightly").stdout
    assert " cron " in history and " success " in history, history


def test_a_relative_interpreter_is_refused(project: SchedProject) -> None:
    done = project.run("--crontab", "--python", "bin/python")
    assert done.returncode == 2
    assert "--python bin/python: give the absolute path of the interpreter" in done.stderr


def test_a_line_break_in_the_interpreter_or_the_project_path_is_refused_not_written_as_a_line(
        tmp_path: Path) -> None:
    injected = "\n* * * * * touch /tmp/runner-was-injected\n"
    p = SchedProject(tmp_path / f"etl{injected}x", {"wh": "sqlite:///var/wh.db"})
    p.job("nightly", {"schedule": "30 2 * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    for argv in (["--crontab"], ["--crontab", "--install"], ["--systemd-unit"]):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "RUNNER_CRONTAB_COMMAND": "/bin/false"}
        done = subprocess.run(p.args(*argv), cwd="/", capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2, (argv, done.stdout)
        assert "holds a line break or another control character" in done.stderr, done.stderr
        assert "touch" not in done.stdout and "Traceback" not in done.stderr
    ok = SchedProject(tmp_path / "plain", {"wh": "sqlite:///var/wh.db"})
    ok.job("nightly", {"schedule": "30 2 * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    for argv in (["--crontab"], ["--systemd-unit"]):
        done = ok.run(*argv, "--python", f"/usr/bin/python3{injected}")
        assert done.returncode == 2 and "--python '/usr/bin/python3\\n* * * * * touch" in done.stderr, done.stderr
        assert "touch" not in done.stdout
