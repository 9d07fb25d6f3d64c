"""Cron lines for every scheduled job, plus the one catch-up line.

Each line changes to the project root (relative paths resolve there), calls the environment's own
interpreter by its absolute path (so cron needs no `conda activate`) and appends its output to
`<log_dir>/<job>.log` under the project. A job's line runs `--due --job NAME`, which claims the
slot as the daemon does, so a slot runs once even with cron on several hosts; the catch-up line
runs `--due` every five minutes for whatever a down server missed. `CRON_TZ=` (cronie, and cron
daemons derived from Vixie cron) comes before the jobs whose timezone is not the system's.

`RUNNER_CRONTAB_ROOT` writes another project root into the lines and `RUNNER_CRONTAB_TZ` names the
timezone cron runs in (default: this system's), so crontab.example is the same on every machine.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.config.jobs import load_jobs
from runner.cron import cron_reads_it
from runner.errors import ConfigError, UsageError
from runner.model import Job, Project

ROOT_ENV = "RUNNER_CRONTAB_ROOT"
TZ_ENV = "RUNNER_CRONTAB_TZ"
CATCH_UP = "*/5 * * * *"


_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu", "GMT", "Etc/GMT", "GMT0",
              "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "Greenwich", "Etc/Greenwich"}


def same_zone(a: str, b: str) -> bool:
    """Two names of one timezone (only UTC has many names in common use)."""
    return a == b or (a in _UTC_NAMES and b in _UTC_NAMES)


def _zone(name: str) -> str | None:
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError):
        return None


def system_timezone() -> str:
    """The timezone cron reads its lines in: $RUNNER_CRONTAB_TZ, $TZ, /etc/timezone, /etc/localtime."""
    for name in (os.environ.get(TZ_ENV, ""), os.environ.get("TZ", "").lstrip(":")):
        if name and _zone(name):
            return name
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name and _zone(name):
            return name
    except OSError:
        pass
    target = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in target:
        name = target.split("zoneinfo/", 1)[1]
        if _zone(name):
            return name
    return "UTC"


def _shown(path: Path, root: Path, shown_root: str) -> str:
    """A path as the lines write it: relative to the project root when under it."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else shown_root


class _Line:
    def __init__(self, project: Project, python: str, shown_root: str):
        self.prefix = f"cd {shlex.quote(shown_root)} && mkdir -p {shlex.quote(_log_dir(project, shown_root))} && " \
                      f"{shlex.quote(python)} -m runner"
        extra = []
        if project.conf_dir.resolve() != (project.root / "conf").resolve():
            extra += ["--conf", shlex.quote(_shown(project.conf_dir, project.root, shown_root))]
        if project.jobs_dir.resolve() != (project.conf_dir.parent / "jobs").resolve():
            extra += ["--jobs", shlex.quote(_shown(project.jobs_dir, project.root, shown_root))]
        self.extra = "".join(f" {e}" for e in extra)
        self.log_dir = _log_dir(project, shown_root)

    def command(self, args: str, log_name: str) -> str:
        log_file = shlex.quote(f"{self.log_dir}/{log_name}.log")
        # cron turns an unescaped % into a newline
        return f"{self.prefix}{self.extra} {args} >> {log_file} 2>&1".replace("%", "\\%")


def _log_dir(project: Project, shown_root: str) -> str:
    log_dir = project.settings.log_dir.rstrip("/") or "."
    return log_dir if not os.path.isabs(log_dir) else _shown(Path(log_dir), project.root, shown_root)


def check_one_line(python: str, *paths: str) -> None:
    """A line break (or another control character) in the interpreter or a path would end the cron line
    or the unit's directive there and start a line of whoever chose the name: refused."""
    for what, text in (("--python", python), *(("the project path", p) for p in paths)):
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise UsageError(f"{what} {text!r} holds a line break or another control character, which would end "
                             "the line there and start a line of its own: give a path without one")


def crontab_text(project: Project, python: str | None = None) -> str:
    """The crontab for every scheduled job of the project (exit 2 when a job file is invalid)."""
    python = python or sys.executable
    if not os.path.isabs(python):
        raise UsageError(f"--python {python}: give the absolute path of the interpreter (cron has no PATH of "
                         f"your shell), e.g. /opt/miniconda3/envs/etl-runner/bin/python")
    jobs, problems = load_jobs(project)
    if problems:
        raise ConfigError(problems)
    shown_root = os.environ.get(ROOT_ENV) or str(project.root)
    check_one_line(python, shown_root, str(project.conf_dir), str(project.jobs_dir))
    system_tz = system_timezone()
    line = _Line(project, python, shown_root)
    out = [
        f"# Cron lines for the runner project in {shown_root}, written by `python -m runner --crontab`.",
        "# A job's line claims its slot as the scheduler daemon does (once across hosts sharing a state store);",
        "# the catch-up line runs the latest slot a down server missed and records older ones as missed.",
        f"# Lines without CRON_TZ run in the system's timezone ({system_tz}). Install with: python -m runner "
        "--crontab --install",
        "# (it replaces only the runner's block of your crontab and keeps a backup; `| crontab -` would replace all).",
        "SHELL=/bin/sh",
        "",
        "# catch-up: every job whose latest scheduled slot has no successful run",
        f"{CATCH_UP} {line.command('--due', 'due')}",
    ]
    scheduled = sorted((j for j in jobs.values() if j.schedule),
                       key=lambda j: (not same_zone(j.timezone, system_tz), j.timezone, j.name))
    tz_in_effect = system_tz
    for job in scheduled:
        if not same_zone(job.timezone, tz_in_effect):
            out += ["", f"CRON_TZ={job.timezone}"]
            tz_in_effect = job.timezone
        out += ["", *_job_lines(job, line)]
    return "\n".join(out) + "\n"


def _job_lines(job: Job, line: _Line) -> list[str]:
    about = " ".join(job.description.split())
    head = f"# {job.name}" + (f": {about}" if about else "")
    assert job.schedule is not None
    lacking = cron_reads_it(job.schedule)
    if lacking is not None:
        return [head, f"# {job.name}: schedule \"{job.schedule}\" uses {lacking}, which cron does not read: run it "
                      f"with --scheduler (the catch-up line runs its latest slot every five minutes)"]
    return [head, f"{job.schedule} {line.command(f'--due --job {job.name}', job.name)}"]
