"""What an operator can do from the web (with the token): run a job now.

A run started here is a run by hand (trigger `manual`) under the job's lock, like `--job NAME`, with
its alerts, pings and metrics, in a thread of its own: the request returns as soon as the lock is held and the run id is known, and a
job already running (here, in the daemon, on another host) is refused with its holder named.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from runner import clock, logs
from runner.config.plan import MANUAL_FIX, missing_params, resolve_params
from runner.errors import JobLocked, RunnerError
from runner.model import Job, Project
from runner.notify.hub import watched_runner
from runner.run.executor import RunRequest, new_run_id
from runner.state.ledger import Ledger
from runner.state.lock import job_lock

log = logging.getLogger("runner.web")

LOCK_WAIT = 15.0  # how long a request waits for the run to hold the job's lock


class Refused(RunnerError):
    """The action cannot be taken; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Announcing(Ledger):
    """The ledger of a run started here: the request is answered once the run's row is written, so the
    run page it links to is there."""

    def __init__(self, url: str, run_id: str, held: Future[str]):
        super().__init__(url)
        self._run_id = run_id
        self._held = held

    def start_run(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        super().start_run(run_id, *args, **kwargs)
        if run_id == self._run_id and not self._held.done():
            self._held.set_result(run_id)


class Actions:
    """Runs started from the web. `wait` lets them finish when the server stops."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def run_now(self, project: Project, job: Job) -> str:
        """Start a run of `job` for today (in its timezone); its run id once it holds the job's lock."""
        day = clock.now().astimezone(ZoneInfo(job.timezone)).date()
        missing = missing_params(job.tasks, resolve_params(job, day, {}))
        if missing:
            raise Refused(422, "; ".join(str(m.problem(MANUAL_FIX)) for m in missing)
                          + " (a run from the web has no --param)")
        run_id = new_run_id()
        held: Future[str] = Future()
        thread = threading.Thread(target=self._run, args=(project, job, day, run_id, held),
                                  name=f"runner-web-run-{job.name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        try:
            return held.result(LOCK_WAIT)
        except JobLocked as exc:
            raise Refused(409, str(exc)) from None
        except FutureTimeout:
            raise Refused(503, f"job {job.name}: its lock could not be taken within {LOCK_WAIT:.0f}s (state store "
                               "slow or unreachable); the run starts when it is, or not at all") from None
        except Exception as exc:
            raise Refused(503, f"job {job.name}: the run could not start: {type(exc).__name__}: "
                               f"{logs.REDACTOR.scrub(str(exc))}") from None

    def _run(self, project: Project, job: Job, day: date, run_id: str, held: Future[str]) -> None:
        runner = hub = None
        try:
            runner, hub = watched_runner(project, _Announcing(project.settings.state_url, run_id, held),
                                         {job.name: job})
            with job_lock(project, runner.ledger, job.name, "manual") as lock:
                log.info("job %s: run %s started from the web", job.name, run_id[:8])
                runner.run(RunRequest(job, day, trigger="manual", run_id=run_id, still_locked=lock.verify))
        except BaseException as exc:
            if not held.done():
                held.set_exception(exc)
            if not isinstance(exc, JobLocked):
                log.exception("job %s: the run started from the web failed to run", job.name)
        finally:
            if hub is not None:
                hub.close()  # the alerts of the run are sent (or stay in the outbox) by now
            if runner is not None:
                runner.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

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
