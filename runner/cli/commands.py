"""What each command line does: one library call each, output written to the given stream."""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import IO, Sequence
from zoneinfo import ZoneInfo

from runner import clock
from runner.config.exact import shown
from runner.config.jobs import load_job, load_jobs
from runner.cli.output import iso, write_json, write_table
from runner.config.plan import (
    MANUAL_FIX,
    fill_path,
    from_task,
    missing_params,
    order_tasks,
    parse_dates,
    parse_params,
    refused_override,
    resolve_params,
    task_statements,
    unset_params,
    unused_cli_params,
)
from runner.config.statements import bound_preview
from runner.config.urls import redact
from runner.errors import ConfigError, Problem, UsageError
from runner.model import Job, Project, Task
from runner.run.executor import Runner, RunRequest, new_run_id
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


def check_params(job: Job, run_date: date, cli: dict[str, str], project: Project | None = None) -> None:
    """Statements' parameters nothing sets, export paths the values would move: a usage or configuration
    error before anything runs."""
    params = resolve_params(job, run_date, cli)
    missing = missing_params(job.tasks, params)
    if missing:
        raise ConfigError([m.problem(MANUAL_FIX) for m in missing])
    for t in job.tasks:
        if t.export is not None and project is not None:
            fill_path(t.export.path, params, f"{job.file} task {t.name} export.path", project.root,
                      t.export.outside_project)


def parse_cli(job: Job, params: Sequence[str]) -> dict[str, str]:
    """--param values: a built-in may not be set, and a key nothing of the job uses is a misspelling."""
    cli = parse_params(params)
    for name in cli:
        refused = refused_override(name, job)
        if refused:
            raise UsageError(f"--param {name}: {refused}")
    unused = unused_cli_params(job, cli)
    if unused is not None:
        raise unused
    return cli


def run_job(project: Project, name: str, *, params: Sequence[str] = (), dates: str | None = None,
            from_task_name: str | None = None, trigger: str = "manual", out: IO[str],
            runner: Runner | None = None, force: bool = False) -> int:
    """`--job NAME`: run the job for each date in order, stopping at the first failure. A paused job
    is refused unless `force`; a run of the job left `running` by a process that died is marked
    abandoned first (its lock is free, so nothing runs it)."""
    job = load_job(project, name)
    cli = parse_cli(job, params)
    days = parse_dates(dates) if dates else [today_in(job.timezone)]
    selected_tasks(job, from_task_name)  # unknown task: usage error before anything runs
    check_params(job, days[0], cli, project)
    from runner.notify.hub import watched_runner
    from runner.schedule.byhand import abandon_unfinished, refuse_paused
    from runner.state.lock import job_lock
    from runner.state.retention import prune_if_due
    from runner.state.slots import SlotLedger

    own = runner is None
    hub = None
    if runner is None:
        runner, hub = watched_runner(project, SlotLedger(project.settings.state_url), {job.name: job})
    try:
        refuse_paused(job, runner.ledger, force, f"--job {name}")
        with job_lock(project, runner.ledger, job.name, trigger) as held:
            abandon_unfinished(runner.ledger, job)
            for day in days:
                run_id = new_run_id()
                runner.ledger.record_origin(run_id, cli, from_task_name)
                result = runner.run(RunRequest(job, day, cli, from_task_name, trigger, run_id=run_id,
                                               still_locked=held.verify))
                print_summary(result, out)
                if not result.ok:
                    return 1
        return 0
    finally:
        prune_if_due(runner.ledger, project.settings.history_days)
        if hub is not None:
            hub.close()
        if own:
            runner.close()


