"""Run a job's due slot exactly once, whatever started it: the daemon at the slot's time, a cron line,
or the catch-up command `--due`.

`prepare` takes the job's lock (one holder across hosts sharing the state store) and, under it:
1. runs of the job still recorded as `running` belong to a process that died or lost the lock: they
   are marked `abandoned`, and run again when the job says `rerun_abandoned: true` and their slot is
   within the job's grace;
2. slots after the latest recorded one are planned by `slots.plan_slots`: the latest runs once
   (coalesced) when it is within the grace, every other one is recorded as `missed` (a long stretch
   of them as one row with its count, first and last slot); when there are
   none, a latest slot whose run failed runs again as `slots.rerun_failed` says (its claim taken
   over, as from an abandoned run);
3. each slot to run is claimed with its run row in one transaction, so a slot another host claimed
   meanwhile is skipped quietly.
`execute` then runs the claimed slots, still under the lock, and releases it. The daemon prepares in
one thread and executes in a pool; `run_due` does both in the calling thread.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any, Mapping, Sequence

from runner import clock, logs
from runner.config.jobs import job_names, load_job, load_jobs
from runner.cron import Schedule
from runner.errors import ConfigError, JobLocked, UsageError
from runner.model import Job, Project
from runner.notify.hub import Hub
from runner.run.executor import Runner, RunRequest, RunResult, new_run_id
from runner.run.summary import print_summary
from runner.schedule.slots import (
    DUE_FAILED_RERUNS,
    FailedReruns,
    Missed,
    grace_seconds,
    plan_slots,
    rerun_allowed,
    rerun_failed,
)
from runner.state.lock import Held, job_lock
from runner.state.slots import Claim, JobSlots, MissedRecord, SlotLedger, SlotTaken, Unfinished

log = logging.getLogger("runner.due")


@dataclass
class Outcome:
    """What one look at a job's slots did."""

    job: str
    results: list[RunResult] = field(default_factory=list)
    missed: Missed | None = None  # slots recorded as missed
    abandoned: list[Unfinished] = field(default_factory=list)
    locked: str | None = None  # the holder, when the job was running elsewhere
    taken: int = 0  # slots another process claimed first

    @property
    def failed(self) -> bool:
        return any(not r.ok for r in self.results)

    @property
    def idle(self) -> bool:
        return not (self.results or self.missed or self.abandoned or self.locked or self.taken)


@dataclass
class Prepared:
    """Slots claimed under the job's lock, ready to run; `execute` releases the lock."""

    job: Job
    trigger: str
    held: Held
    release: contextlib.ExitStack
    runs: list[SlotRun]  # in the order to run
    outcome: Outcome


def grace_of(project: Project, job: Job) -> float:
    return grace_seconds(job.catch_up, job.catch_up_window, project.settings.misfire_grace)


