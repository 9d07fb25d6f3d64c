"""One run of a job at a time, whatever started it (daemon, cron, hand), on one host or several.

The lock lives with the state store: on MySQL/MariaDB a named lock (GET_LOCK) held on a dedicated
connection; on PostgreSQL a session advisory lock (pg_try_advisory_lock) likewise; on SQLite an flock()
on a file beside the state database. A second start fails with
JobLocked (exit 3) naming the holder: host, pid and since when.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from runner import clock
from runner.db.engines import create_tables
from runner.errors import JobLocked
from runner.model import Project
from runner.state.ledger import HOST, Ledger

log = logging.getLogger("runner.lock")

_holders = sa.Table(
    "runner_lock_holders", sa.MetaData(),
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("connection_id", sa.BigInteger, nullable=True),
    sa.Column("since", sa.DateTime, nullable=False),
)


_SINCE = "%Y-%m-%d %H:%M:%S UTC"


_NAME_LIMIT = 64  # MySQL refuses longer lock names
_DIGEST = 16  # hex characters of the digest: 64 bits


def lock_name(store: str, job: str) -> str:
    """The named lock of `job` in the state store named `store` (its database on the server). Named
    locks are server-wide, so the name carries a digest of both: two projects on one server, or two
    job names sharing their first 64 characters, never block each other. The job name leads, cut to
    fit, so the lock stays recognisable in the server's lock list."""
    digest = hashlib.sha256(f"{store}\0{job}".encode()).hexdigest()[:_DIGEST]
    return f"runner.{job}"[:_NAME_LIMIT - _DIGEST - 1] + "." + digest


def _store_name(ledger: Ledger) -> str:
    """The state store as every host sees it: the database holding its tables. The url's host, port
    and user may be written differently on each host sharing the store, so they are left out."""
    return sa.make_url(ledger.url).database or ""


class Held:
    """A lock held by this process; `verify()` says whether it is still held."""

    def __init__(self, job: str, check: Any = None):
        self.job = job
        self._check = check

    def verify(self) -> bool:
        return self._check() if self._check is not None else True


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (holder unknown)"
    since = info.get("since")
    if isinstance(since, datetime):  # MySQL's DATETIME: naive UTC
        since = since.strftime(_SINCE)
    return f"host {info.get('host')} pid {info.get('pid')} ({info.get('trigger', '?')}) since {since}"


@contextlib.contextmanager
def job_lock(project: Project, ledger: Ledger, job: str, trigger: str = "manual") -> Iterator[Held]:
    """Hold the job's lock for the duration of the block, or raise JobLocked naming the holder."""
    if ledger.engine.dialect.name in ("mysql", "mariadb"):
        with _server_lock(ledger, job, trigger, _MYSQL) as held:
            yield held
    elif ledger.engine.dialect.name == "postgresql":
        with _server_lock(ledger, job, trigger, _POSTGRES) as held:
            yield held
    else:
        with _file_lock(ledger, job, trigger) as held:
            yield held


_lock_dirs: dict[str, Path] = {}


def _lock_dir(ledger: Ledger) -> Path:
    path = _lock_dirs.get(ledger.url)
    if path is None:
        db = sa.make_url(ledger.url).database
        base = Path(db).parent if db and db != ":memory:" else Path(tempfile.gettempdir())
        path = base / "locks"
        path.mkdir(parents=True, exist_ok=True)
        _lock_dirs[ledger.url] = path
    return path


@contextlib.contextmanager
def _file_lock(ledger: Ledger, job: str, trigger: str) -> Iterator[Held]:
    lock_file = _lock_dir(ledger) / f"{job}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobLocked(f"job {job} is already running: {_holder_text(_read_note(fd))}; "
                            "this start was skipped") from None
        _write_note(fd, {"host": HOST, "pid": os.getpid(), "trigger": trigger,
                         "since": clock.now().strftime(_SINCE)})
        try:
            yield Held(job)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# The holder's note lives in the lock file itself, written by the holder only, in one write of a fixed
# size that replaces the previous note whole. (A note in a file of its own, replaced by rename, made
# creating files the slowest part of starting a scheduled run.) A torn read says "holder unknown".
_NOTE_SIZE = 512


