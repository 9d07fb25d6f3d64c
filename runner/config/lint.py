"""What `--check` finds beyond the problems of each file on its own: drivers that are not installed,
two jobs writing one file, gzip exports whose name does not say so, an env_file others can read,
export paths only --param can fill. Errors make --check exit 2; warnings and notes do not. (A job with both a
.yml and a .yaml file is a problem of loading it.)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Mapping

from runner.config.checks import display
from runner.config.plan import MANUAL_FIX, unfilled_paths
from runner.config.project import env_file_path
from runner.errors import Problem
from runner.model import Job, Project

@dataclass
class Findings:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def lint(project: Project, jobs: Mapping[str, Job]) -> Findings:
    found = Findings()
    _drivers(project, found)
    _shared_exports(project, jobs, found)
    for job in jobs.values():
        for t in job.tasks:
            if t.export is not None and t.export.compress and not t.export.path.endswith(".gz"):
                found.warnings.append(f"{job.file}:{t.line} [task {t.name}]: export path {t.export.path} is gzip "
                                      "(compress: true) but does not end in .gz: tools that open it by its name "
                                      "will read it as plain text")
        if not job.schedule:
            for _, t, name in unfilled_paths(job, job.tasks):
                found.notes.append(f"{job.file}:{t.line} [task {t.name}]: export path {t.export.path} has "  # type: ignore[union-attr]
                                   f"{{{name}}}, which only --param fills: {MANUAL_FIX.format(name=name)}")
    _env_file_mode(project, found)
    _option_files(project, found)
    return found


def _drivers(project: Project, found: Findings) -> None:
    """Each database's driver can be imported (else every task on it fails at its first connect); the
    state store's is checked when the settings are read, for every command."""
    conf = display(project.conf_dir / "databases.yml", project.root)
    for name, db in project.databases.items():
        if db.driver_missing:
            found.errors.append(Problem(conf, f"{name}.url", db.driver_missing))


def _shared_exports(project: Project, jobs: Mapping[str, Job], found: Findings) -> None:
    """Two jobs whose exports write one file (the same path, with the same placeholders)."""
    writers: dict[str, tuple[Job, str]] = {}
    for job in sorted(jobs.values(), key=lambda j: j.name):
        for t in job.tasks:
            if t.export is None:
                continue
            key = os.path.normpath(str(project.root / t.export.path))
            first = writers.setdefault(key, (job, t.name))
            if first[0].name != job.name:
                found.errors.append(Problem(job.file, f"task {t.name}", f"export path {t.export.path} is also "
                                            f"written by job {first[0].name} task {first[1]}: the two would "
                                            "overwrite each other's file; give each its own path", t.line))


def _env_file_mode(project: Project, found: Findings) -> None:
    if not project.settings.env_file:
        return
    path = env_file_path(project.settings.env_file, project.root)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # a missing file is a problem of conf/runner.yml already
    if mode & 0o044:
        found.warnings.append(f"{display(path, project.root)} (env_file) is readable by "
                              f"{'others' if mode & 0o004 else 'its group'} (mode {mode:o}), and it holds "
                              f"secrets: chmod 600 {display(path, project.root)}")


def _option_files(project: Project, found: Findings) -> None:
    """`connect_args: {read_default_file: ...}` (MySQL option files): PyMySQL skips a missing file in
    silence and connects without its user and password."""
    conf = display(project.conf_dir / "databases.yml", project.root)
    for name, db in project.databases.items():
        value = db.connect_args.get("read_default_file")
        if not isinstance(value, str):
            continue
        path = os.path.expanduser(value)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            found.errors.append(Problem(conf, f"{name}.connect_args.read_default_file", f"option file {value} "
                                        "cannot be read (the driver would connect without its user and password): "
                                        "create it or fix the path"))
            continue
        if mode & 0o044:
            found.warnings.append(f"{conf} [{name}.connect_args.read_default_file]: {value} is readable by "
                                  f"{'others' if mode & 0o004 else 'its group'} (mode {mode:o}), and it holds a "
                                  f"password: chmod 600 {value}")