def dry_run(project: Project, name: str, *, params: Sequence[str] = (), dates: str | None = None,
            from_task_name: str | None = None, out: IO[str], whole: bool = False) -> int:
    """`--dry-run`: the plan, statement by statement with bound values; no database is touched (the
    state store is read, when it exists, for the stored watermarks)."""
    job = load_job(project, name)
    cli = parse_cli(job, params)
    days = parse_dates(dates) if dates else [today_in(job.timezone)]
    tasks = selected_tasks(job, from_task_name)
    check_params(job, days[0], cli, project)
    marks = stored_watermarks(project, job, tasks)
    if not job.enabled:
        out.write(f"note: job {job.name} has enabled: false in {job.file}: a run needs --force\n")
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
            if t.name in marks:
                value, told = marks[t.name]
                values = {**values, "watermark": value}
                out.write(f"   watermark: {told}\n")
            for s in task_statements(t):
                out.write(_statement_text(s, whole))
                bound = bound_preview(s.sql, values)
                if bound:
                    out.write(f"      bound: {', '.join(f'{k}={shown(v)}' for k, v in bound.items())}\n")
            if t.export is not None:
                path = fill_path(t.export.path, values, f"{job.file} task {t.name}", project.root,
                                 t.export.outside_project)
                out.write(f"   -> {t.export.format} file {_shown(path, project)}\n")
            if t.load is not None:
                out.write(f"   -> {t.load.mode} into {t.load.table} from database {t.load.source}\n")
    return 0


def _shown(path: Path, project: Project) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


PREVIEW = 200


def _statement_text(s: object, whole: bool) -> str:
    sql = s.sql.strip()  # type: ignore[attr-defined]
    if whole:
        return f"   {s.where}:\n" + "".join(f"      {line}\n" for line in sql.splitlines())  # type: ignore[attr-defined]
    flat = " ".join(sql.split())
    if len(flat) <= PREVIEW:
        return f"   {s.where}: {flat}\n"  # type: ignore[attr-defined]
    return (f"   {s.where}: {flat[:PREVIEW]}… ({len(sql):,} characters in all; -v shows every statement "  # type: ignore[attr-defined]
            f"whole)\n")


def stored_watermarks(project: Project, job: Job, tasks: Sequence[Task]) -> dict[str, tuple[object, str]]:
    """task -> (the value :watermark binds on the next run, what that is), read from the state store
    when it exists (a dry run creates nothing)."""
    incremental = [t for t in tasks if t.load is not None and t.load.incremental is not None]
    if not incremental:
        return {}
    from runner.move.watermark import describe, loads
    from runner.state.ledger import Ledger

    ledger = Ledger(project.settings.state_url, create=False)
    out: dict[str, tuple[object, str]] = {}
    try:
        exists = ledger.exists()
        for t in incremental:
            state = loads(ledger.watermark(job.name, t.name)) if exists else loads(None)
            out[t.name] = describe(state, t.load.incremental.initial)  # type: ignore[union-attr]
    except Exception as exc:  # the state store is not reachable: say so, still show the plan
        for t in incremental:
            out[t.name] = (None, f"unknown: the state store could not be read ({type(exc).__name__})")
    finally:
        ledger.dispose()
    return out


def next_run(job: Job, now: datetime | None = None) -> datetime | None:
    if not job.schedule:
        return None
    from runner.cron import Schedule

    return Schedule(job.schedule, job.timezone).next_after(now or clock.now()).astimezone(ZoneInfo(job.timezone))


def _pauses(project: Project) -> tuple[dict[str, object], str | None]:
    """The pauses in force from the state store (read only: nothing is created), and why they could not
    be read, when so."""
    from runner.state.jobstate import JobState
    from runner.state.ledger import Ledger

    ledger = Ledger(project.settings.state_url, create=False)
    try:
        return (JobState(ledger).paused() if ledger.exists() else {}), None
    except Exception as exc:  # the shared state store is down: the list is still useful
        return {}, f"the state store could not be read ({type(exc).__name__}): pauses made with --pause are not shown"
    finally:
        ledger.dispose()


