"""The outbox of alerts: rows of `runner_notifications`, written with the outcome they tell of (see
ledger.finish_run and the missed and abandoned records of slots.py), then leased by one process at a
time to be sent. A lease ends when it runs out, or at once when the process holding it on this host
is gone (SIGKILL, a crash): the next process sends the alert again. So an alert may be sent twice
after a crash, but is never lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import sqlalchemy as sa

from runner import clock
from runner.state.ledger import HOST, Ledger, alert_row, late_slots, notifications, runs

ME = f"{HOST} {os.getpid()}"
_PENDING = sa.select(notifications).where(notifications.c.status == "pending").order_by(notifications.c.id)
_LEASE = notifications.update().where(
    notifications.c.id == sa.bindparam("b_id"), notifications.c.status == "pending",
    sa.or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < sa.bindparam("b_now"),
           notifications.c.lease_by == sa.bindparam("b_old")))
_UPDATE = notifications.update().where(notifications.c.id == sa.bindparam("b_id"))
_SLOT_RUNS = sa.select(runs.c.run_id, runs.c.status, runs.c.started_at).where(
    runs.c.job == sa.bindparam("b_job"), runs.c.slot == sa.bindparam("b_slot")).order_by(runs.c.started_at)


@dataclass(frozen=True)
class Alert:
    """One outbox row."""

    id: int
    job: str
    event: str
    run_id: str | None
    slot: datetime | None
    target: str
    target_key: str
    created_at: datetime
    status: str
    attempts: int
    sent_at: datetime | None
    error: str | None
    lease_until: datetime | None
    lease_by: str | None
    detail: str | None


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None)


def _alive(lease_by: str | None) -> bool:
    """Whether the process holding a lease may still be sending: always, unless it ran on this host
    and is gone."""
    if not lease_by:
        return False
    host, _, pid = lease_by.rpartition(" ")
    if host != HOST or not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return lease_by == ME
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outbox:
    """Reads and leases the alerts of one state store (the ledger's engine and transactions)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def pending(self, limit: int = 500) -> list[Alert]:
        """Alerts not sent yet that no live process is sending, oldest first."""
        self.ledger.ensure_schema()
        now = _naive(clock.now())
        with self.ledger.engine.connect() as conn:
            rows = [Alert(**r._mapping) for r in conn.execute(_PENDING.limit(limit))]
        return [a for a in rows if a.lease_until is None or a.lease_until < now or not _alive(a.lease_by)]

    def lease(self, alerts: Sequence[Alert], seconds: float) -> list[Alert]:
        """Lease the alerts to this process for `seconds`; those another process leased first are left out."""
        now = _naive(clock.now())
        until = now + timedelta(seconds=seconds)
        won = []
        with self.ledger._begin() as conn:
            for a in alerts:
                if conn.execute(_LEASE, dict(b_id=a.id, b_now=now, b_old=a.lease_by or "", lease_until=until,
                                             lease_by=ME)).rowcount == 1:
                    won.append(a)
        return won

    def sent(self, alerts: Sequence[Alert]) -> None:
        now = _naive(clock.now())
        self._update(alerts, lambda a: dict(status="sent", sent_at=now, attempts=a.attempts + 1, error=None,
                                            lease_until=None, lease_by=None))

    def failed(self, alerts: Sequence[Alert], error: str) -> None:
        """Not sent this time: left pending (the next process, or the daemon's next look, tries again)."""
        self._update(alerts, lambda a: dict(attempts=a.attempts + 1, error=error[:2000], lease_until=None,
                                            lease_by=None))

    def close(self, alerts: Sequence[Alert], status: str, error: str) -> None:
        """Given up on (`expired`: too old to matter; `dropped`: its target is no longer configured)."""
        self._update(alerts, lambda a: dict(status=status, error=error[:2000], lease_until=None, lease_by=None))

    def _update(self, alerts: Sequence[Alert], values: Any) -> None:
        if not alerts:
            return
        with self.ledger._begin() as conn:
            for a in alerts:
                conn.execute(_UPDATE, dict(values(a), b_id=a.id))

    # -- reading, for --history
    def of_run(self, run_id: str) -> list[Alert]:
        self.ledger.ensure_schema()
        q = sa.select(notifications).where(notifications.c.run_id == run_id).order_by(notifications.c.id)
        with self.ledger.engine.connect() as conn:
            return [Alert(**r._mapping) for r in conn.execute(q)]

    def undelivered(self, limit: int = 50) -> list[Alert]:
        self.ledger.ensure_schema()
        with self.ledger.engine.connect() as conn:
            return [Alert(**r._mapping) for r in conn.execute(_PENDING.limit(limit))]

    # -- late slots
    def slot_runs(self, job: str, slot: datetime) -> list[tuple[str, str, datetime]]:
        """(run id, status, started) of every run of the slot, oldest first."""
        self.ledger.ensure_schema()
        with self.ledger.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(_SLOT_RUNS, {"b_job": job, "b_slot": _naive(slot)})]

    def late_raised(self, job: str, slot: datetime) -> bool:
        self.ledger.ensure_schema()
        q = sa.select(late_slots.c.job).where(late_slots.c.job == job, late_slots.c.slot == _naive(slot))
        with self.ledger.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def raise_late(self, job: str, slot: datetime, alerts: Sequence[dict[str, Any]]) -> bool:
        """Record that the slot is late, with its alerts, in one transaction; False when another look
        (this process, another one, another host) raised it first."""
        try:
            with self.ledger._begin() as conn:
                conn.execute(late_slots.insert(), dict(job=job, slot=_naive(slot), raised_at=_naive(clock.now())))
                if alerts:
                    conn.execute(notifications.insert(), [alert_row(a) for a in alerts])
        except sa.exc.IntegrityError:
            return False
        return True
