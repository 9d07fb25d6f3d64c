"""Retention: runs older than `history_days` (conf/runner.yml, default 400) leave the state store, with
their task attempts, origins and slot claims, in small batches (one short transaction each), so a
shared state store is never held for long and other hosts go on writing between the batches.

Each job keeps the claim of its latest slot, whatever its age: it is what tells the scheduler which
slots come after it. Exactly-once markers, kept in the target databases, follow the same retention
(markers.py), so every run that `--history` shows can be re-run without applying its committed tasks
twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from runner import clock
from runner.state.ledger import Ledger, attempts, origins, runs
from runner.state.slots import slots

log = logging.getLogger("runner.retention")

BATCH = 500  # runs per transaction
BUDGET = 5.0  # seconds of pruning per call; what is left is pruned by the next call


def cutoff_of(days: int, now: datetime) -> datetime:
    return (now - timedelta(days=days)).astimezone(timezone.utc).replace(tzinfo=None)


def prune_due(ledger: Ledger, days: int, now: datetime | None = None) -> bool:
    """Whether the ledger holds a run older than `days` days: one look at the oldest start (indexed)."""
    ledger.ensure_schema()
    with ledger.engine.connect() as conn:
        oldest = conn.execute(sa.select(sa.func.min(runs.c.started_at))).scalar()
    return oldest is not None and oldest < cutoff_of(days, now or clock.now())


def prune(ledger: Ledger, days: int, now: datetime | None = None, batch: int = BATCH,
          budget: float | None = BUDGET) -> tuple[int, int]:
    """Delete the runs older than `days` days, `batch` runs per transaction, for at most `budget`
    seconds (None: until none is left). Returns (runs deleted, transactions)."""
    from runner.state.jobstate import pauses  # only when a run is old enough: most calls end at prune_due
    from runner.state.watermarks import changes

    cutoff = cutoff_of(days, now or clock.now())
    ledger.ensure(slots, pauses, changes)
    started = clock.monotonic()
    deleted = batches = 0
    while budget is None or clock.monotonic() - started < budget:
        with ledger.engine.connect() as conn:
            old = conn.execute(sa.select(runs.c.run_id, runs.c.job, runs.c.slot).where(runs.c.started_at < cutoff)
                               .order_by(runs.c.started_at).limit(batch)).all()
            jobs = sorted({r.job for r in old})
            latest = {(r.job, r.slot) for r in conn.execute(
                sa.select(slots.c.job, sa.func.max(slots.c.slot).label("slot")).where(slots.c.job.in_(jobs))
                .group_by(slots.c.job))} if jobs else set()
        if not old:
            break
        ids = [r.run_id for r in old]
        claims = [(r.job, r.slot) for r in old if r.slot is not None and (r.job, r.slot) not in latest]
        with ledger._begin() as conn:
            conn.execute(attempts.delete().where(attempts.c.run_id.in_(ids)))
            conn.execute(origins.delete().where(origins.c.run_id.in_(ids)))
            if claims:
                conn.execute(slots.delete().where(sa.tuple_(slots.c.job, slots.c.slot).in_(claims),
                                                  slots.c.run_id.in_(ids)))
            conn.execute(runs.delete().where(runs.c.run_id.in_(ids)))
        deleted += len(ids)
        batches += 1
        if deleted and batches % 20 == 0:
            log.info("retention: %d run(s) older than %d days pruned so far", deleted, days)
        if len(old) < batch:
            break
    with ledger._begin() as conn:  # the small tables: in one go
        conn.execute(pauses.delete().where(pauses.c.resumed_at < cutoff))
        conn.execute(changes.delete().where(changes.c.changed_at < cutoff))
    if deleted:
        log.info("retention: %d run(s) older than %d days (history_days) pruned, with their attempts, in %d "
                 "batch(es)", deleted, days, batches)
    return deleted, batches


def prune_if_due(ledger: Ledger, days: int) -> int:
    """Prune when a run is older than the retention (cheap to ask); a failure is logged, never raised:
    retention must not fail the run or the look that calls it."""
    try:
        if prune_due(ledger, days):
            return prune(ledger, days)[0]
    except Exception as exc:  # e.g. the shared state store went away meanwhile: the next call tries again
        log.warning("retention: pruning runs older than %d days failed (%s: %s); the next call tries again",
                    days, type(exc).__name__, exc)
    return 0
