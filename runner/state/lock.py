"""One run of a job at a time, whatever started it (daemon, cron, hand), on one host or several.

The lock lives with the state store: on MySQL/MariaDB a named lock (GET_LOCK), on PostgreSQL a session
advisory lock (pg_try_advisory_lock), each held on a lock connection outside the ledger's pool that
carries the locks of up to 50 jobs; on SQLite an flock() on a file beside the state database. A second
start fails with JobLocked (exit 3) naming the holder: host, pid and since when.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa

from runner import clock
from runner.db.engines import create_tables, guard_local_infile
from runner.errors import JobLocked, StateStoreError
from runner.state import failures
from runner.model import Project
from runner.state.ledger import HOST, Ledger, Timestamp

log = logging.getLogger("runner.lock")

_holders = sa.Table(
    "runner_lock_holders", sa.MetaData(),
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("connection_id", sa.BigInteger, nullable=True),
    sa.Column("since", Timestamp, nullable=False),
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
    got = job_locks(project, ledger, [job], trigger)[0]
    if isinstance(got, JobLocked):
        raise got
    with got as held:
        yield held


class Taken:
    """A job's lock, taken: `with` it to hold it for the block (or `close()` it), released at the end."""

    def __init__(self, held: Held, release: Callable[[], None]):
        self.held = held
        self._release: Callable[[], None] | None = release

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Held:
        return self.held

    def __exit__(self, *_exc: object) -> None:
        self.close()


def job_locks(project: Project, ledger: Ledger, jobs: Sequence[str], trigger: str = "manual") -> list[Taken | JobLocked]:
    """Take the locks of several jobs at once, without waiting: for each job, in order, its lock taken
    (each to be released on its own, see `Taken`) or the JobLocked naming its holder. On a server the
    locks a lock connection carries are taken in one statement and their holder rows written in one
    more, so claiming the slots of a thousand jobs does not start with two thousand round trips."""
    if ledger.engine.dialect.name in ("mysql", "mariadb"):
        return _server_locks(ledger, jobs, trigger, _MYSQL)
    if ledger.engine.dialect.name == "postgresql":
        return _server_locks(ledger, jobs, trigger, _POSTGRES)
    out: list[Taken | JobLocked] = []
    try:
        for job in jobs:
            cm = _file_lock(ledger, job, trigger)
            try:
                out.append(Taken(cm.__enter__(), functools.partial(cm.__exit__, None, None, None)))
            except JobLocked as exc:
                out.append(exc)
    except BaseException:
        _close(out)
        raise
    return out


def _close(taken: Sequence[Taken | JobLocked]) -> None:
    for t in taken:
        if isinstance(t, Taken):
            t.close()


_lock_dirs: dict[str, Path] = {}


def _lock_dir(ledger: Ledger) -> Path:
    path = _lock_dirs.get(ledger.url)
    if path is None:
        db = sa.make_url(ledger.url).database
        base = Path(db).parent if db and db != ":memory:" else Path(tempfile.gettempdir())
        path = base / "locks"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateStoreError(failures.describe(ledger.url, exc) + "; the job locks live in " + str(path)) from None
        _lock_dirs[ledger.url] = path
    return path


@contextlib.contextmanager
def _file_lock(ledger: Ledger, job: str, trigger: str) -> Iterator[Held]:
    lock_file = _lock_dir(ledger) / f"{job}.lock"
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateStoreError(failures.describe(ledger.url, exc) + "; the job locks live in "
                              + str(lock_file.parent)) from None
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


_set_holder: dict[str, Any] = {}


def _holder_upsert(dialect: str) -> Any:
    """The holder row written in one statement (built on first use: only MySQL and PostgreSQL state
    stores need their dialect, which a run on SQLite should not pay to import)."""
    stmt = _set_holder.get(dialect)
    if stmt is None:
        columns = [c.name for c in _holders.c if c.name != "job"]
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            new = pg_insert(_holders)
            stmt = new.on_conflict_do_update(index_elements=["job"], set_={c: new.excluded[c] for c in columns})
        else:
            from sqlalchemy.dialects.mysql import insert as my_insert

            new = my_insert(_holders)
            stmt = new.on_duplicate_key_update({c: new.inserted[c] for c in columns})
        _set_holder[dialect] = stmt
    return stmt
_holders_ready: set[str] = set()
_lock_engines: dict[str, sa.Engine] = {}


@dataclass(frozen=True)
class _LockSql:
    """A server's named lock: take it without waiting, see that this session still holds it, release it."""

    take: str
    held: str
    release: str
    session: str
    owner: str  # the session holding the lock (the holder row's connection_id), or NULL


_MYSQL = _LockSql("SELECT GET_LOCK(:n, 0)", "SELECT IS_USED_LOCK(:n) = CONNECTION_ID()", "SELECT RELEASE_LOCK(:n)",
                  "SELECT CONNECTION_ID()", "SELECT IS_USED_LOCK(:n)")
