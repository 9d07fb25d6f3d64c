"""The interface between the executor and a task kind (sql, export, load, ...).

The executor (run/executor.py) owns retries, the ledger's attempt rows, markers of earlier runs and
timeouts of the whole job; a kind owns one attempt of its task. It gets an `Attempt` (the task, the
run's parameters, the project's engines and ledger, the time left) and returns (rows, note), or
raises `AttemptError` carrying the classified cause, or `TaskFailed` for a problem of its own that
no retry would change. No kind imports the executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from runner.db.classify import Kind, Verdict, classify_error
from runner.db.engines import Engines
from runner.model import Job, Project, Statement, Task
from runner.state.ledger import Ledger


class AttemptError(Exception):
    """One failed attempt of a task: the cause, where it happened, and what it means."""

    def __init__(self, cause: BaseException, verdict: Verdict, statement: Statement | None, phase: str,
                 timed_out: bool = False):
        super().__init__(verdict.message)
        self.cause = cause
        self.verdict = verdict
        self.statement = statement
        self.phase = phase  # "connect" | "statement" | "commit" | "marker" | "source"
        self.timed_out = timed_out
        self.attempt_id: int | None = None  # its row in the ledger

    @property
    def ambiguous(self) -> bool:
        """Lost while COMMIT was in flight: it may have committed."""
        return self.phase == "commit" and self.verdict.disconnect


def timeout_error(cause: BaseException, statement: Statement | None, phase: str,
                  seconds: float | None) -> AttemptError:
    """The attempt error of a task whose time ran out. When the server reports the statement stopped
    (MySQL 1317/3024/1969, PostgreSQL 57014, SQLite interrupted), the message says it was killed there;
    a statement that finished before the kill arrived is not claimed to have been killed."""
    verdict = classify_error(cause)
    after = f"timed out after {seconds or 0:g}s"
    if verdict.kind is Kind.TIMEOUT:
        text = f"{after}; the statement was killed on the server ({verdict.message})"
    elif verdict.message:
        text = f"{after}; the task was stopped ({verdict.message})"
    else:
        text = f"{after}; the task was stopped before its next statement"
    return AttemptError(cause, Verdict(Kind.TIMEOUT, verdict.errno, False, False, verdict.backoff, text,
                                       verdict.sqlstate), statement, phase, timed_out=True)


@dataclass(frozen=True)
class Attempt:
    """One attempt of one task, as the executor hands it to the task's kind."""

    project: Project
    engines: Engines
    ledger: Ledger
    job: Job
    task: Task
    run_id: str
    number: int  # 1 for the first attempt
    params: Mapping[str, Any]
    time_left: Callable[[], float | None]  # seconds its statements may still take (task and job timeouts)

    @property
    def label(self) -> str:
        return f"job {self.job.name} task {self.task.name}"

    def timeout(self) -> float | None:
        return self.time_left()


class TaskKind(Protocol):
    """What a kind of task provides. `resumable`: a commit leaves an exactly-once marker in the task's
    database, so a re-run of the slot skips a task an earlier run committed. `confirms_retry`: before
    attempt 2 and later, the executor looks for this run's own marker (a COMMIT lost in flight may
    have committed); a kind that says False makes that check itself."""

    name: str
    resumable: bool
    confirms_retry: bool

    def run(self, attempt: Attempt) -> tuple[int, str]:
        """Run one attempt; returns (rows, note). Raises AttemptError or TaskFailed."""
        ...
