"""Runs a job: tasks in dependency order, each in one transaction on one pooled connection, under a
retry policy built from the error table, with every attempt recorded in the ledger.

Unit of retry = the task. A retryable error rolls the task back and the whole task runs again from
its first statement on a healthy connection; a single statement is never replayed mid-transaction.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Mapping, Protocol, Sequence

from tenacity import RetryCallState

from runner import clock, logs, stop
from runner.config.plan import from_task, graph, order_tasks, resolve_params
from runner.db.classify import HINTS, Kind, Verdict, classify_error, server_away
from runner.db.engines import Engines, current_context
from runner.errors import LedgerWriteFailed, OutcomeUnknown, StateStoreError, TaskFailed
from runner.model import Job, Project, RetrySpec, Task
from runner.run.kinds import kind_of
from runner.run.retry import build_retrying, describe_attempts
from runner.state import markers
from runner.state.failures import failure_of
from runner.state.ledger import Ledger
from runner.state.lock import close_idle_locks
from runner.tasks.base import Attempt, AttemptError
from runner.tasks.sql import non_atomic

log = logging.getLogger("runner.executor")


@dataclass(frozen=True)
class RunRequest:
    """A run to make: the job, its date, --param values and where it came from."""
    job: Job
    run_date: date
    params: Mapping[str, str] = field(default_factory=dict)
    from_task: str | None = None
    trigger: str = "manual"
    slot: datetime | None = None
    run_id: str | None = None
    still_locked: Callable[[], bool] | None = None  # the job's lock, checked before each task attempt
    # Earlier runs of the same slot (run id -> status, newest first): a task whose marker one of them
    # committed is done, and is not applied again.
    resume_of: Mapping[str, str] = field(default_factory=dict)
    # Tasks a re-run leaves alone because the run it re-runs recorded them done (task -> (run id, rows)).
    done: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass
class TaskResult:
    """The outcome of one task of a run."""
    name: str
    status: str = "pending"  # success | failed | skipped | pending
    attempts: int = 0
    rows: int = 0
    seconds: float = 0.0
    note: str = ""
    error: str | None = None  # the whole failure message
    errno: int | None = None  # of the error the task failed with
    statement: str | None = None  # file:line of the statement it failed in
    retried: list[int | None] = field(default_factory=list)  # error numbers of the attempts retried
    store_error: str | None = None  # the ledger could not be written: the run stops


@dataclass
class RunResult:
    """The outcome of a run, task by task."""
    run_id: str
    job: str
    run_date: date
    status: str
    tasks: list[TaskResult]
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"


def new_run_id() -> str:
    return uuid.uuid4().hex


class RunWatcher(Protocol):
    """Told of every run (notifications, metrics, pings). `alerts` returns the outbox rows written in
    the transaction that records the run's outcome. A watcher that fails is logged, never fails the run."""

    def started(self, req: RunRequest, run_id: str) -> None: ...

    def alerts(self, req: RunRequest, run_id: str, status: str) -> list[dict[str, Any]]: ...

    def finished(self, req: RunRequest, result: RunResult) -> None: ...