# An advisory lock's 64-bit key shows in pg_locks as classid (high half) and objid (low half).
_POSTGRES = _LockSql("SELECT pg_try_advisory_lock(:k)::int",
                     "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                     "AND granted AND classid = :hi AND objid = :lo AND objsubid = 1",
                     "SELECT pg_advisory_unlock(:k)", "SELECT pg_backend_pid()",
                     "SELECT (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND classid = :hi AND objid = :lo AND objsubid = 1 LIMIT 1)")


def advisory_key(name: str) -> int:
    """The signed 64-bit key of an advisory lock, from the lock's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _lock_params(name: str) -> dict[str, Any]:
    key = advisory_key(name)
    return {"n": name, "k": key, "hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}


def _lock_engine(ledger: Ledger) -> sa.Engine:
    """Connections for named locks, outside the ledger's small pool (the scheduler holds locks of many
    running jobs at once, and the pool would make the next job wait)."""
    engine = _lock_engines.get(ledger.url)
    if engine is None:
        engine = _lock_engines[ledger.url] = sa.create_engine(ledger.url, poolclass=sa.pool.NullPool,
                                                              connect_args={"connect_timeout": 10})
        guard_local_infile(engine)
        failures.watch(engine, ledger.url)
    return engine


# A server connection holds the named locks of up to LOCKS_PER_CONNECTION jobs (MySQL 5.7 and MariaDB
# 10.0.2 hold any number per connection): a daemon with 1,000 jobs due at one moment needs 20 connections,
# not 1,000 (max_connections is 151 by default), and `--due` over many jobs uses one throughout. A lost
# connection takes its locks with it; each job notices at its next check and stops.
LOCKS_PER_CONNECTION = 50
IDLE_CARRIERS = 2  # connections kept open, holding no lock, for the next locks


class _Carrier:
    """One lock connection and the locks it holds; its statements take turns."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        self.turn = threading.Lock()
        self.locks = 0  # held, or being taken
        self.used = False  # has held a lock before (the server may have closed it since)
        self.conn_id: Any = None

    @property
    def usable(self) -> bool:
        return not self.conn.invalidated and not self.conn.closed


_carriers: dict[str, list[_Carrier]] = {}
_carriers_lock = threading.Lock()
_held_here: set[tuple[str, str]] = set()  # (state store, job): a named lock is re-entrant on its connection


def _carrier(ledger: Ledger, want: int = 1) -> tuple[_Carrier, int]:
    """A carrier with room, and how many of the `want` locks it takes (reserved on it)."""
    with _carriers_lock:
        for c in _carriers.get(ledger.url, []):
            if c.usable and c.locks < LOCKS_PER_CONNECTION:
                room = min(want, LOCKS_PER_CONNECTION - c.locks)
                c.locks += room
                return c, room
    c = _Carrier(_lock_engine(ledger).connect().execution_options(isolation_level="AUTOCOMMIT"))
    room = c.locks = min(want, LOCKS_PER_CONNECTION)
    with _carriers_lock:
        _carriers.setdefault(ledger.url, []).append(c)
    return c, room


def _leave(ledger: Ledger, c: _Carrier) -> None:
    """A lock of the carrier is gone; a carrier holding none is closed unless kept for the next locks."""
    drop = []
    with _carriers_lock:
        c.locks -= 1
        mine, kept = _carriers.get(ledger.url, []), 0
        for x in list(mine):
            if x.locks:
                continue
            if x.usable and kept < IDLE_CARRIERS:
                kept += 1
                continue
            mine.remove(x)
            drop.append(x)
    for x in drop:
        _discard(x.conn)


