"""The scheduler daemon (`--scheduler`). The only module that imports APScheduler.

The daemon gives every schedule (expression, timezone, misfire grace from the catch-up policy) one
APScheduler job (at most one instance, coalesced) naming every job that shares it, whose trigger
fires at the slots of `cron.Schedule`,
so it wakes exactly when cron lines and `--due` expect, across DST changes too. APScheduler only wakes
it: what runs is decided under the job's lock by `due.DueRunner`, from the ledger, so a slot is run
once across hosts and a missed one is recorded, never dropped. APScheduler wakes it a moment before
each slot (`SlotTrigger.lead`: twice as long as the last such wake-up took, at most `MAX_LEAD`): the
jobs' locks are taken and the ledger read then, and at the slot's time, never before, the slots of
all the jobs due are claimed, with their run rows, in one transaction. A periodic look (at start-up too)
finds slots missed while the daemon was down or busy, runs abandoned by a host that died, and failed
slots to run again (sparingly: `slots.DAEMON_FAILED_RERUNS`); a job that ran past its next slot is
looked at again as soon as it is done.

Signals: SIGTERM/SIGINT start no new run, let running ones finish within `stop_grace` (conf/runner.yml,
default 60s) and exit 0; SIGHUP reloads conf and jobs. An invalid job file does not hold the others up: at
start-up and at a reload its problems are logged and the valid jobs are scheduled; a job whose file turned
invalid keeps the definition it had, and an invalid conf keeps the whole old set.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from runner import clock, logs, priority, stop
from runner.config.jobs import job_names, load_jobs
from runner.config.project import load_project
from runner.config.urls import passwords
from runner.cron import UTC, Schedule
from runner.errors import ConfigError, UsageError
from runner.model import Job, Project
from runner.notify.hub import Hub
from runner.run.executor import Runner
from runner.schedule import systemd
from runner.schedule.due import DueRunner, Early, Outcome, Prepared, grace_of
from runner.schedule.slots import DAEMON_FAILED_RERUNS
from runner.state.retention import prune_if_due
from runner.state.slots import SlotLedger

log = logging.getLogger("runner.scheduler")

LOOK_SECONDS = 30.0  # how often the daemon looks for missed slots and abandoned runs
STOP_AFTER_GRACE = 15.0  # how long jobs stopped at the end of stop_grace may take to record it
PRUNE_SECONDS = 3600.0  # how often it asks whether runs are past history_days
TRIM_SECONDS = 300.0  # how often the allocator's free pages are given back (trim_heap)
MAX_WORKERS = 128
MAX_BATCH = 1000  # jobs claimed in one go by the dispatch thread
QUIET = 0.002  # the jobs due at one moment are all queued when the queue has been quiet this long
SWITCH_INTERVAL = 0.0005
# How early a schedule's wake-up comes before its slots: twice as long as taking the locks and reading
# the ledger took the last time (at first: 50 ms and half a millisecond per job), never more than
# MAX_LEAD nor a quarter of the time since the slot before. A run by hand in that moment finds the job
# locked by the daemon (exit 3), as it would a moment later.
MIN_LEAD = 0.02
MAX_LEAD = 2.0
_EPSILON = timedelta(microseconds=1)


class SlotTrigger(BaseTrigger):
    """Fires `lead` seconds before each slot of a Schedule (APScheduler's CronTrigger reads day-of-week 0
    as Monday, ANDs day of month with day of week, and fires 02:30 twice when clocks fall back)."""

    __slots__ = ("schedule", "lead")

    def __init__(self, schedule: Schedule, lead: float = 0.0):
        self.schedule = schedule
        self.lead = lead

    def early_by(self, slot: datetime) -> float:
        """How many seconds before `slot` the trigger fires (at most `MAX_LEAD`, and a quarter of the time
        since the slot before, so that a wake-up always belongs to the slot right after it)."""
        before = self.schedule.latest_at_or_before(slot - _EPSILON)
        gap = (slot - before).total_seconds() if before is not None else MAX_LEAD * 4
        return max(0.0, min(self.lead, MAX_LEAD, gap / 4))

    def coming(self, now: datetime) -> datetime | None:
        """The slot a wake-up at `now` comes early for, or None when it comes at or after its slot."""
        slot = self.schedule.next_after(now)
        before = self.schedule.latest_at_or_before(slot - _EPSILON)
        gap = (slot - before).total_seconds() if before is not None else MAX_LEAD * 4
        return slot if (slot - now).total_seconds() <= min(MAX_LEAD, gap / 4) else None

    def learned(self, took: float) -> None:
        """Taking the locks and reading the ledger for a slot took `took` seconds: wake up twice as early
        next time (a longer lead is given up slowly)."""
        self.lead = min(MAX_LEAD, max(MIN_LEAD, 2 * took + 0.01, 0.8 * self.lead))

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is not None:  # the slot of that wake-up is the first at or after it
            slot = self.schedule.next_after(self.schedule.next_after(previous_fire_time - _EPSILON))
        else:
            slot = self.schedule.next_after(now - _EPSILON)
        return slot - timedelta(seconds=self.early_by(slot))

    def __str__(self) -> str:
        return f"slots[{self.schedule.expr} {self.schedule.timezone}]"


@dataclass(frozen=True)
class _Wake:
    """A schedule's wake-up before its slot: the jobs sharing the schedule."""

    names: tuple[str, ...]
    slot: datetime
    trigger: SlotTrigger


