"""What each page shows, assembled once for both the HTML pages and the JSON API: the overview of
every job, one job with its runs, one run with its tasks and attempts."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.config.plan import order_tasks
from runner.cron import Schedule
from runner.errors import Problem
from runner.model import Job
from runner.state.jobstate import Pause
from runner.state.outbox import Alert
from runner.web.catalog import Snapshot
from runner.web.charts import Cell, DurationChart, Gantt, duration_chart, gantt, run_cells, slot_cells
from runner.web.records import Attempt, Run
from runner.web.store import Reader
from runner.web.words import schedule_words

STRIP = 30  # slots in the overview's strip
STATUSES = ("success", "failed", "interrupted", "running", "missed", "abandoned", "paused")
CHART_RUNS = 1000  # runs in the job page's chart

_schedules: dict[tuple[str, str], Schedule] = {}
_schedules_lock = threading.Lock()


def schedule_of(job: Job) -> Schedule | None:
    if not job.schedule:
        return None
    key = (job.schedule, job.timezone)
    with _schedules_lock:
        if key not in _schedules:
            _schedules[key] = Schedule(*key)
        return _schedules[key]


@dataclass
class JobRow:
    name: str
    job: Job | None  # None when its file does not load
    problems: list[Problem]
    next_run: datetime | None
    last: Run | None
    cells: list[Cell]
    pause: Pause | None = None  # in the state store (--pause, or from the web)

    @property
    def paused_why(self) -> str | None:
        """Why the job's slots are recorded as paused: its pause, or enabled: false in its file."""
        if self.job is not None and not self.job.enabled:
            return f"enabled: false in {self.job.file}"
        return self.pause.text() if self.pause is not None else None

    @property
    def schedule(self) -> str | None:
        return self.job.schedule if self.job else None

    @property
    def schedule_words(self) -> str:
        return schedule_words(self.schedule) if self.job else "invalid job file"

    @property
    def timezone(self) -> str:
        return self.job.timezone if self.job else "UTC"

    @property
    def description(self) -> str:
        return self.job.description if self.job else ""


def job_row(snap: Snapshot, reader: Reader, name: str, now: datetime, pause: Pause | None = None,
            seen: datetime | None = None) -> JobRow:
    job = snap.jobs.get(name)
    problems = snap.invalid.get(name, [])
    last = reader.latest(name)
    schedule = schedule_of(job) if job else None
    if schedule is None:
        cells = run_cells(reader.runs(job=name, limit=STRIP), now, STRIP)
        return JobRow(name, job, problems, None, last, cells, pause)
    recorded = reader.slot_runs(name, STRIP + 15)
    # Every slot a runner looked at is recorded (run, missed, abandoned, paused); the slots no record
    # has are those since the newest recorded one (or since a runner first saw the job, or its file
    # appeared), when no runner was up.
    newest = max((r.slot for r in recorded if r.slot is not None), default=None)
    since = newest or seen or snap.changed.get(name, now)
    expected, _ = schedule.recent(since, now, STRIP)
    cells = slot_cells(recorded, expected, now, STRIP)
    return JobRow(name, job, problems, schedule.next_after(now), last, cells, pause)


def overview(snap: Snapshot, reader: Reader, now: datetime) -> list[JobRow]:
    """Every job in the jobs folder, valid or not (a job whose file is gone keeps its job page)."""
    names = snap.names()
    paused, seen = reader.paused(names), reader.first_seen(names)
    return [job_row(snap, reader, name, now, paused.get(name), seen.get(name)) for name in names]


@dataclass
class JobView:
    row: JobRow
    runs: list[Run]  # newest first, as filtered
    total: int  # runs matching the filter
    chart: DurationChart
    watermarks: list[dict[str, Any]]  # as --watermarks lists them
    status: str | None = None
    since: datetime | None = None


def job_view(snap: Snapshot, reader: Reader, name: str, now: datetime, status: str | None = None,
             since: datetime | None = None, limit: int = 100) -> JobView | None:
    """None when neither a job file nor the ledger knows the job."""
    if name not in snap.jobs and name not in snap.invalid and not reader.has_runs(name):
        return None
    row = job_row(snap, reader, name, now, reader.paused([name]).get(name), reader.first_seen([name]).get(name))
    charted = reader.runs(job=name, status=status, since=since, limit=max(limit, CHART_RUNS))
    total = reader.count(job=name, status=status, since=since) if len(charted) >= CHART_RUNS else len(charted)
    chart = duration_chart(list(reversed(charted)), row.timezone, now)
    return JobView(row, charted[:limit], total, chart, reader.watermarks(snap.jobs, [name]), status, since)


@dataclass
class TaskRow:
    """One task of a run: its last attempt says how it ended."""

    name: str
    status: str  # success | failed | running | retrying | not started
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def rows(self) -> int | None:
        return self.last.rows if self.last else None

    def seconds(self, now: datetime) -> float | None:
        if not self.attempts:
            return None
        end = self.attempts[-1].ended or now
        return max(0.0, (end - self.attempts[0].started).total_seconds())

    @property
    def retries(self) -> int:
        return max(0, len(self.attempts) - 1)


@dataclass
class RunView:
    run: Run
    job: Job | None
    tasks: list[TaskRow]
    attempts: list[Attempt]
    chain: list[Run]  # every run of the slot, oldest first
    gantt: Gantt
    notifications: list[Alert]


def run_view(snap: Snapshot, reader: Reader, run_id: str, now: datetime) -> RunView | None:
    run = reader.run(run_id)
    if run is None:
        return None
    tries = reader.attempts(run_id)
    tasks: dict[str, TaskRow] = {}
    for a in tries:
        tasks.setdefault(a.task, TaskRow(a.task, a.status)).attempts.append(a)
    for t in tasks.values():
        t.status = t.attempts[-1].status
    job = snap.jobs.get(run.job)
    if job is not None and run.status not in ("success", "running", "missed", "paused"):
        for t in order_tasks(job.tasks):
            if t.name not in tasks:
                tasks[t.name] = TaskRow(t.name, "not started")
    chain = reader.slot_chain(run)
    return RunView(run, job, list(tasks.values()), tries, chain, gantt(tries, run.started, run.ended, now),
                   reader.notifications(run_id))
