"""Watermarks as the operator sees them: every stored watermark of the ledger, and the changes made
by hand (`--watermark JOB.TASK --set VALUE | --reset`), each recorded with who, when and the value it
replaced. The values are the ledger's own text (runner.move.watermark reads and writes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import sqlalchemy as sa

from runner import clock
from runner.state.ledger import Ledger, Timestamp, metadata, operator, watermarks

changes = sa.Table(
    "runner_watermark_changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(128), nullable=False),
    sa.Column("task", sa.String(128), nullable=False),
    sa.Column("changed_at", Timestamp, nullable=False),
    sa.Column("changed_by", sa.String(255), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # set | reset
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=True),
    sa.Index("ix_runner_watermark_changes_job", "job", "task", "changed_at"),
)


@dataclass(frozen=True)
class Stored:
    """A task's watermark as the state store holds it."""
    job: str
    task: str
    text: str | None  # the ledger's text of the watermark state
    updated: datetime


@dataclass(frozen=True)
class Change:
    """A change of a watermark by hand (--watermark), for the record."""
    job: str
    task: str
    at: datetime
    by: str
    action: str
    old_text: str | None
    new_text: str | None


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def stored(ledger: Ledger, jobs: Sequence[str] | None = None) -> dict[tuple[str, str], Stored]:
    ledger.ensure_schema()
    q = sa.select(watermarks)
    if jobs is not None:
        q = q.where(watermarks.c.job.in_(list(jobs)))
    with ledger.engine.connect() as conn:
        return {(r.job, r.task): Stored(r.job, r.task, r.value, _aware(r.updated_at)) for r in conn.execute(q)}


def last_changes(ledger: Ledger, jobs: Sequence[str] | None = None) -> dict[tuple[str, str], Change]:
    """The latest change by hand of each watermark."""
    ledger.ensure(changes)
    q = sa.select(changes).order_by(changes.c.id)
    if jobs is not None:
        q = q.where(changes.c.job.in_(list(jobs)))
    with ledger.engine.connect() as conn:
        return {(r.job, r.task): Change(r.job, r.task, _aware(r.changed_at), r.changed_by, r.action, r.old_value,
                                        r.new_value) for r in conn.execute(q)}


def change(ledger: Ledger, job: str, task: str, new_text: str | None, action: str) -> Change:
    """Replace the watermark (None: remove it, so the next load starts from `initial`) and record the
    change, in one transaction."""
    ledger.ensure(changes)
    now = clock.now().astimezone(timezone.utc).replace(tzinfo=None)
    where = (watermarks.c.job == job, watermarks.c.task == task)
    with ledger._begin() as conn:
        old = conn.execute(sa.select(watermarks.c.value).where(*where)).scalar_one_or_none()
        if new_text is None:
            conn.execute(watermarks.delete().where(*where))
        elif not conn.execute(watermarks.update().where(*where).values(value=new_text, updated_at=now)).rowcount:
            conn.execute(watermarks.insert().values(job=job, task=task, value=new_text, updated_at=now))
        by = operator()
        conn.execute(changes.insert().values(job=job, task=task, changed_at=now, changed_by=by, action=action,
                                             old_value=old, new_value=new_text))
    return Change(job, task, _aware(now), by, action, old, new_text)
