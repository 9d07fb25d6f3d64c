"""One SQLAlchemy engine (pool) per named database, created on first use, that never hands out a dead
connection and costs no round trip when none is needed.

- A connection idle for less than `ping_skip_ms` is handed out as is; an older one is pinged
  (COM_PING) at checkout, and replaced when the ping fails.
- A connection idle for longer than the server's `wait_timeout` (read from the server on connect) is
  replaced without a ping: the server has already closed it.
- `recycle` is lowered below `wait_timeout` when it is not safely below it, and that is logged once.
- On return, ROLLBACK is sent only when a transaction is really open (stock SQLAlchemy always sends one).
- Disconnects found by the executor invalidate that one connection, not the whole pool; a failover
  (read-only server) drops the whole pool.
"""

from __future__ import annotations

import logging
import threading
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc as sa_exc
from sqlalchemy.engine import Engine, make_url

from . import clock
from .model import Database, Project

log = logging.getLogger("runner.db")

SERVER_STATUS_IN_TRANS = 1
WAIT_TIMEOUT_MARGIN = 0.2
MYSQL_ONLY_ARGS = ("connect_timeout", "read_timeout", "write_timeout", "local_infile", "charset", "ssl")  # replace a connection once it has been idle for 80% of wait_timeout


def redact(url: str | sa.URL) -> str:
    """A URL fit for logs and messages: the password is replaced by ***."""
    try:
        return make_url(str(url) if not isinstance(url, sa.URL) else url).render_as_string(hide_password=True)
    except Exception:  # an unparsable url still must not leak: drop everything between : and @
        import re

        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


def is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


@dataclass
class Borrow:
    """Who holds a pooled connection, for leak reports."""

    since: float
    where: str
    context: str


