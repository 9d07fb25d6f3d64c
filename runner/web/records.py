"""What the pages and the API show of the ledger: runs and task attempts as frozen records, every
moment timezone-aware UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

# The runner's failure message names the statement: "  statement: jobs/x.yml:12: INSERT ...".
_STATEMENT = re.compile(r"^\s*statement: (.+?:\d+): ", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    run_id: str
    job: str
    run_date: str
    slot: datetime | None
    trigger: str
    host: str
    pid: int
    started: datetime
    ended: datetime | None
    status: str
    attempts: int
    rows: int
    error: str | None

    def seconds(self, now: datetime | None = None) -> float | None:
        """How long it ran (so far, given `now`, while it runs); None for a slot that never ran."""
        if self.status in ("missed", "paused"):
            return None
        end = self.ended or (now if self.status == "running" else None)
        return max(0.0, (end - self.started).total_seconds()) if end is not None else None

    @property
    def summary(self) -> str | None:
        """The line of the failure message that says what went wrong (its first line says only where)."""
        lines = [ln.strip() for ln in (self.error or "").splitlines() if ln.strip()]
        for ln in lines:
            if ln.startswith(("error: ", "last error: ")):
                return ln.partition(": ")[2]
        return lines[0] if lines else None

    @property
    def statement(self) -> str | None:
        """file:line of the statement that failed, from the failure message."""
        m = _STATEMENT.search(self.error or "")
        return m.group(1) if m else None


@dataclass(frozen=True)
class Attempt:
    run_id: str
    task: str
    attempt: int
    started: datetime
    ended: datetime | None
    status: str  # running | success | retrying | failed
    rows: int | None
    errno: int | None
    error: str | None
    statement: str | None = None  # file:line of the statement a failed attempt failed in
    first_line: str | None = None  # that statement's first line

    def seconds(self, now: datetime | None = None) -> float | None:
        end = self.ended or now
        return max(0.0, (end - self.started).total_seconds()) if end is not None else None