@dataclass
class _Waiting:
    """Jobs taken early for a slot (locked, looked at), to claim at its time; `rest` (locked elsewhere,
    or with more to do than run the slot) are prepared as usual once the others are claimed."""

    gen: _Generation
    early: Early
    rest: list[Job]


@dataclass
class _Generation:
    """One loaded set of conf and jobs, with the runner (pools, ledger) its runs use."""

    project: Project
    jobs: dict[str, Job]
    runner: Runner
    due: DueRunner
    active: int = 0


def _load(project: Project, before: dict[str, Job] | None = None) -> tuple[Project, dict[str, Job], list[str]]:
    """Re-read conf and every job: the project, its scheduled jobs, and the names of the job files that
    are invalid. Their problems are logged; an invalid file does not hold the others up. A job whose
    file turned invalid keeps the definition it had in `before` (when its databases still exist).
    A problem in conf is a ConfigError: nothing can be trusted then."""
    project = load_project(project.conf_dir, project.jobs_dir)
    jobs, problems = load_jobs(project)
    prefix = "reload: " if before is not None else ""
    for p in problems:
        log.error("%s%s", prefix, logs.REDACTOR.scrub(str(p)))
    invalid = [n for n in job_names(project) if n not in jobs]
    kept = []
    for name in invalid:
        old = (before or {}).get(name)
        if old is not None and all(t.database in project.databases and (t.load is None or t.load.source in
                                   project.databases) for t in old.tasks):
            jobs[name] = old
            kept.append(name)
    if invalid:
        log.error("%s%d problem(s) in job file(s) %s (see --check)%s%s", prefix, len(problems), ", ".join(invalid),
                  f"; job(s) {', '.join(kept)} keep the definition loaded before" if kept else "",
                  f"; not scheduled: {', '.join(n for n in invalid if n not in kept)}"
                  if len(kept) < len(invalid) else "")
    return project, {name: job for name, job in sorted(jobs.items()) if job.schedule}, invalid


def _generation(project: Project, jobs: dict[str, Job], hub: Hub | None = None) -> _Generation:
    ledger = SlotLedger(project.settings.state_url)
    hub = hub or Hub(project, ledger, jobs, serve_metrics=True)
    runner = Runner(project, ledger=ledger, watchers=hub.watchers())
    due = DueRunner(project, runner, ledger, DAEMON_FAILED_RERUNS, hub=hub)
    due.seen_at = clock.now()  # the jobs a state store never saw are caught up from the daemon's start
    return _Generation(project, jobs, runner, due)