class _Borrows:
    """Connections currently checked out, keyed by their pool record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, Borrow] = {}

    def add(self, key: int, borrow: Borrow) -> None:
        with self._lock:
            self._by_id[key] = borrow

    def pop(self, key: int) -> Borrow | None:
        with self._lock:
            return self._by_id.pop(key, None)

    def older_than(self, seconds: float) -> list[Borrow]:
        limit = clock.monotonic() - seconds
        with self._lock:
            return [b for b in self._by_id.values() if b.since < limit]


# Set by the executor around each task, read by leak reports.
current_context = threading.local()


def _context() -> str:
    return getattr(current_context, "label", "") or "(no task)"


def _borrow_site() -> str:
    for frame in reversed(traceback.extract_stack(limit=16)[:-3]):
        if "sqlalchemy" not in frame.filename and "/runner/db.py" not in frame.filename:
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "unknown"


class PoolGuard:
    """The pool events of one engine: health at checkout, cheap reset at return, leak tracking."""

    def __init__(self, db: Database, engine: Engine):
        self.db = db
        self.engine = engine
        self.mysql = is_mysql(engine)
        self.recycle = float(db.pool.recycle) if db.pool.recycle and db.pool.recycle > 0 else None
        self.skip = db.pool.ping_skip_ms / 1000.0
        self.borrows = _Borrows()
        self._warned_recycle = False
        self.pings = 0
        self.replaced = 0
        event.listen(engine, "connect", self.on_connect)
        event.listen(engine, "checkout", self.on_checkout)
        event.listen(engine, "checkin", self.on_checkin)
        event.listen(engine, "reset", self.on_reset)

    # -- connect: learn the server's idle limit
    def on_connect(self, dbapi_conn: Any, record: Any) -> None:
        now = clock.monotonic()
        record.info["born"] = now
        record.info["last_used"] = now
        if not self.mysql:
            return
        cur = dbapi_conn.cursor()
        try:
            cur.execute("SELECT @@SESSION.wait_timeout")
            wait_timeout = float(cur.fetchone()[0])
        finally:
            cur.close()
        dbapi_conn.commit()
        record.info["wait_timeout"] = wait_timeout
        self._check_recycle(wait_timeout)

    def _check_recycle(self, wait_timeout: float) -> None:
        safe = max(1.0, wait_timeout * (1 - WAIT_TIMEOUT_MARGIN))
        if self.recycle is None or self.recycle > safe:
            if not self._warned_recycle:
                self._warned_recycle = True
                log.warning("database %s: pool recycle %ss is not safely below the server's wait_timeout %ss; "
                            "using %ss", self.db.name, self.recycle, int(wait_timeout), int(safe))
            self.recycle = safe

    # -- checkout: never hand out a dead connection, ping only when the connection has been idle
    def on_checkout(self, dbapi_conn: Any, record: Any, proxy: Any) -> None:
        now = clock.monotonic()
        info = record.info
        idle = now - info.get("last_used", now)
        if self.recycle is not None and now - info.get("born", now) > self.recycle:
            self.replaced += 1
            raise sa_exc.DisconnectionError("connection older than recycle")
        if "wait_timeout" in info and idle >= info["wait_timeout"] * (1 - WAIT_TIMEOUT_MARGIN):
            self.replaced += 1
            raise sa_exc.DisconnectionError("connection idle for longer than the server's wait_timeout")
        if self.db.pool.pre_ping and idle > self.skip:
            self.pings += 1
            try:
                alive = self.engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:
                raise sa_exc.DisconnectionError(f"ping failed: {exc}") from exc
            if alive is False:
                raise sa_exc.DisconnectionError("ping failed")
        self.borrows.add(id(record), Borrow(now, _borrow_site(), _context()))
        weakref.finalize(proxy, self._dropped, id(record), record)

    def _dropped(self, key: int, record: Any) -> None:
        borrow = self.borrows.pop(key)
        if borrow is not None:
            log.warning("connection leak: a connection of database %s was dropped without being returned; "
                        "borrowed by %s at %s", self.db.name, borrow.context, borrow.where)

    def on_checkin(self, dbapi_conn: Any, record: Any) -> None:
        now = clock.monotonic()
        record.info["last_used"] = now
        borrow = self.borrows.pop(id(record))
        limit = self.db.pool.leak_seconds
        if borrow is not None and limit is not None and now - borrow.since > limit:
            log.warning("connection held for %.1fs (leak_seconds %s) in database %s by %s, borrowed at %s",
                        now - borrow.since, limit, self.db.name, borrow.context, borrow.where)

    # -- return: ROLLBACK only when a transaction is really open
    def on_reset(self, dbapi_conn: Any, record: Any, state: Any) -> None:
        if state.transaction_was_reset or not state.asyncio_safe:
            return
        if self.mysql and not (getattr(dbapi_conn, "server_status", SERVER_STATUS_IN_TRANS)
                               & SERVER_STATUS_IN_TRANS):
            return
        dbapi_conn.rollback()

    def held_too_long(self) -> list[Borrow]:
        limit = self.db.pool.leak_seconds
        return self.borrows.older_than(limit) if limit is not None else []


def _sqlite_transactions(engine: Engine) -> None:
    """Real transactions on SQLite: the driver's own BEGIN handling skips DDL (SQLAlchemy docs recipe)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def make_engine(db: Database) -> tuple[Engine, PoolGuard]:
    url = make_url(db.url)
    kwargs: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None, "pool_recycle": -1}
    if url.get_backend_name() != "sqlite":
        kwargs.update(pool_size=db.pool.size, max_overflow=db.pool.max_overflow, pool_timeout=db.pool.timeout)
    connect_args = dict(db.connect_args)
    if url.get_backend_name() not in ("mysql", "mariadb"):
        # The MySQL socket timeouts mean nothing to other drivers; keep one databases.yml for both.
        for key in MYSQL_ONLY_ARGS:
            connect_args.pop(key, None)
    if url.get_backend_name() in ("mysql", "mariadb"):
        connect_args.setdefault("connect_timeout", 10)
        connect_args.setdefault("charset", "utf8mb4")
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        from pathlib import Path

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args.setdefault("check_same_thread", False)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine)
    return engine, PoolGuard(db, engine)


def passwords(project: Project) -> list[str]:
    """The passwords in the project's database urls (for masking in logs)."""
    out = []
    for db in project.databases.values():
        try:
            pw = make_url(db.url).password
        except Exception:
            continue
        if pw:
            out.append(str(pw))
    return out


class Engines:
    """The engines of a project, one per named database, created lazily and thread-safely."""

    def __init__(self, project: Project):
        self.project = project
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[Engine, PoolGuard]] = {}

    def get(self, name: str) -> Engine:
        return self._entry(name)[0]

    def guard(self, name: str) -> PoolGuard:
        return self._entry(name)[1]

    def _entry(self, name: str) -> tuple[Engine, PoolGuard]:
        with self._lock:
            if name not in self._engines:
                self._engines[name] = make_engine(self.project.databases[name])
            return self._engines[name]

    def display(self, name: str) -> str:
        return f"{name} ({redact(self.project.databases[name].url)})"

    def dispose(self) -> None:
        with self._lock:
            for engine, _ in self._engines.values():
                engine.dispose()
            self._engines.clear()