def list_jobs(project: Project, out: IO[str], fmt: str = "text") -> int:
    """`--list`: each job with its schedule, next run time, whether it is paused (and why), description."""
    jobs, problems = load_jobs(project)
    pauses, unread = _pauses(project)
    docs = []
    for name, job in sorted(jobs.items()):
        nxt = next_run(job)
        pause = pauses.get(name)
        why = f"enabled: false in {job.file}" if not job.enabled else (pause.text() if pause else None)  # type: ignore[attr-defined]
        docs.append({"job": name, "schedule": job.schedule, "timezone": job.timezone, "next_run": iso(nxt),
                     "next_run_local": nxt, "enabled": job.enabled, "paused": why is not None, "pause": why,
                     "paused_by": getattr(pause, "by", None), "paused_at": iso(getattr(pause, "at", None)),
                     "reason": getattr(pause, "reason", None) or None, "description": job.description,
                     "file": job.file})
    if fmt == "json":
        write_json({"jobs": [{k: v for k, v in d.items() if k != "next_run_local"} for d in docs],
                    "invalid": sorted({p.file for p in problems}), "warning": unread}, out)
        return 0
    rows = [("JOB", "SCHEDULE", "TIMEZONE", "NEXT RUN", "STATE", "DESCRIPTION")]
    for d in docs:
        nxt = d["next_run_local"]
        rows.append((d["job"], d["schedule"] or "(manual)", d["timezone"],
                     nxt.strftime("%Y-%m-%d %H:%M %Z") if nxt else "-", "paused" if d["paused"] else "active",
                     " ".join(d["description"].split())))
    write_table(rows, out, flexible=(5, 0, 1))
    paused = [d for d in docs if d["paused"]]
    if paused:
        out.write("\n")
        for d in paused:
            out.write(f"{d['job']}: {d['pause']}\n")
    if unread:
        out.write(f"\nwarning: {unread}\n")
    if problems:
        out.write(f"\n{len({p.file for p in problems})} job file(s) invalid; run --check for details\n")
    return 0


def check(project: Project, out: IO[str], conf_problems: Sequence[Problem] = (), fmt: str = "text") -> int:
    """`--check`: every problem in conf and every job, or a confirmation that all is valid; notes on
    what is allowed but worth knowing, and warnings on what is likely a mistake."""
    from runner.config.lint import lint

    jobs, job_problems = load_jobs(project)
    found = lint(project, jobs)
    problems = [*conf_problems, *job_problems, *_notify_problems(project, jobs), *found.errors]
    notes = list(found.notes)
    for job in jobs.values():
        for t in job.tasks:
            if non_atomic(t):
                notes.append(f"{job.file}:{t.line} [task {t.name}]: non-atomic: a statement commits implicitly "
                             f"(DDL), so the task is not one transaction; "
                             + ("it is marked idempotent and will be retried" if t.idempotent else
                                "it will not be retried unless marked idempotent: true"))
        if not job.schedule:
            notes.extend(str(m.problem(MANUAL_FIX)) for m in unset_params(job, job.tasks))
    if fmt == "json":
        write_json({"valid": not problems, "jobs": len(jobs), "databases": len(project.databases),
                    "errors": [_problem_doc(p) for p in problems], "warnings": list(found.warnings),
                    "notes": notes}, out)
        return 2 if problems else 0
    for p in problems:
        out.write(f"error: {p}\n")
    for w in found.warnings:
        out.write(f"warning: {w}\n")
    for n in notes:
        out.write(f"note: {n}\n")
    if problems:
        out.write(f"{len(problems)} problem(s) found; nothing was run\n")
        return 2
    out.write(f"configuration valid: {len(jobs)} job(s), {len(project.databases)} database(s)\n")
    return 0


def _problem_doc(p: Problem) -> dict[str, object]:
    return {"file": p.file, "line": p.line, "key": p.key or None, "message": p.message}


def _notify_problems(project: Project, jobs: dict[str, Job]) -> list[Problem]:
    """Notify URLs that Apprise does not understand (Apprise is imported only when there are some)."""
    where = [("conf/runner.yml", t) for t in project.settings.notify]
    where += [(job.file, t) for job in jobs.values() for t in job.notify or ()]
    if not where:
        return []
    from runner.notify.courier import understood

    return [Problem(file, t.key_path, f"Apprise does not understand the URL of target {t.label} "
                                      f"({t.url.split('://', 1)[0]}://...): see Apprise's list of services and "
                                      "their URLs", t.line)
            for file, t in where if not understood(t.url)]


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

