"""What the pages read from the state store: runs, attempts and watermarks, on a pool of the web's own
(its reads never wait for a connection a job holds, and never write).

Every query is bound to an index of the ledger (job + started, job + slot, run id), so a page costs the
same with 100 runs in the ledger as with a million.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

import sqlalchemy as sa

from runner.model import Job
from runner.move.watermark import listed
from runner.state.ledger import Ledger, runs
from runner.state.watermarks import last_changes, stored
from runner.state.jobstate import JobState, Pause
from runner.state.outbox import Alert, Outbox
from runner.web.records import Attempt, Run

UTC = timezone.utc

_job = sa.bindparam("b_job")
_LATEST = sa.select(runs).where(runs.c.job == _job).order_by(runs.c.started_at.desc()).limit(1)
_SLOT_RUNS = (sa.select(runs).where(runs.c.job == _job, runs.c.slot.is_not(None))
              .order_by(runs.c.slot.desc(), runs.c.started_at.desc()).limit(sa.bindparam("b_limit")))
_RUN = sa.select(runs).where(runs.c.run_id == sa.bindparam("b_run_id"))
_CHAIN = (sa.select(runs).where(runs.c.job == _job, runs.c.slot == sa.bindparam("b_slot"))
          .order_by(runs.c.started_at))
_EXISTS = sa.select(runs.c.run_id).where(runs.c.job == _job).limit(1)


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def _run(row: Any) -> Run:
    m = row._mapping
    return Run(run_id=m["run_id"], job=m["job"], run_date=m["run_date"], slot=_aware(m["slot"]),
               trigger=m["trigger"], host=m["host"], pid=m["pid"],
               started=_aware(m["started_at"]),  # type: ignore[arg-type]
               ended=_aware(m["ended_at"]), status=m["status"], attempts=m["attempts"] or 0, rows=m["rows"] or 0,
               error=m["error"])


def _attempt(m: dict[str, Any]) -> Attempt:
    return Attempt(run_id=m["run_id"], task=m["task"], attempt=m["attempt"],
                   started=_aware(m["started_at"]),  # type: ignore[arg-type]
                   ended=_aware(m["ended_at"]), status=m["status"], rows=m["rows"], errno=m["errno"],
                   error=m["error"], statement=m.get("statement"), first_line=m.get("first_line"))


class Store:
    """The state store, read by the web. Thread-safe."""

    def __init__(self, url: str):
        self.url = url
        self.ledger = Ledger(url)

    @contextlib.contextmanager
    def reading(self) -> Iterator["Reader"]:
        """One connection for the reads of one request."""
        self.ledger.ensure_schema()
        with self.ledger.engine.connect() as conn:
            yield Reader(conn, self.ledger)

    def dispose(self) -> None:
        self.ledger.dispose()


class Reader:
    def __init__(self, conn: sa.Connection, ledger: Ledger):
        self.conn = conn
        self.ledger = ledger

    def latest(self, job: str) -> Run | None:
        row = self.conn.execute(_LATEST, {"b_job": job}).first()
        return _run(row) if row is not None else None

    def has_runs(self, job: str) -> bool:
        return self.conn.execute(_EXISTS, {"b_job": job}).first() is not None

    def slot_runs(self, job: str, limit: int) -> list[Run]:
        """The runs of the job's newest slots, newest slot first (at most `limit` runs)."""
        return [_run(r) for r in self.conn.execute(_SLOT_RUNS, {"b_job": job, "b_limit": limit})]

    def runs(self, job: str | None = None, status: str | None = None, since: datetime | None = None,
             limit: int = 100, before: datetime | None = None) -> list[Run]:
        """Runs newest first, filtered by job, status and start time."""
        q = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        for cond in self._filters(job, status, since, before):
            q = q.where(cond)
        return [_run(r) for r in self.conn.execute(q)]

    def count(self, job: str | None = None, status: str | None = None, since: datetime | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(runs)
        for cond in self._filters(job, status, since, None):
            q = q.where(cond)
        return int(self.conn.execute(q).scalar_one())

    @staticmethod
    def _filters(job: str | None, status: str | None, since: datetime | None,
                 before: datetime | None) -> list[Any]:
        out = []
        if job is not None:
            out.append(runs.c.job == job)
        if status is not None:
            out.append(runs.c.status == status)
        if since is not None:
            out.append(runs.c.started_at >= _naive(since))
        if before is not None:
            out.append(runs.c.started_at < _naive(before))
        return out

    def run(self, run_id: str) -> Run | None:
        row = self.conn.execute(_RUN, {"b_run_id": run_id}).first()
        return _run(row) if row is not None else None

    def attempts(self, run_id: str) -> list[Attempt]:
        """Every attempt in order, with the statement a failed one failed in (as --history --run shows)."""
        return [_attempt(r) for r in self.ledger.attempt_details(run_id)]

    def first_seen(self, jobs: Sequence[str]) -> dict[str, datetime]:
        """When a runner (--due, the daemon) first looked at each job: no slot before it is due."""
        return JobState(self.ledger).first_seen(jobs)

    def paused(self, jobs: Sequence[str]) -> dict[str, Pause]:
        """The pauses in force of the jobs (one query)."""
        return JobState(self.ledger).paused(jobs)

    def notifications(self, run_id: str) -> list[Alert]:
        """The alerts about the run: sent, pending in the outbox, or given up on."""
        return Outbox(self.ledger).of_run(run_id)

    def slot_chain(self, run: Run) -> list[Run]:
        """Every run of the run's slot, oldest first (a failed run, its re-runs)."""
        if run.slot is None:
            return [run]
        return [_run(r) for r in self.conn.execute(_CHAIN, {"b_job": run.job, "b_slot": _naive(run.slot)})]

    def watermarks(self, jobs: Mapping[str, Job], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The watermarks of the jobs named (all, without names) as --watermarks lists them: the loads
        of `jobs` with theirs, and every one the ledger keeps besides."""
        kept, changed = stored(self.ledger, names), last_changes(self.ledger, names)
        return listed({n: j for n, j in jobs.items() if names is None or n in names}, kept, changed)
