"""Named errors. Each message says what went wrong and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass


class RunnerError(Exception):
    """Base class of every error the runner reports to its user."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is and what to do."""

    file: str
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        key = f" [{self.key}]" if self.key else ""
        return f"{where}{key}: {self.message}"


class ConfigError(RunnerError):
    """Configuration is invalid; nothing ran. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(RunnerError):
    """Bad command-line input; nothing ran."""

    exit_code = 2


class JobLocked(RunnerError):
    """The same job is already running somewhere."""

    exit_code = 3


class StateStoreError(RunnerError):
    """The state store (run ledger, locks, slots) cannot be used; nothing ran."""

    exit_code = 2


class LedgerWriteFailed(StateStoreError):
    """The state store failed while a run was going: the run stopped, its tasks stay as they are."""

    exit_code = 1


class TaskFailed(RunnerError):
    """A task failed after its retries (or at once, for a permanent error)."""

    exit_code = 1


class OutcomeUnknown(TaskFailed):
    """The connection was lost while COMMIT was in flight and no marker can tell what happened."""