class Daemon:
    """The `--scheduler` process. APScheduler's loop only queues the names of due jobs; one dispatch
    thread takes the locks of all the jobs due at that moment and claims their slots in one go (two
    reads and one write to the ledger); a pool runs the claimed slots. (With a thread per due job from
    the start, 100 jobs due at once share the GIL a hundred ways and the last one reaches its task
    hundreds of milliseconds late.) Signals are handled in the main thread."""

    def __init__(self, project: Project, look_seconds: float = LOOK_SECONDS):
        project, jobs, _ = _load(project)
        self._gen = _generation(project, jobs)
        self.hub = self._gen.due.hub
        assert self.hub is not None
        self._retired: list[_Generation] = []
        self.hub.pool_sources.append(lambda: [p for g in [self._gen, *self._retired] for p in g.runner.engines.pools()])
        self._cv = threading.Condition()
        self._running: dict[str, float] = {}
        self._stopping = False
        self._wake = threading.Event()
        self._reload_asked = False
        self._stop_asked: str | None = None
        self._due: queue.SimpleQueue[tuple[str, ...] | _Wake | None] = queue.SimpleQueue()  # None: stop
        self._groups: dict[tuple[str, str, int], tuple[str, ...]] = {}
        self.look_seconds = look_seconds
        self._pruned_at: float | None = None
        self._trimmed_at = clock.monotonic()
        self._pool = futures.ThreadPoolExecutor(max(10, min(MAX_WORKERS, len(jobs) + 2)), "runner-job")
        self._dispatcher = threading.Thread(target=self._dispatch, name="runner-dispatch", daemon=True)
        self.scheduler = BackgroundScheduler(timezone=UTC, executors={"default": DebugExecutor()},
                                             job_defaults={"coalesce": True, "max_instances": 1})

    # ------------------------------------------------------------------------------------ lifecycle
    def serve(self) -> int:
        self._install_signals()
        self._schedule_groups(self._gen)
        self.scheduler.add_job(self._pool.submit, IntervalTrigger(seconds=self.look_seconds, timezone=UTC),
                               args=[self.look], id="runner:look", next_run_time=clock.now(), misfire_grace_time=None)
        watchdog = systemd.watchdog_every()
        if watchdog is not None:  # from the scheduler's own thread: a wedged loop stops the pings
            self.scheduler.add_job(self._watchdog, IntervalTrigger(seconds=watchdog, timezone=UTC),
                                   id="runner:watchdog", next_run_time=clock.now(), misfire_grace_time=None)
        self.hub.serve()
        self._dispatcher.start()
        self.scheduler.start()
        log.info("scheduler started (pid %d): %d scheduled job(s): %s", os.getpid(), len(self._gen.jobs),
                 ", ".join(f"{j.name} [{j.schedule} {j.timezone}]" for j in self._gen.jobs.values()) or "none")
        systemd.sd_notify(f"READY=1\nSTATUS=running {len(self._gen.jobs)} scheduled job(s)")
        while self._stop_asked is None:
            self._wake.wait(1.0)
            self._wake.clear()
            if self._reload_asked and self._stop_asked is None:
                self._reload_asked = False
                self.reload()
        return self.stop(self._stop_asked)

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop_asked is not None:
                log.error("%s again while stopping: exiting now; running jobs are cut off", name)
                logging.shutdown()
                os._exit(130)
            self._stop_asked = name
            self._wake.set()

        def reload(_signum: int, _frame: Any) -> None:
            self._reload_asked = True
            self._wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _watchdog(self) -> None:
        if self._dispatcher.is_alive():
            systemd.sd_notify("WATCHDOG=1")

    def stop(self, why: str = "stop") -> int:
        """No new runs; running ones finish within stop_grace. 0 when all finished in time."""
        systemd.sd_notify(f"STOPPING=1\nSTATUS={why}: waiting for running jobs")
        grace = self._gen.project.settings.stop_grace
        with self._cv:
            self._stopping = True
            running = sorted(self._running)
        log.info("%s: starting no new runs; waiting up to %.0fs for %d running job(s)%s", why, grace, len(running),
                 f": {', '.join(running)}" if running else "")
        self.scheduler.shutdown(wait=False)
        self._due.put(None)
        deadline = clock.monotonic() + grace
        with self._cv:
            while self._running and clock.monotonic() < deadline:
                self._cv.wait(min(1.0, max(0.01, deadline - clock.monotonic())))
            left = sorted(self._running)
        code = 0
        if left:
            log.error("stop grace of %.0fs is over and job(s) %s are still running: stopping them (their running "
                      "statements are killed, their runs recorded interrupted)", grace, ", ".join(left))
            stop.request(f"{why} (the stop grace of {grace:.0f}s is over)")
            deadline = clock.monotonic() + STOP_AFTER_GRACE
            with self._cv:
                while self._running and clock.monotonic() < deadline:
                    self._cv.wait(min(1.0, max(0.01, deadline - clock.monotonic())))
                left = sorted(self._running)
            if left:
                log.error("job(s) %s did not stop: exiting; their runs stay 'running' until the next runner takes "
                          "the job's lock and marks them abandoned", ", ".join(left))
                logging.shutdown()
                os._exit(130)  # worker threads cannot be interrupted; the interpreter would wait for them
            code = 130
        self._pool.shutdown(wait=True)
        self.hub.close()
        for gen in [self._gen, *self._retired]:
            gen.runner.close()
        log.info("scheduler stopped")
        return code

    # ------------------------------------------------------------------------------------ jobs
    def _schedule_groups(self, gen: _Generation) -> None:
        """One APScheduler job per schedule (expression, timezone, misfire grace), naming every job that
        shares it: 1,000 jobs due each minute are one wake-up and one queue entry, not a thousand."""
        groups: dict[tuple[str, str, int], list[Job]] = {}
        for job in gen.jobs.values():
            key = (job.schedule or "", job.timezone, max(1, int(grace_of(gen.project, job))))
            groups.setdefault(key, []).append(job)
        wanted = {key: tuple(j.name for j in jobs) for key, jobs in groups.items()}
        for key in self._groups.keys() - wanted.keys():
            self.scheduler.remove_job(_group_id(key))
        for key, names in wanted.items():
            if self._groups.get(key) != names:
                trigger = SlotTrigger(gen.due.schedule(groups[key][0]), lead=max(MIN_LEAD, 0.05 + 0.0005 * len(names)))
                self.scheduler.add_job(self._fire, trigger, args=[names, trigger],
                                       id=_group_id(key), name=f"{len(names)} job(s) [{key[0]} {key[1]}]",
                                       misfire_grace_time=key[2], coalesce=True, max_instances=1,
                                       replace_existing=True)
        self._groups = wanted

    def _fire(self, names: tuple[str, ...], trigger: SlotTrigger) -> None:
        priority.SCHEDULE.hold()  # the web holds back until this slot's runs are handed to the pool
        slot = trigger.coming(clock.now())
        self._due.put(names if slot is None else _Wake(names, slot, trigger))

    def _dispatch(self) -> None:
        """Take the locks of the jobs due and claim their slots, all the jobs due at that moment at once;
        hand the runs to the pool. A wake-up before a slot takes the locks and reads the ledger then,
        and the jobs wait (`waiting`) for the slot's time to be claimed."""
        waiting: list[_Waiting] = []
        try:
            while True:
                items = self._next_items(waiting)
                if items is None:
                    return
                self._claim_waiting(waiting)
                now: list[str] = []
                early: dict[tuple[datetime, int], tuple[SlotTrigger, list[str]]] = {}
                for item in items:
                    if isinstance(item, _Wake):
                        early.setdefault((item.slot, id(item.trigger)), (item.trigger, []))[1].extend(item.names)
                    else:
                        now.extend(item)
                for (slot, _), (trigger, names) in early.items():
                    taken = self._take_early(slot, trigger, names)
                    if taken is not None:
                        waiting.append(taken)
                self._claim_waiting(waiting)
                if now:
                    with self._cv:
                        gen = self._gen
                        jobs = [] if self._stopping else self._mark(gen, now)
                    if jobs:
                        self._start(gen, jobs)
                    priority.SCHEDULE.release()
        finally:
            for w in waiting:
                jobs = [job for job, *_ in w.early.held] + w.rest
                w.early.release()
                for job in jobs:
                    self._done(job.name, w.gen)

    def _next_items(self, waiting: list[_Waiting]) -> list[tuple[str, ...] | _Wake] | None:
        """What is queued: everything that comes within QUIET of the one before (up to MAX_BATCH jobs),
        nothing when a waiting slot's time comes first, None to stop."""
        items: list[tuple[str, ...] | _Wake] = []
        count = 0
        while count < MAX_BATCH:
            left = min((w.early.slot for w in waiting), default=None)
            wait = None if left is None else max(0.0, (left - clock.now()).total_seconds())
            if items:
                wait = QUIET if wait is None else min(QUIET, wait)
            try:
                item = self._due.get(timeout=wait) if wait is None or wait > 0 else self._due.get_nowait()
            except queue.Empty:
                return items
            if item is None:
                return None
            items.append(item)
            count += len(item.names) if isinstance(item, _Wake) else len(item)
        return items

    def _mark(self, gen: _Generation, names: list[str]) -> list[Job]:
        """The jobs of `names` not running here, marked running (under self._cv)."""
        jobs = [gen.jobs[n] for n in dict.fromkeys(names) if n in gen.jobs and n not in self._running]
        for job in jobs:  # a job running here already: what it missed is found when it is done
            self._running[job.name] = clock.monotonic()
        gen.active += len(jobs)
        return jobs

    def _take_early(self, slot: datetime, trigger: SlotTrigger, names: list[str]) -> _Waiting | None:
        with self._cv:
            gen = self._gen
            if self._stopping:
                return None
            jobs = self._mark(gen, names)
        if not jobs:
            return None
        began = clock.monotonic()
        try:
            early, rest = gen.due.take_early(jobs, "daemon", slot)
        except Exception as exc:  # the slot's time tries again, job by job as usual
            log.warning("taking the locks of job(s) %s before their slot failed (%s: %s); trying again at the "
                        "slot's time", ", ".join(j.name for j in jobs), type(exc).__name__,
                        logs.REDACTOR.scrub(str(exc)))
            early, rest = Early(slot, "daemon", []), jobs
        trigger.learned(clock.monotonic() - began)
        return _Waiting(gen, early, rest)

    def _claim_waiting(self, waiting: list[_Waiting]) -> None:
        """Claim the slots whose time has come, hand their runs to the pool; then prepare the rest."""
        now = clock.now()
        for w in [w for w in waiting if w.early.slot <= now]:
            waiting.remove(w)
            jobs = [job for job, *_ in w.early.held]
            try:
                claimed = w.gen.due.claim_early(w.early)
            except Exception:
                log.exception("job(s) %s: due slots could not be claimed; the next look tries again",
                              ", ".join(job.name for job in jobs))
                claimed = [(job, Outcome(job.name)) for job in jobs]
            for job, p in claimed:
                self._hand_over(w.gen, job, p)
            if w.rest:
                self._start(w.gen, w.rest)
            priority.SCHEDULE.release()

    def _start(self, gen: _Generation, jobs: list[Job]) -> None:
        """Prepare the jobs (marked running) now and hand their claimed slots to the pool."""
        try:
            prepared = gen.due.prepare(jobs, "daemon")
        except Exception:
            log.exception("job(s) %s: due slots could not be claimed; the next look tries again",
                          ", ".join(job.name for job in jobs))
            for job in jobs:
                self._done(job.name, gen)
            return
        for job, p in zip(jobs, prepared):
            self._hand_over(gen, job, p)

    def _hand_over(self, gen: _Generation, job: Job, p: Prepared | Outcome) -> None:
        if isinstance(p, Outcome):
            if p.locked:
                log.debug("job %s: %s", job.name, p.locked)
            self._done(job.name, gen)
        else:
            self._pool.submit(self._execute, gen, job.name, p)

    def _execute(self, gen: _Generation, name: str, prepared: Prepared) -> None:
        try:
            gen.due.execute(prepared)
        except Exception:
            log.exception("job %s: running its slot failed", name)
        finally:
            self._done(name, gen)
        latest = gen.due.schedule(prepared.job).latest_at_or_before(clock.now())
        if latest is not None and latest > prepared.runs[-1].slot:  # it ran past its next slot
            self._due.put((name,))

    def _done(self, name: str, gen: _Generation) -> None:
        with self._cv:
            del self._running[name]
            gen.active -= 1
            self._cv.notify_all()
        self._retire()

    def look(self) -> None:
        """Slots missed while the daemon was down or busy, and runs abandoned by a process that died."""
        gen = self._gen
        if self._stopping:
            return
        if clock.monotonic() - self._trimmed_at >= TRIM_SECONDS:  # first: also when every job is running
            self._trimmed_at = clock.monotonic()
            trim_heap()
        self.hub.look()
        gen.due.check_late(list(gen.jobs.values()))
        idle = [job for job in gen.jobs.values() if job.name not in self._running]
        if not idle:
            return
        try:
            looked = tuple(job.name for job in gen.due.needing_look(idle))
            if looked:
                self._due.put(looked)
        except Exception as exc:
            log.warning("looking for missed slots failed (state store %s): %s", type(exc).__name__,
                        logs.REDACTOR.scrub(str(exc)))
        if self._pruned_at is None or clock.monotonic() - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = clock.monotonic()
            prune_if_due(gen.due.ledger, gen.project.settings.history_days)

    # ------------------------------------------------------------------------------------ SIGHUP
    def reload(self) -> bool:
        """Load conf and jobs again; on any problem keep the current set and log every problem."""
        old = self._gen
        try:
            project, jobs, invalid = _load(old.project, old.jobs)
        except ConfigError as exc:
            for p in exc.problems:
                log.error("reload: %s", logs.REDACTOR.scrub(str(p)))
            log.error("reload failed: conf has %d problem(s); the %d job(s) loaded before keep their schedules",
                      len(exc.problems), len(old.jobs))
            return False
        except Exception as exc:  # e.g. the jobs folder cannot be listed: keep what runs
            log.error("reload failed (%s: %s); the %d job(s) loaded before keep their schedules",
                      type(exc).__name__, logs.REDACTOR.scrub(str(exc)), len(old.jobs))
            return False
        logs.REDACTOR.add(passwords(project))
        self.hub.update(project, jobs)
        gen = _generation(project, jobs, self.hub)
        with self._cv:
            self._gen = gen
            self._retired.append(old)
        self._schedule_groups(gen)
        log.info("reloaded: %d scheduled job(s): %s", len(jobs), ", ".join(jobs) or "none")
        self._retire()
        return not invalid

    def _retire(self) -> None:
        """Close the pools of replaced generations once their last run is over."""
        with self._cv:
            done = [g for g in self._retired if g.active == 0]
            self._retired = [g for g in self._retired if g.active > 0]
        for gen in done:
            gen.runner.close()


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl has none
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Give the pages the allocator holds free back to the system. The job pool's threads each
    allocate in a malloc arena of their own, and what a slot's runs free there stays in the process
    unless asked for: without it the RSS of a daemon running a thousand jobs a minute grows by a few
    MiB an hour (bench/soak.py), though the objects it holds do not. Whether anything was returned."""
    trim = _malloc_trim()
    if trim is None:
        return False
    began = clock.monotonic()
    returned = bool(trim(0))
    log.debug("heap trimmed in %.1f ms (memory returned: %s)", (clock.monotonic() - began) * 1000, returned)
    return returned


def _group_id(key: tuple[str, str, int]) -> str:
    return f"runner:slots:{key[0]}|{key[1]}|{key[2]}"


def run_daemon(project: Project) -> int:
    """`--scheduler`: run every scheduled job at its slots until SIGTERM/SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        raise UsageError("the scheduler must run in the main thread (it handles SIGTERM, SIGINT and SIGHUP)")
    aps = logging.getLogger("apscheduler")
    if not aps.isEnabledFor(logging.DEBUG) and logging.getLogger("runner").level >= logging.INFO:
        aps.setLevel(logging.WARNING)  # one INFO line per run of every job would drown the runner's own
    # Threads that reach a task hand the GIL on sooner, so the dispatch thread claiming the other jobs
    # due at the same second is not held up for the default 5 ms each time (bench/schedule.py).
    sys.setswitchinterval(SWITCH_INTERVAL)
    return Daemon(project).serve()