class DueRunner:
    """Looks at the slots of jobs and runs what is due; shared by every trigger of one process."""

    def __init__(self, project: Project, runner: Runner, ledger: SlotLedger,
                 failed_reruns: FailedReruns = DUE_FAILED_RERUNS, hub: Hub | None = None):
        self.project = project
        self.runner = runner
        self.ledger = ledger
        self.failed_reruns = failed_reruns
        self.hub = hub
        self._schedules: dict[tuple[str, str], Schedule] = {}

    def schedule(self, job: Job) -> Schedule:
        key = (job.schedule or "", job.timezone)
        if key not in self._schedules:
            self._schedules[key] = Schedule(*key)
        return self._schedules[key]

    def needing_look(self, jobs: Sequence[Job]) -> list[Job]:
        """Without the locks: the jobs with a slot to run or record, a failed slot to run again, or a run
        that may be abandoned."""
        states = self.ledger.jobs_slots([job.name for job in jobs])
        now = clock.now()
        out = []
        for job in jobs:
            state = states[job.name]
            plan = plan_slots(self.schedule(job), now, state.last, grace_of(self.project, job))
            if state.unfinished or plan.run is not None or plan.missed is not None or self._failed_again(job, state, now):
                out.append(job)
        return out

    def check_late(self, jobs: Sequence[Job], now: datetime | None = None) -> None:
        """Raise `late` for the jobs whose slot has no success `late_after` past its time (once per slot)."""
        watched = [job for job in jobs if job.late_after is not None]
        if self.hub is None or not watched:
            return
        try:
            self.hub.check_late(watched, self.ledger.first_slots([job.name for job in watched]), self.schedule, now)
        except Exception as exc:
            log.warning("looking for late slots failed (%s: %s); the next look tries again", type(exc).__name__,
                        logs.REDACTOR.scrub(str(exc)))

    def run_due(self, job: Job, trigger: str) -> Outcome:
        prepared = self.prepare([job], trigger)[0]
        return prepared if isinstance(prepared, Outcome) else self.execute(prepared)

    def prepare(self, jobs: Sequence[Job], trigger: str) -> list[Prepared | Outcome]:
        """For each job: take its lock, settle abandoned runs and missed slots, claim what is to run.
        The ledger is read, and the plain claims written, once for all the jobs."""
        held: list[tuple[Job, Held, contextlib.ExitStack]] = []
        out: dict[str, Prepared | Outcome] = {}
        try:
            for job in jobs:
                release = contextlib.ExitStack()
                try:
                    held.append((job, release.enter_context(job_lock(self.project, self.ledger, job.name, trigger)),
                                 release))
                except JobLocked as exc:
                    out[job.name] = Outcome(job.name, locked=str(exc))
            states = self.ledger.jobs_slots([job.name for job, _, _ in held]) if held else {}
            now = clock.now()
            plans = {job.name: self._settle(job, trigger, states[job.name], now) for job, _, _ in held}
            jobs_by_name = {job.name: job for job, _, _ in held}
            missed = {job.name: self._missed_record(job, outcome.missed, trigger)
                      for job, _, _ in held if (outcome := plans[job.name][0]).missed is not None}
            won = {c.run_id for c in self.ledger.claim_many([c for _, runs in plans.values() for c in runs
                                                              if isinstance(c, Claim)], list(missed.values()))}
            for name, record in missed.items():
                shown = ", ".join(_fmt(s) for s, _ in record.listed[-5:]) + (" ..." if len(record.listed) > 5 else "") \
                    if record.listed else f"{_fmt(record.first)} to {_fmt(record.last)}"
                log.warning("job %s: %d slot(s) missed and recorded as missed: %s", name,
                            record.count or len(record.listed), shown)
                if self.hub is not None:
                    self.hub.recorded(jobs_by_name[name], record.count or len(record.listed))
            for job, lock, release in held:
                outcome, wanted = plans[job.name]
                runs = []
                for c in wanted:
                    if isinstance(c, SlotRun):
                        runs.append(c)
                    elif c.run_id in won:
                        runs.append(SlotRun(c.slot, c.run_id))
                    else:
                        outcome.taken += 1
                        log.info("job %s: slot %s was claimed by another process; skipped", job.name, _fmt(c.slot))
                if runs:
                    out[job.name] = Prepared(job, trigger, lock, release, runs, outcome)
                else:
                    release.close()
                    out[job.name] = outcome
        except BaseException:
            for _, _, release in held:  # a claim made without its run left running: found abandoned later
                release.close()
            raise
        return [out[job.name] for job in jobs]

    def execute(self, prepared: Prepared) -> Outcome:
        """Run the claimed slots in order, then release the job's lock."""
        job, out = prepared.job, prepared.outcome
        schedule = self.schedule(job)
        try:
            for run in prepared.runs:
                req = RunRequest(job=job, run_date=date.fromisoformat(schedule.local_date(run.slot)),
                                 trigger=prepared.trigger, slot=run.slot, run_id=run.run_id,
                                 still_locked=prepared.held.verify, resume_of=run.resume_of)
                out.results.append(self.runner.run(req))
        finally:
            prepared.release.close()
        return out

    def _settle(self, job: Job, trigger: str, state: JobSlots, now: datetime) -> tuple[Outcome, list[Claim | SlotRun]]:
        """Under the job's lock: abandoned runs (taken over at once when they are to run again) and
        missed slots are recorded; the claims still to make are returned, in the order to run."""
        with logs.bound(job=job.name):
            out, wanted = self._settle_job(job, trigger, state, now)
        if self.hub is not None and out.abandoned:  # missed slots are told when `prepare` has recorded them
            self.hub.recorded(job, 0, [run.trigger for run in out.abandoned])
        return out, wanted

    def _settle_job(self, job: Job, trigger: str, state: JobSlots,
                    now: datetime) -> tuple[Outcome, list[Claim | SlotRun]]:
        out = Outcome(job.name)
        schedule = self.schedule(job)
        grace = grace_of(self.project, job)
        wanted: list[Claim | SlotRun] = []
        abandoned_alerts = self.hub.abandoned_alerts(job) if self.hub is not None else None
        for run in state.unfinished:  # we hold the lock, so whoever started these is gone
            out.abandoned.append(run)
            if run.slot is not None and rerun_allowed(job.rerun_abandoned, run.slot, now, grace):
                rerun = self._take_over(job, schedule, run.slot, run.run_id, trigger, abandoned_alerts)
                if rerun is not None:
                    log.warning("job %s: run %s (slot %s, %s pid %s) was abandoned; running its slot again",
                                job.name, run.run_id[:8], _fmt(run.slot), run.host, run.pid)
                    wanted.append(rerun)
                    continue
            if self.ledger.abandon(run, job.name, abandoned_alerts):
                log.warning("job %s: run %s (slot %s, %s pid %s) was abandoned%s", job.name, run.run_id[:8],
                            _fmt(run.slot), run.host, run.pid,
                            "" if job.rerun_abandoned else "; not run again (rerun_abandoned: false)")
        plan = plan_slots(schedule, now, state.last, grace)
        out.missed = plan.missed  # recorded by `prepare`, with the claims of all the jobs
        if plan.run is not None:
            wanted.append(Claim(job.name, plan.run, new_run_id(), schedule.local_date(plan.run), trigger))
        elif plan.missed is None and state.last is not None and state.last_run is not None \
                and self._failed_again(job, state, now):
            rerun = self._take_over(job, schedule, state.last, state.last_run, trigger)
            if rerun is not None:
                log.warning("job %s: run %s of slot %s %s; running its slot again (%d failed run(s) of the slot "
                            "so far)", job.name, state.last_run[:8], _fmt(state.last), state.last_status,
                            state.last_failures)
                wanted.append(rerun)
        return out, wanted

    def _missed_record(self, job: Job, missed: Missed, trigger: str) -> MissedRecord:
        """Each missed slot in a row of its own when they are few; a longer stretch in one row with its
        count, first and last slot (a day of a per-minute job is one write, not 1,440)."""
        schedule = self.schedule(job)
        reason = (f"missed: no runner was up, or the job was still running, at the slot's time; only the "
                  f"latest slot within {grace_of(self.project, job):.0f}s is run (catch_up: {job.catch_up})")
        alerts = self.hub.missed_alerts(job) if self.hub is not None else None
        if missed.slots:
            return MissedRecord(job.name, trigger, reason, alerts=alerts,
                                listed=tuple((s, schedule.local_date(s)) for s in missed.slots))
        return MissedRecord(job.name, trigger, reason, first=missed.first, last=missed.last, count=missed.count,
                            run_date=schedule.local_date(missed.last), schedule=schedule.expr,
                            timezone=schedule.timezone, alerts=alerts)

    def _failed_again(self, job: Job, state: JobSlots, now: datetime) -> bool:
        """The latest slot's run failed, and the slot is to run again (see slots.rerun_failed)."""
        return rerun_failed(self.failed_reruns, state.last_status, state.last, state.last_ended,
                            state.last_failures, now, grace_of(self.project, job))

    def _take_over(self, job: Job, schedule: Schedule, slot: datetime, run_id: str, trigger: str,
                   abandoned_alerts: Any = None) -> SlotRun | None:
        """Claim the slot again from the run holding its claim (abandoned or failed), in the transaction
        that starts the new run; None when another process took it over first."""
        new = new_run_id()
        try:
            self.ledger.claim(job.name, slot, new, schedule.local_date(slot), trigger, takes_over=run_id,
                              abandoned_alerts=abandoned_alerts)
        except SlotTaken as exc:
            log.info("%s; not run again", exc)
            return None
        return SlotRun(slot, new, self.ledger.earlier_runs(job.name, slot, new))


