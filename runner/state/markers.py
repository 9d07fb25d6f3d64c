"""Exactly-once commit markers: a row per (run, task) written inside the task's own transaction.

When the connection is lost while COMMIT is in flight, the task may or may not have committed. The
marker row commits with the task or not at all, so after reconnecting its presence says which; its
primary key also makes a second commit of the same (run, task) impossible.
"""

from __future__ import annotations

import logging
import threading
import weakref
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runner import clock
from runner.config.statements import prepare
from runner.db.engines import create_tables, transaction_ended

log = logging.getLogger("runner.markers")

TABLE = "runner_task_markers"
KEEP_DAYS = 400  # the default of history_days: a run --history shows can be re-run without applying it twice
PRUNE_BATCH = 1000  # markers deleted per transaction

_metadata = sa.MetaData()
markers_table = sa.Table(
    TABLE, _metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("task", sa.String(128), primary_key=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("rows_affected", sa.BigInteger, nullable=False),
    sa.Column("committed_at", sa.DateTime, nullable=False),
)
# Old markers are found by it; a marker table made by an earlier version gets it when first used.
_committed_index = sa.Index("ix_runner_task_markers_committed", markers_table.c.committed_at)

_INSERT = (f"INSERT INTO {TABLE} (run_id, task, attempt, rows_affected, committed_at) "
           "VALUES (:run_id, :task, :attempt, :rows_affected, :committed_at)")
_SELECT = f"SELECT attempt, rows_affected FROM {TABLE} WHERE run_id = :run_id AND task = :task"
# A locking read waits for a transaction that still holds the marker row uncommitted (a COMMIT the
# server has not finished when the client already saw the connection drop) instead of missing it.
_SELECT_LOCKING = _SELECT + " LOCK IN SHARE MODE"

# PostgreSQL reads never wait for a writer: a probe insert of the same key does, until the transaction
# that holds it commits (conflict: the marker is there) or rolls back (the probe goes in, and is rolled back).
_PROBE = (f"INSERT INTO {TABLE} (run_id, task, attempt, rows_affected, committed_at) "
          "VALUES (:run_id, :task, 0, 0, :now) ON CONFLICT (run_id, task) DO NOTHING RETURNING 1")

# Engines whose marker table is known to exist (by identity: a disposed engine's id may be reused by an
# engine of another database).
_ready: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_lock = threading.Lock()


def ensure_table(engine: Engine, keep_days: int = KEEP_DAYS) -> None:
    """Create the marker table once per engine, and drop markers older than `keep_days` (the project's
    history_days: markers live as long as the runs they belong to)."""
    if engine in _ready:
        return
    with _lock:
        if engine in _ready:
            return
        create_tables(engine, markers_table, _committed_index)
        prune(engine, clock.now().replace(tzinfo=None) - timedelta(days=keep_days))
        _ready.add(engine)


def prune(engine: Engine, before: Any, batch: int = PRUNE_BATCH) -> int:
    """Delete the markers committed before `before`, `batch` per transaction (the target database is a
    user's: no long delete holds its locks). Returns how many."""
    key = sa.tuple_(markers_table.c.run_id, markers_table.c.task)
    deleted = 0
    while True:
        with engine.begin() as conn:
            old = conn.execute(sa.select(markers_table.c.run_id, markers_table.c.task)
                               .where(markers_table.c.committed_at < before).limit(batch)).all()
            if old:
                conn.execute(markers_table.delete().where(key.in_([tuple(r) for r in old])))
        deleted += len(old)
        if len(old) < batch:
            return deleted


def write(cursor: Any, dialect: Any, run_id: str, task: str, attempt: int, rows: int) -> None:
    """Insert the marker on the task's own cursor, inside its transaction."""
    params = {"run_id": run_id, "task": task, "attempt": attempt, "rows_affected": rows,
              "committed_at": clock.now().replace(tzinfo=None, microsecond=0)}
    cursor.execute(*prepare(_INSERT, dialect, params))


def find(engine: Engine, run_id: str, task: str) -> tuple[int, int] | None:
    """(attempt, rows) of the committed attempt of this (run, task), or None when none committed."""
    ensure_table(engine)  # a retry may come before any attempt got as far as creating it
    sql = _SELECT_LOCKING if engine.dialect.name in ("mysql", "mariadb") else _SELECT
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        row = None
        probe_went_in = False
        if engine.dialect.name == "postgresql":
            cur.execute(*prepare(_PROBE, engine.dialect, {"run_id": run_id, "task": task,
                                                          "now": clock.now().replace(tzinfo=None)}))
            probe_went_in = cur.fetchone() is not None
        if not probe_went_in:
            cur.execute(*prepare(sql, engine.dialect, {"run_id": run_id, "task": task}))
            row = cur.fetchone()
        cur.close()
        raw.rollback()  # a lookup writes nothing (the probe insert is undone)
        transaction_ended(raw)
    finally:
        raw.close()
    return (int(row[0]), int(row[1])) if row else None
