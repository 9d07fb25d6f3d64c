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

The daemon does the slow part of `prepare` a moment before a slot (`take_early`: the locks and the
reads, nothing written) and at the slot's time, never before it, only claims (`claim_early`: the claims
and run rows of every job due then in one transaction).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Any, Iterator, Mapping, Sequence

from runner import clock, logs, stop
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
    SlotPlan,
    grace_seconds,
    plan_slots,
    rerun_allowed,
    rerun_failed,
)
from runner.state.jobstate import JobState
from runner.state.lock import LOCKS_PER_CONNECTION, Held, job_locks
from runner.state.retention import prune_if_due
from runner.state.slots import Claim, JobSlots, MissedRecord, SlotLedger, SlotTaken, Unfinished

log = logging.getLogger("runner.due")

# `--due` takes the locks of this many jobs at a time (one lock connection's worth on a server state
# store, see state.lock), and reads and writes the ledger once for them; a job's lock is so taken up to
# DUE_BATCH - 1 runs before its own run starts.
DUE_BATCH = LOCKS_PER_CONNECTION


@dataclass
class Outcome:
    """What one look at a job's slots did."""

    job: str
    results: list[RunResult] = field(default_factory=list)
    missed: Missed | None = None  # slots recorded as missed
    paused: list[datetime] = field(default_factory=list)  # slots recorded as paused
    abandoned: list[Unfinished] = field(default_factory=list)
    locked: str | None = None  # the holder, when the job was running elsewhere
    taken: int = 0  # slots another process claimed first

    @property
    def failed(self) -> bool:
        return any(not r.ok for r in self.results)

    @property
    def idle(self) -> bool:
        return not (self.results or self.missed or self.paused or self.abandoned or self.locked or self.taken)


@dataclass
class Prepared:
    """Slots claimed under the job's lock, ready to run; `execute` releases the lock."""

    job: Job
    trigger: str
    held: Held
    release: contextlib.ExitStack
    runs: list[SlotRun]  # in the order to run
    outcome: Outcome


@dataclass
class Early:
    """Jobs locked and looked at a moment before `slot`, each with its claim of the slot ready; nothing
    is written until `DueRunner.claim_early` claims them at the slot's time."""

    slot: datetime
    trigger: str
    held: list[tuple[Job, Held, contextlib.ExitStack, Claim]]

    def release(self) -> None:
        for _, _, release, _ in self.held:
            release.close()
        self.held = []


def grace_of(project: Project, job: Job) -> float:
    return grace_seconds(job.catch_up, job.catch_up_window, project.settings.misfire_grace)


def pause_reason(job: Job, pause: object | None) -> str | None:
    """Why the job's slots are not run now (`enabled: false` in its file, or --pause), or None."""
    if not job.enabled:
        return f"enabled: false in {job.file}"
    return pause.text() if pause is not None else None  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Look:
    """What one look at a job's slots is to do (see `decide`); nothing is written by deciding."""

    abandoned: tuple[tuple[Unfinished, bool], ...] = ()  # (run, whether its slot runs again)
    plan: SlotPlan = SlotPlan()  # the slot to run, the slots to record as missed (or as paused)
    paused: str | None = None  # the job is paused: why; its slots are recorded as paused, none runs
    take_over: tuple[datetime, str, str, int] | None = None  # (slot, run holding its claim, its status,
    # failed runs of the slot so far): the slot runs again
    unseen: bool = False  # the state store never looked at the job before: nothing earlier is caught up

    @property
    def empty(self) -> bool:
        return not (self.abandoned or self.plan.run or self.plan.missed or self.take_over or self.unseen)


def decide(job: Job, schedule: Schedule, state: JobSlots, now: datetime, grace: float, *, paused: str | None,
           first_seen: datetime | None, explicit: bool, failed: FailedReruns) -> Look:
    """Pure: what a look at the job's slots does now. A job never claimed before is caught up only for
    the slots after the state store first saw it (`first_seen`; none yet: the look records it and runs
    nothing), unless asked for by name (`explicit`: `--due --job NAME`, the job's own cron line, runs
    its latest slot within the grace). A paused job's slots are recorded as paused; after a resume,
    asking by name runs a latest slot that was recorded as paused."""
    abandoned = tuple((run, paused is None and rerun_allowed(job.rerun_abandoned, run.slot, now, grace))
                      for run in state.unfinished)
    last = state.last
    if last is None and not explicit:
        if first_seen is None:
            return Look(abandoned, paused=paused, unseen=True)
        last = first_seen
    plan = plan_slots(schedule, now, last, grace)
    if paused is not None:
        return Look(abandoned, plan, paused)
    take_over = None
    if plan.run is None and not plan.missed and state.last is not None and state.last_run is not None:
        if rerun_failed(failed, state.last_status, state.last, state.last_ended, state.last_failures, now, grace):
            take_over = (state.last, state.last_run, state.last_status or "", state.last_failures)
        elif explicit and state.last_status == "paused" and (now - state.last).total_seconds() <= grace:
            take_over = (state.last, state.last_run, "paused", state.last_failures)
    return Look(abandoned, plan, None, take_over)