def _discard(conn: sa.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.invalidate()  # never reuse a connection that may still hold a named lock
    with contextlib.suppress(Exception):
        conn.close()


def close_idle_locks(ledger: Ledger) -> None:
    """Close the lock connections of a state store that hold no lock (when its process is done with it)."""
    with _carriers_lock:
        mine = _carriers.get(ledger.url, [])
        drop = [c for c in mine if c.locks == 0]
        for c in drop:
            mine.remove(c)
    for c in drop:
        _discard(c.conn)


def _server_locks(ledger: Ledger, jobs: Sequence[str], trigger: str, sql: _LockSql) -> list[Taken | JobLocked]:
    ledger.ensure_schema()
    if ledger.url not in _holders_ready:
        create_tables(ledger.engine, _holders)
        _holders_ready.add(ledger.url)
    out: dict[int, Taken | JobLocked] = {}
    wanted: list[int] = []
    with _carriers_lock:
        for i, job in enumerate(jobs):
            if (ledger.url, job) in _held_here:
                out[i] = JobLocked(f"job {job} is already running in this process (host {HOST} pid {os.getpid()}); "
                                   "this start was skipped")
            else:
                _held_here.add((ledger.url, job))
                wanted.append(i)
    store = _store_name(ledger)
    params = {i: _lock_params(lock_name(store, jobs[i])) for i in wanted}
    taken: list[tuple[_Carrier, list[int], list[Any]]] = []  # (carrier, jobs, what GET_LOCK said of each)
    try:
        done = 0
        while done < len(wanted):
            c, room = _carrier(ledger, len(wanted) - done)
            batch = wanted[done:done + room]
            try:
                with c.turn:
                    text, binds = _many(sql.take, [params[i] for i in batch])
                    got = list(c.conn.execute(sa.text(text), binds).one())
                    if c.conn_id is None:
                        c.conn_id = c.conn.execute(sa.text(sql.session)).scalar()
            except sa.exc.DBAPIError:
                reused = c.used
                _discard(c.conn)
                for _ in batch:
                    _leave(ledger, c)
                if not reused:
                    raise
                continue  # the server closed it while it held no lock: the same jobs on another
            c.used = True
            taken.append((c, batch, got))
            done += len(batch)
        for c, batch, got in taken:
            won = [i for i, g in zip(batch, got) if g == 1]
            lost = [i for i, g in zip(batch, got) if g != 1]
            with c.turn:
                if won:
                    now = clock.now().replace(tzinfo=None)
                    c.conn.execute(_holder_upsert(ledger.engine.dialect.name),
                                   [dict(job=jobs[i], host=HOST, pid=os.getpid(), trigger=trigger,
                                         connection_id=c.conn_id, since=now) for i in won])
                rows = _holders_of(c.conn, [jobs[i] for i in lost], [params[i] for i in lost], sql) if lost else {}
            for i in won:
                out[i] = _holding(ledger, c, jobs[i], params[i], sql)
            for i in lost:
                out[i] = JobLocked(f"job {jobs[i]} is already running: {_holder_text(rows.get(jobs[i]))}; "
                                   "this start was skipped")
                _leave(ledger, c)
                with _carriers_lock:
                    _held_here.discard((ledger.url, jobs[i]))
    except BaseException:
        for c, batch, got in taken:  # every lock taken is released again
            for i, g in zip(batch, got):
                if i not in out:
                    if g == 1:
                        out[i] = _holding(ledger, c, jobs[i], params[i], sql)
                    else:
                        _leave(ledger, c)
        _close([out[i] for i in wanted if i in out])
        with _carriers_lock:
            for i in wanted:
                _held_here.discard((ledger.url, jobs[i]))
        raise
    return [out[i] for i in range(len(jobs))]


def _holders_of(conn: sa.Connection, jobs: Sequence[str], params: Sequence[dict[str, Any]],
                sql: _LockSql) -> dict[str, dict[str, Any]]:
    """The holder rows of locks held elsewhere, each only when it is the holding session's own: a row
    outlives its lock (a release does not delete it, which would cost the server a commit per job), and
    the next holder writes its row a round trip after taking the lock."""
    text, binds = _many(sql.owner, params)
    owners = dict(zip(jobs, conn.execute(sa.text(text), binds).one()))
    rows = conn.execute(sa.select(_holders).where(_holders.c.job.in_(list(jobs)))).mappings()
    return {r["job"]: dict(r) for r in rows
            if owners.get(r["job"]) is not None and r["connection_id"] == int(owners[r["job"]])}


def _many(stmt: str, params: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`SELECT f(:n)` for several locks in one statement: `SELECT f(:n_0), f(:n_1), ...`."""
    expr = stmt.removeprefix("SELECT ")
    used = [k for k in ("n", "k", "hi", "lo") if f":{k}" in expr]
    parts, binds = [], {}
    for j, p in enumerate(params):
        part = expr
        for k in used:
            part = part.replace(f":{k}", f":{k}_{j}")
            binds[f"{k}_{j}"] = p[k]
        parts.append(part)
    return "SELECT " + ", ".join(parts), binds


def _holding(ledger: Ledger, c: _Carrier, job: str, params: dict[str, Any], sql: _LockSql) -> Taken:
    """The lock of `job`, held by carrier `c`: how to see that it still is, and how to release it."""
    still, release = (sa.text(s).bindparams(**{k: v for k, v in params.items() if f":{k}" in s})
                      for s in (sql.held, sql.release))
    conn = c.conn

    # Task threads of a job with max_parallel > 1, and the jobs sharing the connection, check their
    # locks at once, and a connection serves one statement at a time: they take turns.
    def still_held() -> bool:
        with c.turn:
            if not c.usable:
                return False
            try:
                return conn.execute(still).scalar() == 1
            except sa.exc.SQLAlchemyError:  # lost, or not usable since it was lost (PendingRollbackError)
                return False

    def let_go() -> None:
        try:
            with c.turn:
                if c.usable:  # a lost connection took its lock with it
                    try:  # the holder row stays: it names a holder only while its session holds the lock
                        if conn.execute(release).scalar() not in (1, True):
                            _discard(conn)  # not released: the connection must not take other locks
                    except sa.exc.SQLAlchemyError:
                        _discard(conn)
        finally:
            _leave(ledger, c)
            with _carriers_lock:
                _held_here.discard((ledger.url, job))

    return Taken(Held(job, still_held), let_go)
