"""The project as its files are now: conf/ and jobs/ read again when one of them changed (a stat of
each file per request), so the pages show a job added or fixed a moment ago, and an invalid job file
with its problems."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runner import logs
from runner.config.jobs import SUFFIXES, job_names, load_jobs
from runner.config.project import load_project
from runner.config.urls import passwords
from runner.errors import ConfigError, Problem
from runner.model import Job, Project


@dataclass(frozen=True)
class Snapshot:
    project: Project
    jobs: dict[str, Job]
    invalid: dict[str, list[Problem]]  # job files that do not load, with their problems
    conf_problems: list[Problem] = field(default_factory=list)  # conf/ as it is now (the pages keep the last valid)
    changed: dict[str, datetime] = field(default_factory=dict)  # when each job file was last written

    def names(self) -> list[str]:
        return sorted({*self.jobs, *self.invalid})


def _fingerprint(project: Project) -> tuple:
    out = []
    for folder in (project.conf_dir, project.jobs_dir):
        try:
            for p in sorted(folder.iterdir()):
                if p.suffix in SUFFIXES:
                    st = p.stat()
                    out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(folder), None, None))
    return tuple(out)


class Catalog:
    """Thread-safe; reads the files again only when their names, sizes or times changed."""

    def __init__(self, project: Project):
        self._project = project
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._snapshot: Snapshot | None = None

    def current(self) -> Snapshot:
        key = _fingerprint(self._project)
        with self._lock:
            if key != self._key or self._snapshot is None:
                self._snapshot = self._load()
                self._key = key
            return self._snapshot

    def _load(self) -> Snapshot:
        conf_problems: list[Problem] = []
        try:
            project = load_project(self._project.conf_dir, self._project.jobs_dir)
            self._project = project
        except ConfigError as exc:
            conf_problems = exc.problems
            project = self._project
        logs.REDACTOR.add(passwords(project))  # pages pass every text through it
        jobs, problems = load_jobs(project)
        invalid: dict[str, list[Problem]] = {}
        for name in job_names(project):
            if name not in jobs:
                invalid[name] = [p for p in problems if Path(p.file).stem == name] or [
                    Problem(f"jobs/{name}", "", "invalid (see --check)")]
        changed = {}
        for name, job in jobs.items():
            try:
                changed[name] = datetime.fromtimestamp((project.root / job.file).stat().st_mtime, timezone.utc)
            except OSError:
                continue
        return Snapshot(project, jobs, invalid, conf_problems, changed)