def _read_note(fd: int) -> dict[str, Any] | None:
    try:
        doc = json.loads(os.pread(fd, _NOTE_SIZE, 0).decode().strip())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_note(fd: int, doc: dict[str, Any]) -> None:
    os.pwrite(fd, json.dumps(doc).encode()[:_NOTE_SIZE].ljust(_NOTE_SIZE), 0)


_holders_ready: set[str] = set()
_lock_engines: dict[str, sa.Engine] = {}


@dataclass(frozen=True)
class _LockSql:
    """A server's named lock: take it without waiting, see that this session still holds it, release it."""

    take: str
    held: str
    release: str
    session: str


_MYSQL = _LockSql("SELECT GET_LOCK(:n, 0)", "SELECT IS_USED_LOCK(:n) = CONNECTION_ID()", "SELECT RELEASE_LOCK(:n)",
                  "SELECT CONNECTION_ID()")
# An advisory lock's 64-bit key shows in pg_locks as classid (high half) and objid (low half).
_POSTGRES = _LockSql("SELECT pg_try_advisory_lock(:k)::int",
                     "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                     "AND granted AND classid = :hi AND objid = :lo AND objsubid = 1",
                     "SELECT pg_advisory_unlock(:k)", "SELECT pg_backend_pid()")


def advisory_key(name: str) -> int:
    """The signed 64-bit key of an advisory lock, from the lock's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _lock_params(name: str) -> dict[str, Any]:
    key = advisory_key(name)
    return {"n": name, "k": key, "hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}


def _lock_engine(ledger: Ledger) -> sa.Engine:
    """Connections for named locks, each opened for one lock and closed with it, never pooled: the
    scheduler holds one per running job, and the ledger's small pool would make the next job wait."""
    engine = _lock_engines.get(ledger.url)
    if engine is None:
        engine = _lock_engines[ledger.url] = sa.create_engine(ledger.url, poolclass=sa.pool.NullPool,
                                                              connect_args={"connect_timeout": 10})
    return engine


@contextlib.contextmanager
def _server_lock(ledger: Ledger, job: str, trigger: str, sql: _LockSql) -> Iterator[Held]:
    ledger.ensure_schema()
    if ledger.url not in _holders_ready:
        create_tables(ledger.engine, _holders)
        _holders_ready.add(ledger.url)
    params = _lock_params(lock_name(_store_name(ledger), job))
    take, still, release = (sa.text(s).bindparams(**{k: v for k, v in params.items() if f":{k}" in s})
                            for s in (sql.take, sql.held, sql.release))
    # A dedicated connection outside the pool: the lock lives and dies with it.
    conn = _lock_engine(ledger).connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        got = conn.execute(take).scalar()
        if got != 1:
            row = conn.execute(sa.select(_holders).where(_holders.c.job == job)).mappings().first()
            raise JobLocked(f"job {job} is already running: {_holder_text(dict(row) if row else None)}; "
                            "this start was skipped")
        conn_id = conn.execute(sa.text(sql.session)).scalar()
        conn.execute(_holders.delete().where(_holders.c.job == job))
        conn.execute(_holders.insert().values(job=job, host=HOST, pid=os.getpid(), trigger=trigger,
                                              connection_id=conn_id, since=clock.now().replace(tzinfo=None)))

        # Task threads of a job with max_parallel > 1 check the lock at once, and a connection serves one
        # statement at a time: interleaved, their packets look like a lost lock.
        turn = threading.Lock()

        def still_held() -> bool:
            with turn:
                if conn.invalidated:
                    return False
                try:
                    return conn.execute(still).scalar() == 1
                except sa.exc.SQLAlchemyError:  # lost, or not usable since it was lost (PendingRollbackError)
                    return False

        try:
            yield Held(job, still_held)
        finally:
            with turn:
                if not conn.invalidated:  # a lost connection took its lock with it
                    with contextlib.suppress(sa.exc.SQLAlchemyError):
                        conn.execute(_holders.delete().where(_holders.c.job == job,
                                                             _holders.c.connection_id == conn_id))
                        conn.execute(release)
    finally:
        with contextlib.suppress(Exception):
            conn.invalidate()  # never return a connection that held a named lock to the pool
        conn.close()