class DueRunner:
    """Looks at the slots of jobs and runs what is due; shared by every trigger of one process."""

    def __init__(self, project: Project, runner: Runner | None, ledger: SlotLedger,
                 failed_reruns: FailedReruns = DUE_FAILED_RERUNS, hub: Hub | None = None):
        self.project = project
        self.runner = runner
        self.ledger = ledger
        self.failed_reruns = failed_reruns
        self.hub = hub
        self.jobstate = JobState(ledger)
        self.seen_at: datetime | None = None  # a daemon's start: the moment it first saw its jobs
        self._schedules: dict[tuple[str, str], Schedule] = {}

    def schedule(self, job: Job) -> Schedule:
        key = (job.schedule or "", job.timezone)
        if key not in self._schedules:
            self._schedules[key] = Schedule(*key)
        return self._schedules[key]

    def looks(self, jobs: Sequence[Job], now: datetime, explicit: bool = False,
              record_seen: bool = True) -> dict[str, Look]:
        """What a look at each job decides now, from three reads of the state store for all of them. The
        jobs the store never saw are recorded as seen (unless `record_seen` is false: a dry run)."""
        names = [job.name for job in jobs]
        states = self.ledger.jobs_slots(names)
        pauses = self.jobstate.paused(names)
        unclaimed = [n for n in names if states[n].last is None]
        seen = self.jobstate.first_seen(unclaimed) if unclaimed else {}
        if record_seen and not explicit and len(seen) < len(unclaimed):
            seen = self.jobstate.see(unclaimed, self.seen_at or now)
        return {job.name: decide(job, self.schedule(job), states[job.name], now, grace_of(self.project, job),
                                 paused=pause_reason(job, pauses.get(job.name)), first_seen=seen.get(job.name),
                                 explicit=explicit, failed=self.failed_reruns)
                for job in jobs}

    def needing_look(self, jobs: Sequence[Job]) -> list[Job]:
        """Without the locks: the jobs with a slot to run or record, a failed slot to run again, or a run
        that may be abandoned."""
        looks = self.looks(jobs, clock.now())
        return [job for job in jobs if not looks[job.name].empty and not looks[job.name].unseen]

    def check_late(self, jobs: Sequence[Job], now: datetime | None = None) -> None:
        """Raise `late` for the jobs whose slot has no success `late_after` past its time (once per slot)."""
        watched = [job for job in jobs if job.late_after is not None and job.enabled]
        if self.hub is None or not watched:
            return
        try:
            paused = self.jobstate.paused([job.name for job in watched])  # a paused job is not late
            watched = [job for job in watched if job.name not in paused]
            self.hub.check_late(watched, self.ledger.first_slots([job.name for job in watched]), self.schedule, now)
        except Exception as exc:
            log.warning("looking for late slots failed (%s: %s); the next look tries again", type(exc).__name__,
                        logs.REDACTOR.scrub(str(exc)))

    def run_due(self, job: Job, trigger: str, explicit: bool = False) -> Outcome:
        prepared = self.prepare([job], trigger, explicit)[0]
        return prepared if isinstance(prepared, Outcome) else self.execute(prepared)

    def run_batch(self, jobs: Sequence[Job], trigger: str, explicit: bool = False) -> Iterator[Outcome]:
        """`run_due` for several jobs: their locks taken and their slots settled and claimed in one go
        (`prepare`), then their runs run in order, each job's lock released after its own. When a run is
        stopped (a signal) or fails to start, the runs of the batch not started yet are recorded
        `interrupted` (their slots stay due) and their locks released."""
        prepared = self.prepare(jobs, trigger, explicit)
        at = 0
        try:
            for at, p in enumerate(prepared):
                yield p if isinstance(p, Outcome) else self.execute(p)
        except BaseException as exc:  # also the caller's own, or the batch left unfinished (GeneratorExit)
            self.drop([q for q in prepared[at + 1:] if isinstance(q, Prepared)], exc)
            raise

    def drop(self, prepared: Sequence[Prepared], why: BaseException) -> None:
        """Claimed runs that will not start: recorded `interrupted`, their locks released. (When that
        cannot be written, they stay `running` and the next look finds them abandoned.)"""
        reason = stop.reason() if stop.requested() else f"interrupted: {type(why).__name__}"
        for p in prepared:
            try:
                for run in p.runs:
                    self.ledger.finish_run(run.run_id, "interrupted", 0, 0,
                                           f"{reason}; not started (an earlier run of the same --due stopped)")
            except Exception as exc:
                log.warning("job %s: its claimed run could not be recorded interrupted (%s: %s); the next look "
                            "finds it abandoned", p.job.name, type(exc).__name__, logs.REDACTOR.scrub(str(exc)))
            finally:
                p.release.close()

    def _lock_all(self, jobs: Sequence[Job], trigger: str,
                  held: list[tuple[Job, Held, contextlib.ExitStack]]) -> dict[str, JobLocked]:
        """Take the jobs' locks at once: each one taken is added to `held` with the ExitStack that
        releases it; the refusals are returned, by job name."""
        refused: dict[str, JobLocked] = {}
        for job, got in zip(jobs, job_locks(self.project, self.ledger, [job.name for job in jobs], trigger)):
            if isinstance(got, JobLocked):
                refused[job.name] = got
            else:
                release = contextlib.ExitStack()
                held.append((job, release.enter_context(got), release))
        return refused

    def prepare(self, jobs: Sequence[Job], trigger: str, explicit: bool = False) -> list[Prepared | Outcome]:
        """For each job: take its lock, settle abandoned runs and missed slots, claim what is to run.
        The ledger is read, and the plain claims written, once for all the jobs. `explicit`: the jobs
        were asked for by name (see `decide`)."""
        held: list[tuple[Job, Held, contextlib.ExitStack]] = []
        out: dict[str, Prepared | Outcome] = {}
        try:
            for name, why in self._lock_all(jobs, trigger, held).items():
                out[name] = Outcome(name, locked=str(why))
            now = clock.now()
            looks = self.looks([job for job, _, _ in held], now, explicit) if held else {}
            plans = {job.name: self._settle(job, trigger, looks[job.name]) for job, _, _ in held}
            missed = {job.name: (job, self._missed_record(job, outcome.missed, trigger))
                      for job, _, _ in held if (outcome := plans[job.name][0]).missed is not None}
            won = {c.run_id for c in self.ledger.claim_many([c for _, runs in plans.values() for c in runs
                                                              if isinstance(c, Claim)],
                                                             [record for _, record in missed.values()])}
            for job, record in missed.values():
                self._told_missed(job, record)
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

    def take_early(self, jobs: Sequence[Job], trigger: str, slot: datetime) -> tuple[Early, list[Job]]:
        """A moment before `slot`: take the jobs' locks and look at them as at the slot's time. A job for
        which the slot is a plain run (nothing abandoned, missed, paused, unseen or to run again) stays
        locked in the Early returned, its claim ready; every other job (locked elsewhere, or with more to
        do) is released and returned, for `prepare` at the slot's time. Nothing is written."""
        held: list[tuple[Job, Held, contextlib.ExitStack]] = []
        early, rest = Early(slot, trigger, []), []
        try:
            refused = self._lock_all(jobs, trigger, held)
            rest.extend(job for job in jobs if job.name in refused)
            looks = self.looks([job for job, _, _ in held], slot, record_seen=False) if held else {}
            for job, lock, release in held:
                look = looks[job.name]
                if (look.plan.run == slot and look.plan.missed is None and look.paused is None and not look.abandoned
                        and look.take_over is None and not look.unseen):
                    claim = Claim(job.name, slot, new_run_id(), self.schedule(job).local_date(slot), trigger)
                    early.held.append((job, lock, release, claim))
                else:
                    release.close()
                    rest.append(job)
        except BaseException:
            for _, _, release in held:
                release.close()
            raise
        return early, rest

    def claim_early(self, early: Early) -> list[tuple[Job, Prepared | Outcome]]:
        """At the slot's time, never before it: claim the slot of every job taken early, each with its run
        row, in one transaction. A job whose slot another process claimed first is released."""
        while (left := (early.slot - clock.now()).total_seconds()) > 0:
            clock.sleep(left)
        try:
            won = {c.run_id for c in self.ledger.claim_many([claim for *_, claim in early.held])}
        except BaseException:
            early.release()
            raise
        out: list[tuple[Job, Prepared | Outcome]] = []
        for job, lock, release, claim in early.held:
            if claim.run_id in won:
                out.append((job, Prepared(job, early.trigger, lock, release, [SlotRun(claim.slot, claim.run_id)],
                                          Outcome(job.name))))
            else:
                release.close()
                log.info("job %s: slot %s was claimed by another process; skipped", job.name, _fmt(claim.slot))
                out.append((job, Outcome(job.name, taken=1)))
        early.held = []
        return out

    def execute(self, prepared: Prepared) -> Outcome:
        """Run the claimed slots in order, then release the job's lock."""
        job, out = prepared.job, prepared.outcome
        schedule = self.schedule(job)
        assert self.runner is not None, "a DueRunner without a runner only looks"
        try:
            for run in prepared.runs:
                req = RunRequest(job=job, run_date=date.fromisoformat(schedule.local_date(run.slot)),
                                 trigger=prepared.trigger, slot=run.slot, run_id=run.run_id,
                                 still_locked=prepared.held.verify, resume_of=run.resume_of)
                out.results.append(self.runner.run(req))
        finally:
            prepared.release.close()
        return out

    def _settle(self, job: Job, trigger: str, look: Look) -> tuple[Outcome, list[Claim | SlotRun]]:
        """Under the job's lock: abandoned runs (taken over at once when they are to run again), missed
        and paused slots are recorded; the claims still to make are returned, in the order to run."""
        with logs.bound(job=job.name):
            out, wanted = self._settle_job(job, trigger, look)
        if self.hub is not None and out.abandoned:  # missed slots are told once `prepare` has recorded them
            self.hub.recorded(job, 0, [run.trigger for run in out.abandoned])
        return out, wanted

    def _settle_job(self, job: Job, trigger: str, look: Look) -> tuple[Outcome, list[Claim | SlotRun]]:
        out = Outcome(job.name)
        schedule = self.schedule(job)
        wanted: list[Claim | SlotRun] = []
        abandoned_alerts = self.hub.abandoned_alerts(job) if self.hub is not None else None
        for run, again in look.abandoned:  # we hold the lock, so whoever started these is gone
            out.abandoned.append(run)
            if again and run.slot is not None:
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
        plan = look.plan
        if look.paused is not None:
            self._record_paused(job, schedule, plan, trigger, look.paused, out)
            return out, wanted
        out.missed = plan.missed  # recorded by `prepare`, in one transaction with the claims of all the jobs
        if plan.run is not None:
            wanted.append(Claim(job.name, plan.run, new_run_id(), schedule.local_date(plan.run), trigger))
        elif look.take_over is not None:
            slot, holder, status, failures = look.take_over
            rerun = self._take_over(job, schedule, slot, holder, trigger)
            if rerun is not None:
                if status == "paused":
                    log.info("job %s: its latest slot %s was recorded as paused; running it, as asked by name",
                             job.name, _fmt(slot))
                else:
                    log.warning("job %s: run %s of slot %s %s; running its slot again (%d failed run(s) of the "
                                "slot so far)", job.name, holder[:8], _fmt(slot), status, failures)
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

    def _told_missed(self, job: Job, record: MissedRecord) -> None:
        count = record.count or len(record.listed)
        shown = (", ".join(_fmt(s) for s, _ in record.listed[-5:]) + (" ..." if len(record.listed) > 5 else "")
                 if record.listed else f"{_fmt(record.first)} to {_fmt(record.last)}")
        log.warning("job %s: %d slot(s) missed and recorded as missed: %s", job.name, count, shown)
        if self.hub is not None:
            self.hub.recorded(job, count)

    def _record_paused(self, job: Job, schedule: Schedule, plan: SlotPlan, trigger: str, why: str,
                       out: Outcome) -> None:
        """A paused job's slots are recorded as `paused` (not missed: nothing failed to run them), so they
        are not caught up after a resume. Of a long stretch only the last slot gets a row, and a row
        saying that the slots before it, back to the last one recorded, fell in the pause too."""
        missed, before = plan.missed, None
        listed = list(missed.slots) if missed is not None else []
        if missed is not None and not listed:
            listed, before = [missed.last], schedule.latest_at_or_before(missed.first - timedelta(microseconds=1))
        slots = [*listed, *([plan.run] if plan.run is not None else [])]
        if not slots:
            return
        self.ledger.record_paused(job.name, [(s, schedule.local_date(s)) for s in slots], trigger, why, before)
        out.paused.extend(slots)
        log.info("job %s is paused (%s): %d slot(s) recorded as paused, latest %s", job.name, why, len(slots),
                 _fmt(slots[-1]))

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
        # take their lock and decide again under it. (A job asked for by name always does.) They do
        # so DUE_BATCH at a time: the locks of a batch are taken, its ledger read and its claims and
        # missed slots written once for all of them, then its runs run one after the other.
        todo = jobs if job is not None else due.needing_look(jobs) if jobs else []
        for start in range(0, len(todo), DUE_BATCH):
            for outcome in due.run_batch(todo[start:start + DUE_BATCH], "cron" if job else "due",
                                         explicit=job is not None):
                outcomes.append(outcome)
                for result in outcome.results:
                    print_summary(result, out)
                if outcome.missed:
                    out.write(f"{outcome.job}: {outcome.missed.count} missed slot(s) recorded as missed\n")
                if outcome.paused:
                    out.write(f"{outcome.job}: paused; {len(outcome.paused)} slot(s) recorded as paused\n")
                if outcome.abandoned:
                    out.write(f"{outcome.job}: {len(outcome.abandoned)} abandoned run(s) found\n")
                if outcome.locked:
                    log.warning("%s", outcome.locked)
        due.check_late(jobs)
    finally:
        prune_if_due(ledger, project.settings.history_days)
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


