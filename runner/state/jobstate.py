"""What the state store keeps about a job besides its runs: whether it is paused (who paused it, when and
why; a resume closes the pause and keeps it on record), and when the state store first saw it.

Every host sharing the state store sees the same: a pause made on one host is honoured by the daemon
and the cron lines of every other, from their next look at the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import sqlalchemy as sa

from runner import clock
from runner.state.ledger import Ledger, Timestamp, metadata, operator

pauses = sa.Table(
    "runner_pauses", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(128), nullable=False),
    sa.Column("paused_by", sa.String(255), nullable=False),
    sa.Column("paused_at", Timestamp, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("resumed_by", sa.String(255), nullable=True),
    sa.Column("resumed_at", Timestamp, nullable=True),
    sa.Index("ix_runner_pauses_job", "job", "resumed_at"),
)

# A job is caught up only for the slots after this moment (the first look of a --due or a daemon).
seen = sa.Table(
    "runner_jobs_seen", metadata,
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("first_seen", Timestamp, nullable=False),
)


@dataclass(frozen=True)
class Pause:
    """A pause of a job (--pause): who, when and why."""
    job: str
    by: str
    at: datetime
    reason: str

    def text(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"paused by {self.by} at {self.at.strftime('%Y-%m-%d %H:%M')} UTC{why}"


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None)


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


REASON_MAX = 500  # characters of a pause's reason


def reason_problem(reason: str) -> str | None:
    """Why a pause reason cannot be kept, or None. Line breaks and tabs are folded into spaces; another
    control character (a terminal escape shown by --list, a NUL PostgreSQL refuses) is refused."""
    if len(reason) > REASON_MAX:
        return f"the reason is {len(reason)} characters long; at most {REASON_MAX}"
    bad = next((c for c in reason if (ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        return f"the reason holds the control character {bad!r}: write it as plain text"
    return None


class JobState:
    """Pauses and first sightings of jobs, in the ledger's state store."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def _ready(self) -> None:
        self.ledger.ensure(pauses, seen)

    # -- pauses
    def pause(self, job: str, reason: str = "", by: str | None = None) -> tuple[Pause, bool]:
        """Pause the job; (the pause in force, whether this call made it). A job already paused stays
        paused as it was. `by`: who asks, when not this process's user (the web says who)."""
        current = self.paused([job]).get(job)
        if current is not None:
            return current, False
        now = _naive(clock.now())
        by = by or operator()
        self.ledger._write(pauses.insert(), dict(job=job, paused_by=by, paused_at=now, reason=reason or None))
        return Pause(job, by, _aware(now), reason), True

    def resume(self, job: str, by: str | None = None) -> Pause | None:
        """Close the job's pause; the pause it closed, or None when the job was not paused."""
        current = self.paused([job]).get(job)
        if current is None:
            return None
        self.ledger._write(pauses.update().where(pauses.c.job == job, pauses.c.resumed_at.is_(None))
                           .values(resumed_by=by or operator(), resumed_at=_naive(clock.now())))
        return current

    def paused(self, jobs: Sequence[str] | None = None) -> dict[str, Pause]:
        """The pauses in force (of the given jobs, or of all): one query."""
        self._ready()
        q = sa.select(pauses).where(pauses.c.resumed_at.is_(None)).order_by(pauses.c.paused_at)
        if jobs is not None:
            q = q.where(pauses.c.job.in_(list(jobs)))
        with self.ledger.engine.connect() as conn:
            return {r.job: Pause(r.job, r.paused_by, _aware(r.paused_at), r.reason or "") for r in conn.execute(q)}

    # -- first seen
    def first_seen(self, jobs: Sequence[str]) -> dict[str, datetime]:
        self._ready()
        q = sa.select(seen).where(seen.c.job.in_(list(jobs)))
        with self.ledger.engine.connect() as conn:
            return {r.job: _aware(r.first_seen) for r in conn.execute(q)}

    def see(self, jobs: Sequence[str], at: datetime) -> dict[str, datetime]:
        """Record `at` as the first sighting of the jobs not seen before; every job's first sighting."""
        known = self.first_seen(jobs)
        new = [j for j in jobs if j not in known]
        if new:
            rows = [dict(job=j, first_seen=_naive(at)) for j in new]
            try:
                with self.ledger._begin() as conn:
                    conn.execute(seen.insert(), rows)
            except sa.exc.IntegrityError:  # another process saw some of them at the same moment
                for row in rows:
                    try:
                        self.ledger._write(seen.insert(), row)
                    except sa.exc.IntegrityError:
                        pass
            known = self.first_seen(jobs)
        return known