class Runner:
    """Runs jobs of one project. Engines (pools) and the ledger are shared by every run it makes."""

    def __init__(self, project: Project, engines: Engines | None = None, ledger: Ledger | None = None,
                 sleep: Callable[[float], Any] | None = None, watchers: Sequence[RunWatcher] = ()):
        self.project = project
        self.engines = engines or Engines(project)
        self.ledger = ledger or Ledger(project.settings.state_url)
        self.sleep = sleep or clock.sleep
        self.watchers = list(watchers)

    def close(self) -> None:
        self.engines.dispose()
        close_idle_locks(self.ledger)
        self.ledger.dispose()

    # ------------------------------------------------------------------------------------------- job
    def run(self, req: RunRequest, on_task: Callable[[TaskResult], None] | None = None) -> RunResult:
        job = req.job
        run_id = req.run_id or new_run_id()
        params = resolve_params(job, req.run_date, req.params, run_id)
        selected = from_task(order_tasks(job.tasks), req.from_task)
        results = {t.name: TaskResult(t.name) for t in selected}
        started = clock.monotonic()
        started_at = clock.now()
        deadline = started + job.timeout if job.timeout else None
        stop.check()
        try:
            self.ledger.start_run(run_id, job.name, req.run_date.isoformat(), req.trigger, req.slot)
        except Exception as exc:
            store = failure_of(exc)
            if store is None:
                raise
            raise StateStoreError(f"{store}; job {job.name} was not started") from exc
        with logs.bound(job=job.name, run_id=run_id):
            log.info("job %s started (run %s, date %s, %d tasks)", job.name, run_id[:8], req.run_date, len(selected))
            self._tell("started", req, run_id)
            ctx = _RunContext(run_id=run_id, job=job, params=params, deadline=deadline,
                              still_locked=req.still_locked, resume_of=req.resume_of, done=req.done)
            status, error = "failed", None
            store_failed: str | None = None
            try:
                error = self._run_tasks(ctx, selected, results, on_task)
                status = "success" if error is None else "failed"
                store_failed = next((r.store_error for r in results.values() if r.store_error), None)
            except BaseException as exc:
                store_failed = failure_of(exc) if isinstance(exc, Exception) else None
                if store_failed is None:
                    status = "interrupted"
                    error = stop.reason() if stop.requested() else f"interrupted: {type(exc).__name__}"
                    raise
                status, error = "failed", f"the ledger could not be written: {store_failed}"
            finally:
                total_attempts = sum(r.attempts for r in results.values())
                total_rows = sum(r.rows for r in results.values())
                seconds = clock.monotonic() - started
                try:
                    if store_failed is None and self.ledger.replaced():
                        self._record_again(req, run_id, started_at, results)
                    self.ledger.finish_run(run_id, status, total_attempts, total_rows, error,
                                           alerts=self._alerts(req, run_id, status))
                except Exception as exc:
                    store = failure_of(exc)
                    if store is None:
                        raise
                    if store_failed is None:  # the run itself went to its end: only its record is lost
                        raise LedgerWriteFailed(_ledger_failed(job, run_id, store, results, finished=status)) from exc
                log.info("job %s %s in %.2fs", job.name, status, seconds)
                result = RunResult(run_id, job.name, req.run_date, status, list(results.values()), seconds, error)
                self._tell("finished", req, result)
        if store_failed is not None:
            raise LedgerWriteFailed(_ledger_failed(job, run_id, store_failed, results))
        return result

    def _alerts(self, req: RunRequest, run_id: str, status: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for w in self.watchers:
            try:
                out.extend(w.alerts(req, run_id, status))
            except Exception:
                log.exception("job %s: the alerts of run %s could not be prepared", req.job.name, run_id[:8])
        return out

    def _tell(self, what: str, req: RunRequest, arg: Any) -> None:
        for w in self.watchers:
            try:
                getattr(w, what)(req, arg)
            except Exception:
                log.exception("job %s: %s of the run could not be told to %s", req.job.name, what, type(w).__name__)

    def _record_again(self, req: RunRequest, run_id: str, started_at: datetime,
                      results: Mapping[str, TaskResult]) -> None:
        log.warning("the state store file %s was deleted or replaced while run %s of job %s was going: a new one is "
                    "made there and the run is recorded in it (its last attempt of each task)", self.ledger.file,
                    run_id[:8], req.job.name)
        self.ledger.reopen()
        self.ledger.record_again(run_id, req.job.name, req.run_date.isoformat(), req.trigger, req.slot, started_at,
                                 [(r.name, r.attempts, r.status, r.rows, r.error or r.note or None)
                                  for r in results.values() if r.attempts])

    def _run_tasks(self, ctx: "_RunContext", selected: list[Task], results: dict[str, TaskResult],
                   on_task: Callable[[TaskResult], None] | None) -> str | None:
        names = {t.name for t in selected}
        ts = graph(Task(t.name, t.database, depends_on=tuple(d for d in t.depends_on if d in names))
                   for t in selected)
        ts.prepare()
        by_name = {t.name: t for t in selected}
        order = {t.name: i for i, t in enumerate(selected)}
        first_error: str | None = None
        workers = max(1, ctx.job.max_parallel)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"job-{ctx.job.name}") if workers > 1 else None
        running: dict[Future[TaskResult], str] = {}
        try:
            ready: list[str] = []
            while ts.is_active() and first_error is None:
                ready.extend(sorted(ts.get_ready(), key=order.__getitem__))
                while ready and len(running) < workers and first_error is None:
                    name = ready.pop(0)
                    if pool is None:
                        first_error = self._finish(ts, results, self._run_task(ctx, by_name[name]), on_task)
                    else:
                        running[pool.submit(self._run_task, ctx, by_name[name])] = name
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        running.pop(fut)
                        err = self._finish(ts, results, fut.result(), on_task)
                        first_error = first_error or err
            for fut in list(running):  # let tasks already running finish; start nothing new
                err = self._finish(ts, results, fut.result(), on_task)
                first_error = first_error or err
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        for r in results.values():
            if r.status == "pending":
                r.status, r.note = "skipped", "not started: an earlier task failed"
        return first_error

    @staticmethod
    def _finish(ts: Any, results: dict[str, TaskResult], result: TaskResult,
                on_task: Callable[[TaskResult], None] | None) -> str | None:
        results[result.name] = result
        if on_task is not None:
            on_task(result)
        if result.status == "success":
            ts.done(result.name)
            return None
        return result.error or f"task {result.name} failed"

    # ------------------------------------------------------------------------------------------- task
    def _run_task(self, ctx: "_RunContext", task: Task) -> TaskResult:
        with logs.bound(job=ctx.job.name, run_id=ctx.run_id, task=task.name):
            return self._task_attempts(ctx, task)

    def _task_attempts(self, ctx: "_RunContext", task: Task) -> TaskResult:
        result = TaskResult(task.name)
        started = clock.monotonic()
        spec = task.retry or ctx.job.retry
        retried: list[AttemptError] = []

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, AttemptError):
                retried.append(exc)
            self._log_retry(ctx, task, spec, state)

        retrying = build_retrying(spec, should_retry=lambda e: self._should_retry(task, e),
                                  before_sleep=before_sleep, sleep=self.sleep)
        current_context.label = f"job {ctx.job.name} task {task.name}"
        try:
            for attempt in retrying:
                with attempt:
                    result.attempts += 1
                    result.rows, result.note = self._attempt(ctx, task, result.attempts)
            result.status = "success"
        except _Committed as exc:  # the task committed, but the ledger could not say so
            result.status, result.rows, result.note = "success", exc.rows, exc.note
            result.store_error = failure_of(exc)
        except AttemptError as exc:
            result.status = "failed"
            result.errno = exc.verdict.errno
            result.statement = exc.statement.where if exc.statement is not None else None
            if exc.attempt_id is not None and self._should_retry(task, exc):  # attempts or window ran out
                self.ledger.finish_attempt(exc.attempt_id, "failed", errno=exc.verdict.errno,
                                           error=_ledger_error(exc.verdict))
            result.error = self._failure_message(ctx, task, exc, result.attempts, clock.monotonic() - started, spec,
                                                 retried)
            log.error("%s", result.error)
        except TaskFailed as exc:
            result.status, result.error = "failed", str(exc)
            log.error("%s", result.error)
        except Exception as exc:
            result.store_error = failure_of(exc)
            if result.store_error is None:
                raise
            result.status = "failed" if result.attempts and not isinstance(exc, _NotStarted) else "skipped"
            result.error = f"the ledger could not be written: {result.store_error}"
            log.error("job %s task %s: %s", ctx.job.name, task.name, result.error)
        finally:
            current_context.label = ""
            result.seconds = clock.monotonic() - started
            result.retried = [e.verdict.errno for e in retried]
        return result

    def _should_retry(self, task: Task, exc: BaseException) -> bool:
        if not isinstance(exc, AttemptError):
            return False
        v = exc.verdict
        if exc.timed_out or v.kind is Kind.TIMEOUT:
            return task.retry_timeouts
        if not v.retryable:
            # A host name that does not resolve is a typo unless the host was reached earlier in this
            # process: then it is DNS failing for a while, and is waited out like a server that is away.
            return v.kind is Kind.UNKNOWN_HOST and self.engines.reached(self._database_of(task, exc))
        if non_atomic(task) and not task.idempotent and exc.phase != "connect":
            return False
        if exc.ambiguous and not self.project.databases[task.database].markers:
            return False
        return True

    @staticmethod
    def _database_of(task: Task, exc: AttemptError) -> str:
        """The database an attempt's error came from: a load's source, or the task's database."""
        return task.load.source if task.load is not None and exc.phase == "source" else task.database

    def _log_retry(self, ctx: "_RunContext", task: Task, spec: RetrySpec, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        if isinstance(exc, AttemptError):
            v = exc.verdict
            limit = f"{state.attempt_number}/{spec.attempts}"
            if spec.window and server_away(v, exc.phase):  # waited out until the window closes
                limit = f"{state.attempt_number} ({state.seconds_since_start or 0:.0f}s of the {spec.window:g}s window)"
            log.warning("job %s task %s: error %s(%s) on attempt %s; retrying in %.2fs: %s",
                        ctx.job.name, task.name, f"{v.code} " if v.code else "", v.kind.value, limit, delay,
                        _one_line(v.message),
                        extra={"job": ctx.job.name, "task": task.name, "errno": v.errno,
                               "attempt": state.attempt_number, "next_delay": round(delay, 3)})

    def _attempt(self, ctx: "_RunContext", task: Task, attempt: int) -> tuple[int, str]:
        """One attempt of a task; returns (rows, note). Raises AttemptError, TaskFailed, or Interrupted
        when the run was asked to stop (its attempt is recorded `interrupted`)."""
        stop.check()
        if ctx.deadline is not None and clock.monotonic() >= ctx.deadline:
            raise TaskFailed(f"job {ctx.job.name}: job timeout of {ctx.job.timeout:.0f}s reached before task "
                             f"{task.name} started")
        if ctx.still_locked is not None and not ctx.still_locked():
            # A MySQL named lock dies with its connection: another process may hold it now.
            raise TaskFailed(f"job {ctx.job.name}: the job's lock was lost (its state store connection dropped), "
                             f"so task {task.name} was not started: another process may be running the job")
        try:
            attempt_id = self.ledger.start_attempt(ctx.run_id, task.name, attempt)
        except Exception as exc:
            if failure_of(exc) is None:
                raise
            raise _NotStarted() from exc
        try:
            rows, note, recorded = self._attempt_body(ctx, task, attempt)
        except AttemptError as exc:
            if stop.requested():
                self._record_interrupted(attempt_id, exc)
                raise stop.Interrupted() from exc
            v = exc.verdict
            status = "retrying" if self._should_retry(task, exc) else "failed"
            where = (exc.statement.where, exc.statement.first_line[:300]) if exc.statement is not None else None
            self.ledger.finish_attempt(attempt_id, status, errno=v.errno, error=_ledger_error(v), statement=where,
                                       run_id=ctx.run_id)
            exc.attempt_id = attempt_id
            if exc.ambiguous and not self.project.databases[task.database].markers:
                raise OutcomeUnknown(
                    f"job {ctx.job.name} task {task.name}: the connection to {self.engines.display(task.database)} "
                    f"was lost while COMMIT was in flight, and markers are off for this database, so the outcome "
                    f"is unknown: check the data of this task before re-running it") from exc
            raise
        except BaseException as exc:  # a runner error, a stop, or a bug: the attempt never stays `running`
            if stop.requested() or isinstance(exc, KeyboardInterrupt):
                self._record_interrupted(attempt_id, exc)
                if isinstance(exc, stop.Interrupted) or not isinstance(exc, Exception):
                    raise
                raise stop.Interrupted() from exc
            if failure_of(exc) is None:
                errno = getattr(getattr(exc, "verdict", None), "errno", None)
                self.ledger.finish_attempt(attempt_id, "failed", errno=errno, error=_one_line(str(exc))[:2000])
            raise
        try:
            self.ledger.finish_attempt(attempt_id, "success", rows, error=recorded)
        except Exception as exc:
            if failure_of(exc) is None:
                raise
            raise _Committed(rows, note) from exc
        return rows, note

    def _record_interrupted(self, attempt_id: int, exc: BaseException) -> None:
        try:
            self.ledger.finish_attempt(attempt_id, "interrupted", error=stop.reason())
        except Exception as record_exc:  # the run is ending anyway; the next run marks it abandoned
            log.error("the interrupted attempt could not be recorded: %s", failure_of(record_exc) or record_exc)

    def _attempt_body(self, ctx: "_RunContext", task: Task, attempt: int) -> tuple[int, str, str | None]:
        """(rows, note, the note the ledger keeps with the attempt): the task's body, unless the run it
        re-runs recorded it done, or a marker shows that an earlier run of the slot, or an earlier
        attempt, committed it."""
        if task.name in ctx.done:
            by, rows = ctx.done[task.name]
            note = f"done in run {by}"
            log.info("job %s task %s: %s; not run again", ctx.job.name, task.name, note)
            return rows, note, note
        earlier = self._committed_earlier(ctx, task)
        if earlier is not None:
            note = f"committed by the {ctx.resume_of[earlier[0]]} run {earlier[0]}"
            log.info("job %s task %s: %s (marker found); not applied again", ctx.job.name, task.name, note)
            return earlier[1], note, note
        if attempt > 1:
            done = self._already_committed(ctx, task)
            if done is not None:
                log.info("job %s task %s: attempt %d had committed (marker found); not applied again",
                         ctx.job.name, task.name, done[0])
                return done[1], f"committed by attempt {done[0]}, confirmed by its marker", \
                    f"committed by attempt {done[0]}"
        rows, note = self._body(ctx, task, attempt)
        return rows, note, None

    def _committed_earlier(self, ctx: "_RunContext", task: Task) -> tuple[str, int] | None:
        """(run id, rows) of the earlier run of this slot that committed the task, by its marker."""
        if not ctx.resume_of or not kind_of(task).resumable or not self.project.databases[task.database].markers:
            return None
        for run_id in ctx.resume_of:
            found = self._marker(task, run_id)
            if found is not None:
                return run_id, found[1]
        return None

    def _already_committed(self, ctx: "_RunContext", task: Task) -> tuple[int, int] | None:
        if not kind_of(task).confirms_retry or not self.project.databases[task.database].markers:
            return None
        return self._marker(task, ctx.run_id)

    def _marker(self, task: Task, run_id: str) -> tuple[int, int] | None:
        """(attempt, rows) of the task's marker under `run_id`; a lookup that fails is a connect failure."""
        engine = self.engines.get(task.database)
        try:
            return markers.find(engine, run_id, task.name)
        except Exception as exc:
            raise AttemptError(exc, classify_error(exc), None, "connect") from exc

    def _body(self, ctx: "_RunContext", task: Task, attempt: int) -> tuple[int, str]:
        at = Attempt(self.project, self.engines, self.ledger, ctx.job, task, ctx.run_id, attempt, ctx.params,
                     lambda: self.timeout_for(ctx, task))
        return kind_of(task).run(at)

    def timeout_for(self, ctx: "_RunContext", task: Task) -> float | None:
        limits = [t for t in (task.timeout,) if t]
        if ctx.deadline is not None:
            limits.append(max(0.001, ctx.deadline - clock.monotonic()))
        return min(limits) if limits else None

    # ------------------------------------------------------------------------------------------- messages
    def _failure_message(self, ctx: "_RunContext", task: Task, exc: AttemptError, attempts: int, seconds: float,
                         spec: RetrySpec, retried: Sequence[AttemptError] = ()) -> str:
        v = exc.verdict
        lines = [f"job {ctx.job.name}: task {task.name} failed"]
        stmt = exc.statement
        if stmt is not None:
            lines.append(f"  statement: {stmt.where}: {stmt.first_line[:160]}")
            if exc.phase == "source":
                lines.append(f"  during: reading the rows of the load's source {task.load.source if task.load else ''}")
        elif exc.phase == "commit":
            lines.append("  during: COMMIT")
        elif exc.phase == "connect":
            lines.append("  during: connecting")
        database = self._database_of(task, exc)
        lines.append(f"  database: {self.engines.display(database)}")
        code = f"{v.code} " if v.code is not None else ""
        if attempts > 1:
            lines.append(f"  last error: {code}{_one_line(v.message)} ({v.kind.value})")
            verdicts = [e.verdict for e in retried][-(attempts - 1):] + [v]
            lines.extend(describe_attempts(verdicts, seconds, spec, self._should_retry(task, exc),
                                           server_away(v, exc.phase)))
        else:
            lines.append(f"  error: {code}{_one_line(v.message)} ({v.kind.value})")
            why = ""
            if exc.timed_out or v.kind is Kind.TIMEOUT:
                why = " (not retried: timeouts fail fast unless retry_timeouts: true)"
            elif not v.retryable:
                why = " (not retried: it would fail the same way)"
            elif non_atomic(task) and not task.idempotent:
                why = " (not retried: the task commits implicitly (DDL); mark it idempotent: true to allow retries)"
            elif spec.attempts <= 1:
                why = " (retry.attempts is 1)"
            elif spec.window:
                why = f" (the retry window of {spec.window:g}s closed)"
            lines.append(f"  attempts: 1 over {seconds:.1f}s{why}")
        hint = HINTS.get(Kind.TIMEOUT if exc.timed_out else v.kind, HINTS[Kind.UNKNOWN])
        lines.append(f"  what to do: {hint}; then: python -m runner --job {ctx.job.name} --from-task {task.name}"
                     + f" --date {ctx.params['run_date']}")
        return "\n".join(lines)


class _NotStarted(Exception):
    """The ledger could not record the start of an attempt, so the attempt was not made."""


class _Committed(Exception):
    """The attempt committed, but the ledger could not record it."""

    def __init__(self, rows: int, note: str):
        super().__init__(note)
        self.rows, self.note = rows, note


@dataclass
class _RunContext:
    """What the tasks of one run share: its id, parameters, deadline, lock check, and the tasks a re-run resumes from."""
    run_id: str
    job: Job
    params: dict[str, Any]
    deadline: float | None = None
    still_locked: Callable[[], bool] | None = None
    resume_of: Mapping[str, str] = field(default_factory=dict)
    done: Mapping[str, tuple[str, int]] = field(default_factory=dict)


def _ledger_failed(job: Job, run_id: str, store: str, results: Mapping[str, TaskResult],
                   finished: str | None = None) -> str:
    """The message of a state store that failed during a run: what the run did, what is left undone."""
    done = [r.name for r in results.values() if r.status == "success"]
    failed = [r.name for r in results.values() if r.status == "failed"]
    left = [r.name for r in results.values() if r.status in ("pending", "skipped")]
    parts = [f"job {job.name} run {run_id[:8]}: the ledger could not be written: {store}"]
    if finished is not None:
        parts.append(f"the run itself ended {finished}, but its end is not recorded")
    else:
        parts.append("the run stopped; its tasks stay as they are")
    parts.append(f"committed: {', '.join(done) or 'none'}")
    if failed:
        parts.append(f"failed: {', '.join(failed)}")
    if left and finished is None:
        parts.append(f"not run: {', '.join(left)}")
    parts.append(f"once the state store works, the next run marks this one abandoned; to finish the job: "
                 f"python -m runner --job {job.name}" + (f" --from-task {left[0]}" if left and finished is None
                                                          else ""))
    return "; ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _ledger_error(v: Verdict) -> str:
    """The error as the ledger keeps it: its errno has a column; a SQLSTATE (not a number) leads the text."""
    text = _one_line(v.message)
    return f"SQLSTATE {v.sqlstate}: {text}" if v.errno is None and v.sqlstate else text


