"""`--watermarks [--job NAME]`: every incremental load's watermark (value, when it last advanced and by
which run, or who set it by hand); `--watermark JOB.TASK --set VALUE | --reset`: change one, under the
job's lock (so no run of the job is committing one meanwhile), recorded in the state store with who,
when and the value it replaced. A value is checked against the type of the incremental column, read
from the source database (or, when the source cannot say, from the stored value or `initial`).
"""

from __future__ import annotations

from datetime import date
from typing import IO, Any

from runner.cli.history import unknown_job
from runner.cli.output import write_json, write_table
from runner.config.jobs import job_names, load_job, load_jobs
from runner.errors import UsageError
from runner.model import Job, Project, Task
from runner.move.watermark import incremental_tasks


def list_watermarks(project: Project, job_name: str | None, out: IO[str], fmt: str = "text") -> int:
    from runner.move import watermark as wm
    from runner.state.ledger import Ledger
    from runner.state.watermarks import last_changes, stored

    if job_name is not None and job_name not in job_names(project):
        raise unknown_job(project, job_name)
    jobs, problems = load_jobs(project)
    wanted = {n: j for n, j in jobs.items() if job_name in (None, n)}
    ledger = Ledger(project.settings.state_url, create=False)
    try:
        exists = ledger.exists()
        names = [job_name] if job_name else None
        kept = stored(ledger, names) if exists else {}
        changed = last_changes(ledger, names) if exists else {}
    finally:
        ledger.dispose()
    docs = wm.listed(wanted, kept, changed)
    if fmt == "json":
        write_json(docs, out)
        return 0
    rows = [("JOB", "TASK", "VALUE", "UPDATED (UTC)", "BY")]
    for d in docs:
        value = d["value"] if d["value"] is not None else (f"(initial {d['initial']})" if d["initial"] else
                                                           "(none: loads every row)")
        if d["pending_run"]:
            value += f" (run {d['pending_run'][:8]} committing {d['pending_value']})"
        by = f"run {d['run_id'][:8]}" if d["run_id"] else (f"{d['action']} by {d['changed_by']}" if d["action"]
                                                           else "-")
        if not d["in_job_files"]:
            by += " (task not in the job files)"
        updated = d["updated"].replace("T", " ").replace("Z", "")[:16] if d["updated"] else "-"
        rows.append((d["job"], d["task"], value, updated, by))
    write_table(rows, out, flexible=(2, 4, 0, 1))
    if not docs:
        out.write("no incremental loads" + (f" in job {job_name}" if job_name else "") + "\n")
    if problems:
        out.write(f"\n{len({p.file for p in problems})} job file(s) invalid; run --check for details\n")
    return 0


def _target(project: Project, text: str) -> tuple[Job, Task]:
    """JOB.TASK (job and task names may hold dots: each split is tried) as the job and its incremental task."""
    names = job_names(project)
    splits = [(text[:i], text[i + 1:]) for i, ch in enumerate(text) if ch == "."]
    found = [(j, t) for j, t in splits if j in names]
    if not found:
        if not splits:
            raise UsageError(f"--watermark {text}: write JOB.TASK, e.g. --watermark nightly_copy.copy_orders")
        raise unknown_job(project, text.rpartition(".")[0])  # the longest job name it can be
    for job_name, task_name in found:
        job = load_job(project, job_name)
        for t in incremental_tasks(job):
            if t.name == task_name:
                return job, t
    job = load_job(project, found[0][0])
    loads = ", ".join(f"{job.name}.{t.name}" for t in incremental_tasks(job)) or "none"
    raise UsageError(f"--watermark {text}: job {job.name} has no incremental load task {found[0][1]!r} (its "
                     f"incremental loads: {loads})")


def change_watermark(project: Project, target: str, value: str | None, out: IO[str]) -> int:
    """`--watermark JOB.TASK --set VALUE` (value given) or `--reset` (None)."""
    from runner import clock
    from runner.move import watermark as wm
    from runner.state.lock import job_lock
    from runner.state.slots import SlotLedger
    from runner.state.watermarks import change

    job, task = _target(project, target)
    inc = task.load.incremental  # type: ignore[union-attr]
    ledger = SlotLedger(project.settings.state_url)
    try:
        with job_lock(project, ledger, job.name, "watermark"):
            old = wm.loads(ledger.watermark(job.name, task.name))
            if value is None:
                done = change(ledger, job.name, task.name, None, "reset")
                start = f"initial {wm.shown(inc.initial)}" if inc.initial is not None else "every row"
                out.write(f"watermark of {job.name}.{task.name} reset by {done.by} (was {wm.shown(old.value)}); the "
                          f"next run loads from {start}\n")
                return 0
            typed, how = _typed(project, job, task, value, old, clock.now().date())
            done = change(ledger, job.name, task.name, wm.dumps(wm.State(typed)), "set")
        out.write(f"watermark of {job.name}.{task.name} set to {wm.shown(typed)} by {done.by} (was {wm.shown(old.value)}; "
                  f"checked as {how}); the next run loads rows with {inc.column} > {wm.shown(typed)}\n")
        return 0
    finally:
        ledger.dispose()


def _typed(project: Project, job: Job, task: Task, text: str, old: Any, today: date) -> tuple[Any, str]:
    """The value as the incremental column's type, and how that type was known; UsageError when it does
    not parse as one."""
    from runner.db.engines import Engines
    from runner.move import watermark as wm
    from runner.move.probe import incremental_column

    inc = task.load.incremental  # type: ignore[union-attr]
    engines = Engines(project)
    column, unread = None, ""
    try:
        column = incremental_column(engines, job, task, today)
    except Exception as exc:  # the source is down: fall back on what the ledger knows
        unread = f" (the source database {task.load.source} could not be read: {type(exc).__name__})"  # type: ignore[union-attr]
    finally:
        engines.dispose()
    if column is not None:
        kind, shape, how = column.kind, wm.shape_of(column), f"column {inc.column} of the query on {task.load.source}"  # type: ignore[union-attr]
        if kind == "text" and old.value is not None and wm.kind_of_value(old.value)[0] == "temporal":
            kind, shape = wm.kind_of_value(old.value)  # dates kept as text (SQLite): keep their shape
    elif old.value is not None or inc.initial is not None:
        kind, shape = wm.kind_of_value(old.value if old.value is not None else inc.initial)
        how = ("the stored watermark" if old.value is not None else "incremental.initial") + unread
    else:
        kind, shape, how = "text", "", "text: nothing tells the column's type" + unread
    try:
        return wm.parse_as(text, kind, shape), f"{kind}{f' ({shape})' if shape else ''}, from {how}"
    except ValueError as exc:
        raise UsageError(f"--set {text!r} for {job.name}.{task.name} is not {exc} ({kind}"
                         f"{f' ({shape})' if shape else ''}, from {how}); nothing was changed") from None