def dry_run_due(project: Project, out: IO[str], job: str | None = None) -> int:
    """`--due --dry-run`: what `--due` would do now and why, job by job; nothing is written, no lock is
    taken, and a state store that does not exist yet is not created."""
    jobs, invalid = _due_jobs(project, job)
    ledger = SlotLedger(project.settings.state_url, create=False)
    due = DueRunner(project, None, ledger)  # no runner: nothing runs
    now = clock.now()
    try:
        if ledger.exists():
            looks = due.looks(jobs, now, explicit=job is not None, record_seen=False)
        else:
            looks = {j.name: decide(j, due.schedule(j), JobSlots(None, ()), now, grace_of(project, j),
                                    paused=pause_reason(j, None), first_seen=None, explicit=job is not None,
                                    failed=due.failed_reruns) for j in jobs}
    finally:
        ledger.dispose()
    out.write(f"as of {_fmt(now)}; nothing is run or recorded (--dry-run)\n")
    for j in jobs:
        for line in explain(j, looks[j.name], grace_of(project, j), now):
            out.write(f"{j.name}: {line}\n")
    for name in invalid:
        out.write(f"{name}: not looked at: its file is invalid (see --check)\n")
    return ConfigError.exit_code if invalid else 0


def explain(job: Job, look: Look, grace: float, now: datetime) -> list[str]:
    """What a look does, in words (for --due --dry-run)."""
    lines = []
    for run, again in look.abandoned:
        lines.append(f"run {run.run_id[:8]} (slot {_fmt(run.slot)}, {run.host} pid {run.pid}) is recorded running: "
                     "if its lock is free it is abandoned" + (" and its slot runs again" if again else ""))
    if look.unseen:
        lines.append("first look of this state store at the job: recorded as seen now; slots before now are not "
                     "caught up (--due --job NAME runs its latest slot)")
        return lines
    plan = look.plan
    if look.paused is not None:
        slots = (plan.missed.count if plan.missed else 0) + (1 if plan.run else 0)
        lines.append(f"{look.paused}: " + (f"{slots} slot(s) would be recorded as paused" if slots else "no slot due"))
        return lines
    if plan.missed:
        lines.append(f"{plan.missed.count} slot(s) would be recorded as missed ({_fmt(plan.missed.first)} .. "
                     f"{_fmt(plan.missed.last)}): only the latest slot within {grace:.0f}s runs")
    if plan.run is not None:
        age = (now - plan.run).total_seconds()
        lines.append(f"would run slot {_fmt(plan.run)} ({age:.0f}s ago, within the grace of {grace:.0f}s)")
    elif look.take_over is not None:
        slot, holder, status, failures = look.take_over
        lines.append(f"would run slot {_fmt(slot)} again: its run {holder[:8]} " +
                     ("was recorded as paused, and the job is asked for by name" if status == "paused" else
                      f"{status} ({failures} failed run(s) of the slot so far)"))
    if not lines:
        lines.append("nothing due")
    return lines
