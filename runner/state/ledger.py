"""The run ledger: every run, every task attempt, its outcome, rows and error, in the state store.

SQLite by default (`var/runner-state.db`); a shared MySQL/MariaDB `state_url` lets several hosts see
one history. Failure is data: reports and `--history` read these rows.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event

from runner import clock
from runner.db.engines import create_tables, make_engine, transaction_ended
from runner.errors import StateStoreError, UsageError
from runner.model import Database, PoolSpec
from runner.state import failures

log = logging.getLogger("runner.ledger")

metadata = sa.MetaData()


class Timestamp(sa.types.TypeDecorator):
    """A moment in the state store, to the microsecond on every database: MySQL's DATETIME keeps whole
    seconds unless asked for more, and runs, attempts and claims a second apart or less must keep
    their order (`--history`, a run's attempts). A state store made by an earlier version keeps its
    whole-second columns: the README (conf/runner.yml) gives the ALTER that widens them."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME  # loaded already: the store is MySQL

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())


runs = sa.Table(
    "runner_runs", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("job", sa.String(128), nullable=False),
    sa.Column("run_date", sa.String(10), nullable=False),
    sa.Column("slot", Timestamp, nullable=True),
    sa.Column("trigger", sa.String(16), nullable=False, default="manual"),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("ended_at", Timestamp, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_runner_runs_job_started", "job", "started_at"),
    sa.Index("ix_runner_runs_job_slot", "job", "slot"),
)

# What `--history` sorts and filters on, and what pruning finds old runs by: without them, `--history`
# sorts every run of the ledger. Ledgers made before them get them when opened (UPGRADE_INDEXES).
_started_index = sa.Index("ix_runner_runs_started", runs.c.started_at)
_status_index = sa.Index("ix_runner_runs_status_started", runs.c.status, runs.c.started_at)

attempts = sa.Table(
    "runner_task_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("task", sa.String(128), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("ended_at", Timestamp, nullable=True),
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
    sa.Column("updated_at", Timestamp, nullable=False),
)

# Where a run came from, when there is more to it than its row says: the --param values and
# --from-task of a run by hand, and the run it re-ran (--rerun). A re-run repeats them.
origins = sa.Table(
    "runner_run_origins", metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("params", sa.Text, nullable=True),  # JSON object of the --param values
    sa.Column("from_task", sa.String(128), nullable=True),
    sa.Column("rerun_of", sa.String(32), nullable=True, index=True),
)

UPGRADE_INDEXES = (_started_index, _status_index)
# Alerts waiting to be sent, and those sent: one row per (event, target), written in the transaction
# that records the outcome it tells of (state/outbox.py reads and leases them).
notifications = sa.Table(
    "runner_notifications", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(128), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=True, index=True),
    sa.Column("slot", Timestamp, nullable=True),
    sa.Column("target", sa.String(128), nullable=False),  # the target's label, never its URL
    sa.Column("target_key", sa.String(32), nullable=False),  # digest of the URL (NotifyTarget.key)
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending | sent | expired | dropped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("sent_at", Timestamp, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("lease_until", Timestamp, nullable=True),
    sa.Column("lease_by", sa.String(300), nullable=True),  # "host pid" of the process sending it
    sa.Column("detail", sa.Text, nullable=True),
)

# Slots that were reported late: one row per slot, so `late` is raised once whoever looks.
late_slots = sa.Table(
    "runner_late_slots", metadata,
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("slot", Timestamp, primary_key=True),
    sa.Column("raised_at", Timestamp, nullable=False),
)

# Where a failed attempt failed: the statement's file:line and its first line.
attempt_statements = sa.Table(
    "runner_attempt_statements", metadata,
    sa.Column("attempt_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("statement", sa.String(600), nullable=False),
    sa.Column("first_line", sa.Text, nullable=True),
)

HOST = socket.gethostname()


def operator() -> str:
    """Who asks, as the state store records it: user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (a container without a passwd entry)
        user = f"uid{os.getuid()}"
    return f"{user}@{HOST}"

# Built once: a statement built per call (`.values(...)`) costs its cache key every time, ~3x the write.
_START_RUN = runs.insert()
_FINISH_RUN = runs.update().where(runs.c.run_id == sa.bindparam("b_run_id"))
_START_ATTEMPT = attempts.insert()
_FINISH_ATTEMPT = attempts.update().where(attempts.c.id == sa.bindparam("b_id"))
_ATTEMPT_STATEMENT = attempt_statements.insert()
_ALERT = notifications.insert()
_PREVIOUS = sa.select(runs.c.status).where(
    runs.c.job == sa.bindparam("b_job"), runs.c.run_id != sa.bindparam("b_run_id"),
    runs.c.status.in_(("success", "failed", "interrupted", "abandoned"))).order_by(runs.c.started_at.desc()).limit(1)


def _identity(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _utc(dt: datetime | None) -> datetime | None:
    """Naive UTC for storage (both SQLite and MySQL DATETIME store it unambiguously)."""
    return dt.replace(tzinfo=None) if dt is not None and dt.tzinfo is not None else dt


def alert_row(alert: dict[str, Any]) -> dict[str, Any]:
    """An outbox row from what an alert says (job, event, run_id, slot, target, target_key, detail)."""
    return dict(job=alert["job"], event=alert["event"], run_id=alert.get("run_id"), slot=_utc(alert.get("slot")),
                target=alert["target"], target_key=alert["target_key"], created_at=_utc(clock.now()),
                status="pending", attempts=0, sent_at=None, error=None, lease_until=None, lease_by=None,
                detail=alert.get("detail"))


@dataclass(frozen=True)
class TaskAttempt:
    """One attempt of a task, as the ledger records it."""
    run_id: str
    task: str
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    status: str
    rows: int | None
    errno: int | None
    error: str | None


# Pages each SQLite connection to the state store keeps (SQLite's default is 2,000 KiB). The daemon's pool
# holds up to 15 of them, and as the ledger grows each fills its own, so the daemon's memory grew with
# the ledger (bench/soak.py); what the ledger reads again is a few index pages per job, and the rest
# comes from the operating system's page cache.
SQLITE_CACHE_KIB = 256


def _server_store(url: str) -> Database:
    return Database("state store", url, PoolSpec(size=2, max_overflow=4), {"connect_timeout": 10})


class Ledger:
    """Reads and writes the state store. Thread-safe; each write is its own short transaction (on a
    server, a write of one statement commits itself: `_write`)."""

    def __init__(self, url: str, create: bool = True):
        """`create`: make the folder of a SQLite state store (False for commands that only read)."""
        self.url = url
        self.engine = self._engine(url, create)
        failures.watch(self.engine, url)
        self._ready = False
        self._lock = threading.Lock()
        self._more_ready: set[str] = set()
        self._identity: tuple[int, int] | None = None  # of the SQLite file the tables were made in
        self._writer: sa.Engine | None = None  # a server's writes of one statement (`_write`)

    @staticmethod
    def _engine(url: str, create: bool = True) -> sa.Engine:
        u = sa.make_url(url)
        if u.get_backend_name() == "sqlite":
            if create and u.database not in (None, "", ":memory:"):
                try:
                    os.makedirs(os.path.dirname(u.database) or ".", exist_ok=True)
                except OSError as exc:
                    raise StateStoreError(failures.describe(url, exc)) from None
            engine = sa.create_engine(u, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                cur.close()

            return engine
        # The pool guard of the project's databases: no ping for a connection used within the last 500 ms
        # and no ROLLBACK after a COMMIT, which halves the round trips of each ledger write (a shared
        # MySQL store pays them for every job of every host).
        engine, _guard = make_engine(_server_store(url))

        @event.listens_for(engine, "commit")
        def _committed(conn: sa.Connection) -> None:
            transaction_ended(conn.connection)

        return engine

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                ensure_tables(self.engine, metadata.sorted_tables, UPGRADE_INDEXES)
                self._identity = _identity(self.file)
                self._ready = True

    def ensure(self, *tables: sa.Table) -> None:
        """Tables of the state store kept beside the ledger's own (pauses, watermark changes, ...),
        created on first use by this ledger."""
        self.ensure_schema()
        wanted = [t for t in tables if t.name not in self._more_ready]
        if wanted:
            with self._lock:
                ensure_tables(self.engine, wanted)
                self._more_ready.update(t.name for t in wanted)

    def exists(self) -> bool:
        """Whether the state store holds a ledger yet; a read-only command (`--due --dry-run`, `--list`)
        asks before reading, so that it creates nothing, not even an empty SQLite file."""
        u = sa.make_url(self.url)
        if u.get_backend_name() == "sqlite":
            return bool(u.database) and u.database != ":memory:" and os.path.exists(u.database) \
                and sa.inspect(self.engine).has_table(runs.name)
        return sa.inspect(self.engine).has_table(runs.name)

    @property
    def file(self) -> str | None:
        """The SQLite file of the state store (None for a server or an in-memory database)."""
        u = sa.make_url(self.url)
        if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:") or u.database.startswith("file:"):
            return None
        return u.database

    def replaced(self) -> bool:
        """The SQLite file was deleted (or another put in its place) since its tables were made here:
        what is written now would go into a file no one can read any more."""
        return self._identity is not None and _identity(self.file) != self._identity

    def reopen(self) -> None:
        """Start over with the file now at the path (made anew when it is gone)."""
        self.engine.dispose()
        self._ready = False
        self._more_ready.clear()
        self.ensure_schema()

    def record_again(self, run_id: str, job: str, run_date: str, trigger: str, slot: datetime | None,
                     started_at: datetime, tasks: list[tuple[str, int, str, int, str | None]]) -> None:
        """The record of a run that is going, written again in a new file: its row (still running; its
        end is written as usual) and the last attempt of each task (name, attempt, status, rows, error)."""
        now = _utc(clock.now())
        with self.engine.begin() as conn:
            conn.execute(_START_RUN, dict(run_id=run_id, job=job, run_date=run_date, slot=_utc(slot), trigger=trigger,
                                          host=HOST, pid=os.getpid(), started_at=_utc(started_at), status="running",
                                          attempts=0, rows=0))
            for task, attempt, status, rows, error in tasks:
                conn.execute(_START_ATTEMPT, dict(run_id=run_id, task=task, attempt=attempt, started_at=now,
                                                  ended_at=now, status=status, rows=rows, error=error))
            self._record_claim(conn, run_id, job, run_date, trigger, slot)

    def _record_claim(self, conn: sa.Connection, run_id: str, job: str, run_date: str, trigger: str,
                      slot: datetime | None) -> None:
        """The slot's claim, for a ledger that keeps claims (SlotLedger)."""

    def _write(self, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        """A write of one statement, committed. On a server it goes through connections in autocommit
        mode: one round trip, where a transaction takes two (the statement, then COMMIT); a shared state
        store pays them for every attempt and run of every host."""
        self.ensure_schema()
        with self._committing() as conn:
            return conn.execute(stmt, params)

    def _committing(self) -> Any:
        """A connection whose statement is committed by the end of the `with`: a transaction on SQLite,
        an autocommit connection of the write pool on a server."""
        if self.engine.dialect.name == "sqlite":
            return self.engine.begin()
        return self._single().connect()

    def _single(self) -> sa.Engine:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    writer, _ = make_engine(_server_store(self.url), autocommit=True)
                    failures.watch(writer, self.url)  # before any thread can write through it
                    self._writer = writer
        return self._writer

    @contextlib.contextmanager
    def _begin(self, first: bool = False) -> Iterator[sa.Connection]:
        """One transaction of several writes (SlotLedger: in this process's turn of writers)."""
        self.ensure_schema()
        with self.engine.begin() as conn:
            yield conn

    # -- runs
    def start_run(self, run_id: str, job: str, run_date: str, trigger: str = "manual",
                  slot: datetime | None = None, status: str = "running") -> None:
        self._write(_START_RUN, dict(run_id=run_id, job=job, run_date=run_date, slot=_utc(slot), trigger=trigger,
                                     host=HOST, pid=os.getpid(), started_at=_utc(clock.now()), status=status,
                                     attempts=0, rows=0))

    def finish_run(self, run_id: str, status: str, attempts_made: int, rows: int, error: str | None = None,
                   alerts: Sequence[dict[str, Any]] = ()) -> None:
        """Record the run's outcome, and the alerts that tell of it in the same transaction (an alert
        is never lost between the two)."""
        values = dict(b_run_id=run_id, ended_at=_utc(clock.now()), status=status, attempts=attempts_made, rows=rows,
                      error=error)
        if not alerts:
            self._write(_FINISH_RUN, values)
            return
        with self._begin() as conn:
            conn.execute(_FINISH_RUN, values)
            conn.execute(_ALERT, [alert_row(a) for a in alerts])

    def previous_outcome(self, job: str, run_id: str) -> str | None:
        """How the job's run before `run_id` ended (success, failed, interrupted, abandoned)."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            return conn.execute(_PREVIOUS, {"b_job": job, "b_run_id": run_id}).scalar_one_or_none()

    # -- task attempts
    def start_attempt(self, run_id: str, task: str, attempt: int) -> int:
        result = self._write(_START_ATTEMPT, dict(run_id=run_id, task=task, attempt=attempt,
                                                  started_at=_utc(clock.now()), status="running"))
        return int(result.inserted_primary_key[0])

    def finish_attempt(self, attempt_id: int, status: str, rows: int | None = None, errno: int | None = None,
                       error: str | None = None, statement: tuple[str, str] | None = None,
                       run_id: str | None = None) -> None:
        """`statement`: (file:line, first line) of the statement a failed attempt failed in."""
        values = dict(b_id=attempt_id, ended_at=_utc(clock.now()), status=status, rows=rows, errno=errno, error=error)
        if statement is None or run_id is None:
            self._write(_FINISH_ATTEMPT, values)
            return
        with self._begin() as conn:
            conn.execute(_FINISH_ATTEMPT, values)
            conn.execute(_ATTEMPT_STATEMENT, dict(attempt_id=attempt_id, run_id=run_id, statement=statement[0][:600],
                                                  first_line=statement[1]))

    def record_origin(self, run_id: str, params: dict[str, str] | None = None, from_task: str | None = None,
                      rerun_of: str | None = None) -> None:
        """What a later --rerun of this run needs and its row does not say; nothing for a plain run."""
        if params or from_task or rerun_of:
            self._write(origins.insert(), dict(run_id=run_id, params=json.dumps(params) if params else None,
                                               from_task=from_task, rerun_of=rerun_of))

    # -- reading
    def history(self, job: str | None = None, limit: int = 50, status: str | None = None,
                since: datetime | None = None) -> list[dict[str, Any]]:
        """The latest runs, newest first; only the job's, the status's and those started since, when given."""
        self.ensure_schema()
        q = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if job:
            q = q.where(runs.c.job == job)
        if status:
            q = q.where(runs.c.status == status)
        if since is not None:
            q = q.where(runs.c.started_at >= _utc(since))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run with this id, or the one run whose id starts with it (`--history` shows 8 characters)."""
        found = self.find_runs(run_id, 2) if len(run_id) >= 4 else []
        exact = [r for r in found if r["run_id"] == run_id]
        if len(found) > 1 and not exact:
            raise UsageError(f"run id {run_id} is the start of more than one run: give more of it")
        return (exact or found or [None])[0]

    def origins_of(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """run id -> {params, from_task, rerun_of, rerun_as} for the runs that have an origin or a re-run."""
        if not run_ids:
            return {}
        self.ensure_schema()
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(sa.select(origins).where(origins.c.run_id.in_(run_ids))):
                out.setdefault(r.run_id, {}).update(params=json.loads(r.params) if r.params else {},
                                                     from_task=r.from_task, rerun_of=r.rerun_of)
            for r in conn.execute(sa.select(origins.c.run_id, origins.c.rerun_of)
                                  .where(origins.c.rerun_of.in_(run_ids))):
                out.setdefault(r.rerun_of, {}).setdefault("rerun_as", []).append(r.run_id)
        return out

    def attempts_of(self, run_id: str) -> list[TaskAttempt]:
        self.ensure_schema()
        q = sa.select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.id)
        with self.engine.connect() as conn:
            return [TaskAttempt(**{k: v for k, v in r._mapping.items() if k != "id"}) for r in conn.execute(q)]

    def find_runs(self, prefix: str, limit: int = 5) -> list[dict[str, Any]]:
        """The runs whose id starts with `prefix` (summaries show the first 8 characters)."""
        self.ensure_schema()
        q = sa.select(runs).where(runs.c.run_id.startswith(prefix, autoescape=True)).order_by(
            runs.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def attempt_details(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of the run in order, with the statement a failed one failed in."""
        self.ensure_schema()
        q = sa.select(attempts, attempt_statements.c.statement, attempt_statements.c.first_line).select_from(
            attempts.outerjoin(attempt_statements, attempt_statements.c.attempt_id == attempts.c.id)).where(
            attempts.c.run_id == run_id).order_by(attempts.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def last_successes(self, jobs: Sequence[str]) -> dict[str, datetime]:
        """When each job's latest successful run ended (UTC, naive)."""
        if not jobs:
            return {}
        self.ensure_schema()
        q = sa.select(runs.c.job, sa.func.max(runs.c.ended_at)).where(
            runs.c.job.in_(list(jobs)), runs.c.status == "success").group_by(runs.c.job)
        with self.engine.connect() as conn:
            return {job: ended for job, ended in conn.execute(q) if ended is not None}

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
        if self._writer is not None:
            self._writer.dispose()


def ensure_tables(engine: sa.Engine, tables: Any, indexes: Any = ()) -> None:
    """Create the tables that are missing (with their indexes), and the `indexes` that a table made by
    an earlier version lacks: one look at the schema, then only what is missing."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        present = set(inspector.get_table_names())
        missing = [t for t in tables if t.name not in present]
        named: dict[str, set[str]] = {}
        for ix in indexes:
            if ix.table.name in present and ix.table.name not in named:
                named[ix.table.name] = {i["name"] for i in inspector.get_indexes(ix.table.name)}
        upgrades = [ix for ix in indexes if ix.name not in named.get(ix.table.name, {ix.name})]
    if missing:
        create_tables(engine, *missing)
    for index in upgrades:
        log.info("state store: adding index %s to %s (once; a ledger made by an earlier version lacks it)",
                 index.name, index.table.name)
        create_tables(engine, index)