@dataclass(frozen=True)
class SlotRun:
    """A slot claimed to run. `resume_of`: the earlier runs of the slot when it runs again (run id ->
    status, newest first); the tasks they committed are not applied again."""

    slot: datetime
    run_id: str
    resume_of: Mapping[str, str] = field(default_factory=dict)


def _fmt(slot: datetime | None) -> str:
    return slot.strftime("%Y-%m-%d %H:%M:%S") + "Z" if slot is not None else "-"


# ---------------------------------------------------------------------------------------------- --due

def run_due(project: Project, out: IO[str], job: str | None = None) -> int:
    """`--due`: run every scheduled job (or `job`) whose latest slot has no successful run, once, and
    record the slots before it as missed. A job file that is invalid is logged and left out; the
    other jobs still run. Exit 0 (also when nothing is due); otherwise the first that applies of:
    1 a run failed, 2 a job file is invalid, 3 a job was skipped because it is running elsewhere."""
    jobs, invalid = _due_jobs(project, job)
    ledger = SlotLedger(project.settings.state_url)
    hub = Hub(project, ledger, {j.name: j for j in jobs})
    runner = Runner(project, ledger=ledger, watchers=hub.watchers())
    hub.pool_sources.append(runner.engines.pools)
    hub.start()
    due = DueRunner(project, runner, ledger, hub=hub)
    outcomes: list[Outcome] = []
    try:
        # One read of every job's latest slot, without the locks; only the jobs with something to do
        # take their lock (one server connection each on a MySQL store), and decide again under it.
        for j in due.needing_look(jobs) if jobs else []:
            outcome = due.run_due(j, "cron" if job else "due")
            outcomes.append(outcome)
            for result in outcome.results:
                print_summary(result, out)
            if outcome.missed:
                out.write(f"{j.name}: {outcome.missed.count} missed slot(s) recorded as missed\n")
            if outcome.abandoned:
                out.write(f"{j.name}: {len(outcome.abandoned)} abandoned run(s) found\n")
            if outcome.locked:
                log.warning("%s", outcome.locked)
        due.check_late(jobs)
    finally:
        hub.close()
        runner.close()
    if all(o.idle for o in outcomes):
        out.write("nothing due\n")
    out.flush()
    if any(o.failed for o in outcomes):
        return 1
    if invalid:
        return ConfigError.exit_code
    return 3 if any(o.locked for o in outcomes) else 0


def _due_jobs(project: Project, name: str | None) -> tuple[list[Job], list[str]]:
    """The scheduled jobs to look at, and the names of job files too invalid to look at (logged here:
    one broken file must not keep every other job from its slot)."""
    if name is not None:
        job = load_job(project, name)
        if not job.schedule:
            raise UsageError(f"job {name} has no schedule, so nothing is ever due: run it with --job {name}")
        return [job], []
    jobs, problems = load_jobs(project)
    invalid = [n for n in job_names(project) if n not in jobs]
    for p in problems:
        log.error("%s", logs.REDACTOR.scrub(str(p)))
    for n in invalid:
        log.error("job %s was not looked at: its file is invalid (see --check)", n)
    return [job for _, job in sorted(jobs.items()) if job.schedule], invalid
