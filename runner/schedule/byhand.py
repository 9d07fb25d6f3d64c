"""Runs by hand (`--job NAME`, `--rerun RUN_ID`, and the same actions from the web): what each does
before its run starts. A paused job is refused unless forced; under the job's lock, a run of the job
that a dead process left `running` is marked abandoned first; a re-run is checked (only a run that did
not succeed, not one already re-run successfully unless forced) and takes its slot's claim over.

`prepare_rerun` does all of that and holds the lock; `execute_rerun` runs the re-run and releases it,
so the two may happen in different threads (the web answers as soon as the re-run is prepared).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import date, timezone
from typing import Any

from runner.config.jobs import load_job
from runner.errors import UsageError
from runner.model import Job, Project
from runner.run.executor import Runner, RunRequest, RunResult, new_run_id
from runner.state.lock import Held, job_lock
from runner.state.slots import SlotLedger

log = logging.getLogger("runner")

RERUNNABLE = ("failed", "interrupted", "abandoned", "missed", "paused", "running")


def refuse_paused(job: Job, ledger: object, force: bool, command: str) -> None:
    """A paused job runs by hand only with --force (UsageError otherwise, naming who paused it and why)."""
    from runner.state.jobstate import JobState

    why = f"enabled: false in {job.file}" if not job.enabled else None
    if why is None:
        pause = JobState(ledger).paused([job.name]).get(job.name)  # type: ignore[arg-type]
        why = pause.text() if pause is not None else None
    if why is None:
        return
    if force:
        log.warning("job %s is %s; running it anyway (--force)", job.name,
                    why if why.startswith("paused") else f"paused ({why})")
        return
    raise UsageError(f"job {job.name} is " + (why if why.startswith("paused") else f"paused ({why})")
                     + f"; run it anyway with {command} --force, or resume it first with --resume {job.name}"
                     + ("" if job.enabled else f" and remove enabled: false from {job.file}"))


def abandon_unfinished(ledger: object, job: Job) -> None:
    """Under the job's lock: runs of the job still recorded as running belong to a process that died."""
    for run in ledger.job_slots(job.name).unfinished:  # type: ignore[attr-defined]
        if ledger.abandon(run, job.name):  # type: ignore[attr-defined]
            log.warning("job %s: run %s (started %s by %s pid %s, %s) never finished and the job's lock was free: "
                        "marked abandoned", job.name, run.run_id[:8], run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                        run.host, run.pid, run.trigger)



@dataclass
class Rerun:
    """A re-run prepared under its job's lock; `execute_rerun` runs it and releases the lock."""

    job: Job
    run: dict[str, Any]  # the run re-run
    request: RunRequest
    done: dict[str, tuple[str, int]]  # tasks done in it: not run again
    held: Held
    release: contextlib.ExitStack

    @property
    def run_id(self) -> str:
        return self.request.run_id or ""

    def describe(self) -> str:
        run, slot = self.run, self.request.slot
        return (f"re-running run {run['run_id'][:8]} ({run['status']}) of job {self.job.name} for {run['run_date']}"
                + (f", slot {slot:%Y-%m-%d %H:%M} UTC" if slot else "")
                + (f", tasks done in it left alone: {', '.join(sorted(self.done))}" if self.done else ""))


def prepare_rerun(project: Project, ledger: SlotLedger, run_id: str, force: bool = False) -> Rerun:
    """Check the run may be re-run, take its job's lock, settle abandoned runs, claim the slot for the
    re-run and record its origin. UsageError says why not; JobLocked when the job is running."""
    run = ledger.run(run_id)
    if run is None:
        raise UsageError(f"no run {run_id} in the ledger: see --history for run ids (runs older than "
                         f"history_days, {project.settings.history_days} days, are pruned)")
    job = load_job(project, run["job"])
    _refuse_success(run)
    refuse_paused(job, ledger, force, f"--rerun {run_id}")
    release = contextlib.ExitStack()
    held = release.enter_context(job_lock(project, ledger, job.name, "rerun"))
    try:
        abandon_unfinished(ledger, job)  # the run itself, when its process died
        run = ledger.run(run["run_id"]) or run
        _refuse_success(run)
        origin = ledger.origins_of([run["run_id"]]).get(run["run_id"], {})
        later = [r for r in origin.get("rerun_as", ()) if (ledger.run(r) or {}).get("status") == "success"]
        if later and not force:
            raise UsageError(f"run {run['run_id'][:8]} was already re-run successfully as {later[0][:8]}; "
                             f"--rerun {run['run_id'][:8]} --force runs it again all the same")
        done = {a.task: (run["run_id"], a.rows or 0) for a in ledger.last_attempts([run["run_id"]])
                if a.status == "success"}
        slot = run["slot"].replace(tzinfo=timezone.utc) if run["slot"] is not None else None
        resume_of = {run["run_id"]: run["status"]}
        new = new_run_id()
        if slot is not None:
            holder = ledger.slot_holder(job.name, slot)
            ledger.claim(job.name, slot, new, run["run_date"], "rerun", takes_over=holder)
            resume_of.update(ledger.earlier_runs(job.name, slot, new))
        params = origin.get("params") or {}
        ledger.record_origin(new, params, origin.get("from_task"), rerun_of=run["run_id"])
        request = RunRequest(job, date.fromisoformat(run["run_date"]), params, origin.get("from_task"), "rerun", slot,
                             run_id=new, still_locked=held.verify, resume_of=resume_of, done=done)
    except BaseException:
        release.close()
        raise
    return Rerun(job, run, request, done, held, release)


def execute_rerun(runner: Runner, rerun: Rerun) -> RunResult:
    try:
        return runner.run(rerun.request)
    finally:
        rerun.release.close()


def _refuse_success(run: dict[str, Any]) -> None:
    if run["status"] == "success":
        raise UsageError(f"run {run['run_id'][:8]} of job {run['job']} succeeded: nothing to re-run (run the job "
                         f"again with --job {run['job']} --date {run['run_date']})")
    if run["status"] not in RERUNNABLE:
        raise UsageError(f"run {run['run_id'][:8]} has status {run['status']}: only a run that did not succeed is "
                         "re-run")
