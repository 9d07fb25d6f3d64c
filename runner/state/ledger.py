"""The run ledger: every run, every task attempt, its outcome, rows and error, in the state store.

SQLite by default (`var/runner-state.db`); a shared MySQL/MariaDB `state_url` lets several hosts see
one history. Failure is data: reports and `--history` read these rows.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from runner import clock
from runner.db.engines import create_tables, make_engine, transaction_ended
from runner.model import Database, PoolSpec

metadata = sa.MetaData()

runs = sa.Table(
    "runner_runs", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("job", sa.String(128), nullable=False),
    sa.Column("run_date", sa.String(10), nullable=False),
    sa.Column("slot", sa.DateTime, nullable=True),
    sa.Column("trigger", sa.String(16), nullable=False, default="manual"),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_runner_runs_job_started", "job", "started_at"),
    sa.Index("ix_runner_runs_job_slot", "job", "slot"),
)

attempts = sa.Table(
    "runner_task_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("task", sa.String(128), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=True),
    sa.Column("errno", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

watermarks = sa.Table(
    "runner_watermarks", metadata,
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("task", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

HOST = socket.gethostname()

# Built once: a statement built per call (`.values(...)`) costs its cache key every time, ~3x the write.
_START_RUN = runs.insert()
_FINISH_RUN = runs.update().where(runs.c.run_id == sa.bindparam("b_run_id"))
_START_ATTEMPT = attempts.insert()
_FINISH_ATTEMPT = attempts.update().where(attempts.c.id == sa.bindparam("b_id"))


def _utc(dt: datetime | None) -> datetime | None:
    """Naive UTC for storage (both SQLite and MySQL DATETIME store it unambiguously)."""
    return dt.replace(tzinfo=None) if dt is not None and dt.tzinfo is not None else dt


@dataclass(frozen=True)
class TaskAttempt:
    run_id: str
    task: str
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    status: str
    rows: int | None
    errno: int | None
    error: str | None


class Ledger:
    """Reads and writes the state store. Thread-safe; each write is its own short transaction."""

    def __init__(self, url: str):
        self.url = url
        self.engine = self._engine(url)
        self._ready = False
        self._lock = threading.Lock()

    @staticmethod
    def _engine(url: str) -> sa.Engine:
        u = sa.make_url(url)
        if u.get_backend_name() == "sqlite":
            if u.database not in (None, "", ":memory:"):
                os.makedirs(os.path.dirname(u.database) or ".", exist_ok=True)
            engine = sa.create_engine(u, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        # The pool guard of the project's databases: no ping for a connection used within the last 500 ms
        # and no ROLLBACK after a COMMIT, which halves the round trips of each ledger write (a shared
        # MySQL store pays them for every job of every host).
        engine, _guard = make_engine(Database("state store", url, PoolSpec(size=2, max_overflow=4),
                                              {"connect_timeout": 10}))

        @event.listens_for(engine, "commit")
        def _committed(conn: sa.Connection) -> None:
            transaction_ended(conn.connection)

        return engine

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                create_tables(self.engine, *metadata.sorted_tables)
                self._ready = True

    def _write(self, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        self.ensure_schema()
        with self.engine.begin() as conn:
            return conn.execute(stmt, params)

    # -- runs
    def start_run(self, run_id: str, job: str, run_date: str, trigger: str = "manual",
                  slot: datetime | None = None, status: str = "running") -> None:
        self._write(_START_RUN, dict(run_id=run_id, job=job, run_date=run_date, slot=_utc(slot), trigger=trigger,
                                     host=HOST, pid=os.getpid(), started_at=_utc(clock.now()), status=status,
                                     attempts=0, rows=0))

    def finish_run(self, run_id: str, status: str, attempts_made: int, rows: int, error: str | None = None) -> None:
        self._write(_FINISH_RUN, dict(b_run_id=run_id, ended_at=_utc(clock.now()), status=status,
                                      attempts=attempts_made, rows=rows, error=error))

    # -- task attempts
    def start_attempt(self, run_id: str, task: str, attempt: int) -> int:
        result = self._write(_START_ATTEMPT, dict(run_id=run_id, task=task, attempt=attempt,
                                                  started_at=_utc(clock.now()), status="running"))
        return int(result.inserted_primary_key[0])

    def finish_attempt(self, attempt_id: int, status: str, rows: int | None = None, errno: int | None = None,
                       error: str | None = None) -> None:
        self._write(_FINISH_ATTEMPT, dict(b_id=attempt_id, ended_at=_utc(clock.now()), status=status, rows=rows,
                                          errno=errno, error=error))

    # -- reading
    def history(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        self.ensure_schema()
        q = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if job:
            q = q.where(runs.c.job == job)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def attempts_of(self, run_id: str) -> list[TaskAttempt]:
        self.ensure_schema()
        q = sa.select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.id)
        with self.engine.connect() as conn:
            return [TaskAttempt(**{k: v for k, v in r._mapping.items() if k != "id"}) for r in conn.execute(q)]

    def last_attempts(self, run_ids: list[str]) -> list[TaskAttempt]:
        """The last attempt of each task of the given runs, in the order the tasks started."""
        if not run_ids:
            return []
        self.ensure_schema()
        q = sa.select(attempts).where(attempts.c.run_id.in_(run_ids)).order_by(attempts.c.id)
        last: dict[tuple[str, str], TaskAttempt] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                last[(r.run_id, r.task)] = TaskAttempt(**{k: v for k, v in r._mapping.items() if k != "id"})
        return list(last.values())

    # -- watermarks (incremental loads)
    def watermark(self, job: str, task: str) -> str | None:
        self.ensure_schema()
        q = sa.select(watermarks.c.value).where(watermarks.c.job == job, watermarks.c.task == task)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one_or_none()

    def set_watermark(self, job: str, task: str, value: str | None) -> None:
        self.ensure_schema()
        now = _utc(clock.now())
        with self.engine.begin() as conn:
            n = conn.execute(watermarks.update().where(watermarks.c.job == job, watermarks.c.task == task)
                             .values(value=value, updated_at=now)).rowcount
            if not n:
                conn.execute(watermarks.insert().values(job=job, task=task, value=value, updated_at=now))

    def dispose(self) -> None:
        self.engine.dispose()
