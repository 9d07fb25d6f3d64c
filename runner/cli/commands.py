"""What each command line does: one library call each, output written to the given stream."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import IO, Sequence
from zoneinfo import ZoneInfo

from runner import clock
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
    from runner.notify.hub import Hub
    from runner.state.ledger import Ledger
    from runner.state.lock import job_lock

    own = runner is None
    hub = None
    if runner is None:
        ledger = Ledger(project.settings.state_url)
        hub = Hub(project, ledger, {job.name: job})
        runner = Runner(project, ledger=ledger, watchers=hub.watchers())
        hub.pool_sources.append(runner.engines.pools)
        hub.start()
    try:
        with job_lock(project, runner.ledger, job.name, trigger) as held:
            for day in days:
                result = runner.run(RunRequest(job, day, cli, from_task_name, trigger, still_locked=held.verify))
                print_summary(result, out)
                if not result.ok:
                    return 1
        return 0
    finally:
        if hub is not None:
            hub.close()
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
                    out.write(f"      bound: {', '.join(f'{k}={v!r}' for k, v in bound.items())}\n")
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
    problems = [*conf_problems, *job_problems, *_notify_problems(project, jobs)]
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


def _notify_problems(project: Project, jobs: dict[str, Job]) -> list[Problem]:
    """Notify URLs that Apprise does not understand (Apprise is imported only when there are some)."""
    where = [("conf/runner.yml", t) for t in project.settings.notify]
    where += [(job.file, t) for job in jobs.values() for t in job.notify or ()]
    if not where:
        return []
    from runner.notify.courier import understood

    return [Problem(file, "notify", f"Apprise does not understand the URL of target {t.label} "
                                    f"({t.url.split('://', 1)[0]}://...): see Apprise's list of services and "
                                    "their URLs")
            for file, t in where if not understood(t.url)]


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
    _undelivered(project, job, out)
    return 0


def _undelivered(project: Project, job: str | None, out: IO[str]) -> None:
    """Alerts still in the outbox, under the history table."""
    from runner.state.ledger import Ledger
    from runner.state.outbox import Outbox

    ledger = Ledger(project.settings.state_url)
    try:
        pending = [a for a in Outbox(ledger).undelivered(200) if job is None or a.job == job]
    finally:
        ledger.dispose()
    if not pending:
        return
    out.write(f"\n{len(pending)} alert(s) not sent yet (the next runner command, or the daemon's next look, sends "
              f"them):\n")
    for a in pending[:10]:
        run = f" run {a.run_id[:8]}" if a.run_id else ""
        error = f": {' '.join((a.error or '').split())[:120]}" if a.error else ""
        out.write(f"  {a.event} of {a.job}{run} to {a.target}, {a.attempts} attempt(s){error}\n")
    if len(pending) > 10:
        out.write(f"  ... and {len(pending) - 10} more\n")


def run_record(project: Project, run_id: str, out: IO[str]) -> int:
    """`--history --run ID`: the whole record of one run: every task and attempt, full error texts,
    the statement each failed in, and the alerts sent about it."""
    from runner import logs
    from runner.state.ledger import Ledger
    from runner.state.outbox import Outbox

    ledger = Ledger(project.settings.state_url)
    try:
        found = ledger.find_runs(run_id.strip())
        if not found:
            raise UsageError(f"no run {run_id!r} in the ledger ({redact(project.settings.state_url)}); see --history")
        if len(found) > 1:
            raise UsageError(f"{run_id!r} starts the ids of {len(found)} runs ("
                             + ", ".join(r["run_id"] for r in found) + "): give more of it")
        run = found[0]
        attempts = ledger.attempt_details(run["run_id"])
        alerts = Outbox(ledger).of_run(run["run_id"])
    finally:
        ledger.dispose()
    scrub = logs.REDACTOR.scrub
    fmt = (lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S") + "Z" if dt else "-")
    secs = (run["ended_at"] - run["started_at"]).total_seconds() if run["ended_at"] else None
    out.write(f"run {run['run_id']} of job {run['job']}\n")
    rows = [("status", run["status"]), ("trigger", run["trigger"]), ("host", f"{run['host']} (pid {run['pid']})"),
            ("run date", run["run_date"]), ("slot", fmt(run["slot"])), ("started", fmt(run["started_at"])),
            ("ended", fmt(run["ended_at"])), ("duration", f"{secs:.2f}s" if secs is not None else "-"),
            ("attempts", str(run["attempts"])), ("rows", str(run["rows"]))]
    for key, value in rows:
        out.write(f"  {key + ':':<10} {value}\n")
    if run["error"]:
        out.write("  error:\n" + "".join(f"    {line}\n" for line in scrub(run["error"]).splitlines()))
    out.write(f"\ntask attempts ({len(attempts)}):\n")
    for a in attempts:
        took = f" in {(a['ended_at'] - a['started_at']).total_seconds():.2f}s" if a["ended_at"] else ""
        rows_ = f", {a['rows']} rows" if a["rows"] is not None else ""
        code = f", error {a['errno']}" if a["errno"] is not None else ""
        out.write(f"  {a['task']} attempt {a['attempt']}: {a['status']}{took}{rows_}{code} (started "
                  f"{fmt(a['started_at'])})\n")
        if a["statement"]:
            out.write(f"      statement: {a['statement']}: {(a['first_line'] or '')[:200]}\n")
        if a["error"]:
            out.write(f"      {'note' if a['status'] == 'success' else 'error'}: {scrub(a['error'])}\n")
    if not attempts:
        out.write("  none (no task was started)\n")
    out.write(f"\nnotifications ({len(alerts)}):\n")
    for n in alerts:
        state = f"sent {fmt(n.sent_at)}" if n.status == "sent" else n.status
        error = f"; last error: {scrub(n.error)}" if n.error else ""
        out.write(f"  {n.event} to {n.target}: {state}, {n.attempts} attempt(s){error}\n")
    if not alerts:
        out.write("  none\n")
    return 0


def _table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


