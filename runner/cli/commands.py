"""What each command line does: one library call each, output written to the given stream."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import IO, Sequence
from zoneinfo import ZoneInfo

from runner import clock
from runner.config.exact import shown
from runner.config.jobs import load_job, load_jobs
from runner.config.plan import (
    MANUAL_FIX,
    fill_path,
    from_task,
    missing_params,
    order_tasks,
    parse_dates,
    parse_params,
    resolve_params,
    unset_params,
)
from runner.config.statements import bound_preview
from runner.config.urls import redact
from runner.errors import ConfigError, Problem, UsageError
from runner.model import Job, Project, Task
from runner.run.executor import Runner, RunRequest
from runner.run.summary import print_summary
from runner.tasks.sql import non_atomic

log = logging.getLogger("runner")


def today_in(tz: str) -> date:
    return clock.now().astimezone(ZoneInfo(tz)).date()


def selected_tasks(job: Job, from_task_name: str | None) -> list[Task]:
    """The tasks a run makes, in plan order; an unknown --from-task names the job file."""
    try:
        return from_task(order_tasks(job.tasks), from_task_name)
    except UsageError as exc:
        raise UsageError(f"{job.file}: {exc}") from None


def check_params(job: Job, run_date: date, cli: dict[str, str]) -> None:
    params = resolve_params(job, run_date, cli)
    missing = missing_params(job.tasks, params)
    if missing:
        raise ConfigError([m.problem(MANUAL_FIX) for m in missing])


def run_job(project: Project, name: str, *, params: Sequence[str] = (), dates: str | None = None,
            from_task_name: str | None = None, trigger: str = "manual", out: IO[str],
            runner: Runner | None = None) -> int:
    """`--job NAME`: run the job for each date in order, stopping at the first failure."""
    job = load_job(project, name)
    cli = parse_params(params)
    days = parse_dates(dates) if dates else [today_in(job.timezone)]
    selected_tasks(job, from_task_name)  # unknown task: usage error before anything runs
    check_params(job, days[0], cli)
    from runner.state.lock import job_lock

    own = runner is None
    runner = runner or Runner(project)
    try:
        with job_lock(project, runner.ledger, job.name, trigger) as held:
            for day in days:
                result = runner.run(RunRequest(job, day, cli, from_task_name, trigger, still_locked=held.verify))
                print_summary(result, out)
                if not result.ok:
                    return 1
        return 0
    finally:
        if own:
            runner.close()


def dry_run(project: Project, name: str, *, params: Sequence[str] = (), dates: str | None = None,
            from_task_name: str | None = None, out: IO[str]) -> int:
    """`--dry-run`: the plan, statement by statement with bound values; no database is touched."""
    job = load_job(project, name)
    cli = parse_params(params)
    days = parse_dates(dates) if dates else [today_in(job.timezone)]
    tasks = selected_tasks(job, from_task_name)
    check_params(job, days[0], cli)
    for day in days:
        values = resolve_params(job, day, cli, run_id="(new)")
        out.write(f"job {job.name} for {day} ({len(tasks)} tasks, max_parallel {job.max_parallel}); nothing is run\n")
        for i, t in enumerate(tasks, 1):
            deps = f" after {', '.join(t.depends_on)}" if t.depends_on else ""
            flags = [f"timeout {t.timeout:.0f}s"] if t.timeout else []
            if non_atomic(t):
                flags.append("non-atomic (DDL)" + (", idempotent" if t.idempotent else ", not retried"))
            out.write(f"{i}. {t.name} [{t.kind}] on {t.database} ({redact(project.databases[t.database].url)})"
                      f"{deps}{'; ' + '; '.join(flags) if flags else ''}\n")
            stmts = list(t.statements) or [s.query for s in (t.export, t.load) if s is not None]
            for s in stmts:
                out.write(f"   {s.where}: {' '.join(s.sql.split())[:200]}\n")
                bound = bound_preview(s.sql, values)
                if bound:
                    out.write(f"      bound: {', '.join(f'{k}={shown(v)}' for k, v in bound.items())}\n")
            if t.export is not None:
                path = fill_path(t.export.path, values, f"{job.file} task {t.name}")
                out.write(f"   -> {t.export.format} file {path}\n")
            if t.load is not None:
                out.write(f"   -> {t.load.mode} into {t.load.table} from database {t.load.source}\n")
    return 0


def next_run(job: Job, now: datetime | None = None) -> datetime | None:
    if not job.schedule:
        return None
    from runner.cron import Schedule

    return Schedule(job.schedule, job.timezone).next_after(now or clock.now()).astimezone(ZoneInfo(job.timezone))


def list_jobs(project: Project, out: IO[str]) -> int:
    """`--list`: each job with its description, schedule and next run time."""
    jobs, problems = load_jobs(project)
    rows = [("JOB", "SCHEDULE", "TIMEZONE", "NEXT RUN", "DESCRIPTION")]
    for name, job in sorted(jobs.items()):
        nxt = next_run(job)
        rows.append((name, job.schedule or "(manual)", job.timezone,
                     nxt.strftime("%Y-%m-%d %H:%M %Z") if nxt else "-", job.description))
    _table(rows, out)
    if problems:
        out.write(f"\n{len({p.file for p in problems})} job file(s) invalid; run --check for details\n")
    return 0


def check(project: Project, out: IO[str], conf_problems: Sequence[Problem] = ()) -> int:
    """`--check`: every problem in conf and every job, or a confirmation that all is valid."""
    jobs, job_problems = load_jobs(project)
    problems = [*conf_problems, *job_problems]
    for p in problems:
        out.write(f"error: {p}\n")
    notes = []
    for job in jobs.values():
        for t in job.tasks:
            if non_atomic(t):
                notes.append(f"{job.file}:{t.line} [task {t.name}]: non-atomic: a statement commits implicitly "
                             f"(DDL), so the task is not one transaction; "
                             + ("it is marked idempotent and will be retried" if t.idempotent else
                                "it will not be retried unless marked idempotent: true"))
        if not job.schedule:
            notes.extend(str(m.problem(MANUAL_FIX)) for m in unset_params(job, job.tasks))
    for n in notes:
        out.write(f"note: {n}\n")
    if problems:
        out.write(f"{len(problems)} problem(s) found; nothing was run\n")
        return 2
    out.write(f"configuration valid: {len(jobs)} job(s), {len(project.databases)} database(s)\n")
    return 0


def history(project: Project, job: str | None, out: IO[str], limit: int = 30) -> int:
    """`--history`: recent runs with slot, host, trigger, status, duration, attempts and rows per task."""
    from runner.state.ledger import Ledger

    ledger = Ledger(project.settings.state_url)
    try:
        runs = ledger.history(job, limit)
        per_task: dict[str, list[str]] = {}
        failed: dict[str, str] = {}
        for a in ledger.last_attempts([r["run_id"] for r in runs]):
            per_task.setdefault(a.run_id, []).append(f"{a.task}:{a.status[:4]}/{a.attempt}a/{a.rows or 0}r")
            if a.status == "failed" and a.run_id not in failed:
                code = f"{a.errno} " if a.errno is not None else ""
                failed[a.run_id] = f"{a.task}: {code}{a.error or ''}"
    finally:
        ledger.dispose()
    table = [("STARTED (UTC)", "JOB", "DATE", "SLOT (UTC)", "HOST", "TRIGGER", "STATUS", "SECONDS", "ATTEMPTS", "ROWS",
              "TASKS", "ERROR")]
    for r in runs:
        secs = (r["ended_at"] - r["started_at"]).total_seconds() if r["ended_at"] else None
        error = " ".join((failed.get(r["run_id"]) or r["error"] or "").split())[:100]
        table.append((r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), r["job"], r["run_date"],
                      r["slot"].strftime("%Y-%m-%d %H:%M:%S") if r["slot"] else "-", r["host"], r["trigger"],
                      r["status"], f"{secs:.1f}" if secs is not None else "-", str(r["attempts"]), str(r["rows"]),
                      " ".join(per_task.get(r["run_id"], [])), error))
    _table(table, out)
    if not runs:
        out.write("no runs recorded yet\n")
    return 0


def _table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


