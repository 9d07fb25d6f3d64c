"""What an operator can do from the web (with the token): run a job now, re-run a run that failed,
pause and resume a job.

A run started here is a run by hand (trigger `manual`) under the job's lock, like `--job NAME`, with
its alerts, pings and metrics, in a thread of its own: the request returns as soon as the run's row
is in the ledger, and a job already running (here, in the daemon, on another host) is refused with
its holder named. A paused job is refused unless forced. A re-run is `--rerun RUN_ID`'s (schedule.byhand), started the same way; pause and resume are those of
the state store's JobState, recorded as made from the web.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import date
from typing import Any, Callable
from zoneinfo import ZoneInfo

from runner import clock, logs
from runner.config.plan import MANUAL_FIX, missing_params, resolve_params
from runner.errors import JobLocked, RunnerError, UsageError
from runner.model import Job, Project
from runner.notify.hub import watched_runner
from runner.run.executor import RunRequest, new_run_id
from runner.schedule.byhand import abandon_unfinished, execute_rerun, prepare_rerun, refuse_paused
from runner.state.failures import failure_of
from runner.state.jobstate import JobState, Pause
from runner.state.lock import job_lock
from runner.state.slots import SlotLedger

log = logging.getLogger("runner.web")

LOCK_WAIT = 15.0  # how long a request waits for the run to hold the job's lock


class Refused(RunnerError):
    """The action cannot be taken; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _log_failure(exc: BaseException, what: str) -> None:
    """A state store failure is said in one line (it is the store, not a bug); anything else with its
    traceback."""
    why = failure_of(exc)
    if why is not None:
        log.error("%s: %s", what, why)
    else:
        log.exception(what)


class _Announcing(SlotLedger):
    """The ledger of a run started here: the request is answered once the run's row is written, so the
    run page it links to is there."""

    def __init__(self, url: str, held: Future[str], run_id: str = ""):
        super().__init__(url)
        self.run_id = run_id
        self._held = held

    def start_run(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        super().start_run(run_id, *args, **kwargs)
        if run_id == self.run_id and not self._held.done():
            self._held.set_result(run_id)


class Actions:
    """Runs started from the web. `wait` lets them finish when the server stops."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def run_now(self, project: Project, job: Job, force: bool = False) -> str:
        """Start a run of `job` for today (in its timezone); its run id once it holds the job's lock. A
        paused job only with `force`, as `--job NAME --force`."""
        day = clock.now().astimezone(ZoneInfo(job.timezone)).date()
        missing = missing_params(job.tasks, resolve_params(job, day, {}))
        if missing:
            raise Refused(422, "; ".join(str(m.problem(MANUAL_FIX)) for m in missing)
                          + " (a run from the web has no --param)")
        held: Future[str] = Future()
        return self._start(f"runner-web-run-{job.name}", held,
                           lambda: self._run(project, job, day, new_run_id(), force, held))

    def rerun(self, project: Project, run_id: str, force: bool = False) -> str:
        """Re-run a run that did not succeed, as `--rerun RUN_ID` does; the new run's id once it is
        prepared (the job's lock held, the slot claimed)."""
        held: Future[str] = Future()
        return self._start(f"runner-web-rerun-{run_id[:8]}", held, lambda: self._rerun(project, run_id, force, held))

    def _start(self, name: str, held: Future[str], work: Callable[[], None]) -> str:
        """`name` is the thread's, `runner-web-run-<job>` or `runner-web-rerun-<run id>`."""
        what = name.replace("runner-web-run-", "job ", 1).replace("runner-web-rerun-", "the re-run of run ", 1)
        thread = threading.Thread(target=work, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        try:
            return held.result(LOCK_WAIT)
        except JobLocked as exc:
            raise Refused(409, str(exc)) from None
        except UsageError as exc:  # paused, succeeded already, re-run already, no such run
            raise Refused(404 if str(exc).startswith("no run ") else 409, str(exc)) from None
        except FutureTimeout:
            raise Refused(503, f"{what}: its lock could not be taken within {LOCK_WAIT:.0f}s (state store "
                               "slow or unreachable); the run starts when it is, or not at all") from None
        except Exception as exc:
            why = failure_of(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            raise Refused(503, f"{what}: the run could not start: {logs.REDACTOR.scrub(why)}") from None

    def _run(self, project: Project, job: Job, day: date, run_id: str, force: bool, held: Future[str]) -> None:
        runner = hub = None
        try:
            ledger = _Announcing(project.settings.state_url, held, run_id)
            runner, hub = watched_runner(project, ledger, {job.name: job})
            refuse_paused(job, ledger, force, "run now")
            with job_lock(project, ledger, job.name, "manual") as lock:
                abandon_unfinished(ledger, job)
                ledger.record_origin(run_id, {}, None)
                log.info("job %s: run %s started from the web", job.name, run_id[:8])
                runner.run(RunRequest(job, day, trigger="manual", run_id=run_id, still_locked=lock.verify))
        except BaseException as exc:
            if not held.done():
                held.set_exception(exc)
            if not isinstance(exc, (JobLocked, UsageError)):
                _log_failure(exc, f"job {job.name}: the run started from the web failed to run")
        finally:
            self._closed(hub, runner)

    def _rerun(self, project: Project, run_id: str, force: bool, held: Future[str]) -> None:
        ledger = _Announcing(project.settings.state_url, held)
        runner = hub = None
        try:
            prepared = prepare_rerun(project, ledger, run_id, force)
            ledger.run_id = prepared.run_id
            try:
                runner, hub = watched_runner(project, ledger, {prepared.job.name: prepared.job})
            except BaseException:
                prepared.release.close()
                raise
            log.info("%s (from the web)", prepared.describe())
            execute_rerun(runner, prepared)
        except BaseException as exc:
            if not held.done():
                held.set_exception(exc)
            if not isinstance(exc, (JobLocked, UsageError)):
                _log_failure(exc, f"run {run_id[:8]}: the re-run started from the web failed to run")
        finally:
            self._closed(hub, runner)
            if runner is None:
                ledger.dispose()

    def _closed(self, hub: Any, runner: Any) -> None:
        if hub is not None:
            hub.close()  # the alerts of the run are sent (or stay in the outbox) by now
        if runner is not None:
            runner.close()
        with self._lock:
            self._threads.discard(threading.current_thread())

    @staticmethod
    def pause(project: Project, job: str, reason: str, by: str) -> tuple[Pause, bool]:
        ledger = SlotLedger(project.settings.state_url)
        try:
            return JobState(ledger).pause(job, " ".join(reason.split()), by=by)
        finally:
            ledger.dispose()

    @staticmethod
    def resume(project: Project, job: str, by: str) -> Pause | None:
        ledger = SlotLedger(project.settings.state_url)
        try:
            return JobState(ledger).resume(job, by=by)
        finally:
            ledger.dispose()

    def running(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def wait(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the runs started here; how many are still running."""
        deadline = clock.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive or clock.monotonic() >= deadline:
                return len(alive)
            alive[0].join(min(0.5, max(0.01, deadline - clock.monotonic())))
