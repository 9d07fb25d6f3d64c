"""One SQLAlchemy engine (pool) per named database, created on first use, that never hands out a dead
connection and costs no round trip when none is needed.

- A connection idle for less than `ping_skip_ms` is handed out as is; an older one is pinged
  (COM_PING) at checkout, and replaced when the ping fails.
- A connection idle for longer than the server's `wait_timeout` (read from the server on connect) is
  replaced without a ping: the server has already closed it.
- `recycle` is lowered below `wait_timeout` when it is not safely below it, and that is logged once.
- On return, ROLLBACK is sent unless the borrower ended its transaction itself (`transaction_ended`)
  and the server does not report one open (stock SQLAlchemy always sends one).
- Errors that mean the connection is gone (2006/2013 and friends, but also 1927/1053 killed, and
  1290 read-only/1047 failover, which SQLAlchemy does not know) invalidate that one connection, not
  the whole pool (one slow query hitting read_timeout must not cost every other connection); a
  failover drops the whole pool.
- A connection held longer than `leak_seconds` is reported while it is still held, and one dropped
  without being returned is reported when the garbage collector returns it; both name the job, task
  and the line that borrowed it.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import QueuePool

from runner import clock
from runner.config.urls import redact
from runner.db.classify import Kind, classify_error
from runner.model import Database, Project

log = logging.getLogger("runner.db")

SERVER_STATUS_IN_TRANS = 1
WAIT_TIMEOUT_MARGIN = 0.2  # replace a connection once it has been idle for 80% of wait_timeout
MYSQL_ONLY_ARGS = ("connect_timeout", "read_timeout", "write_timeout", "local_infile", "charset", "ssl")
_ENDED = "runner.transaction_ended"
# SQLAlchemy knows the lost-connection numbers; these say the same in other words (see the error table).
_DISCONNECT_KINDS = (Kind.CONNECTION_LOST, Kind.KILLED, Kind.FAILOVER)


def guard_local_infile(engine: Engine) -> None:
    """Every connection of a PyMySQL engine refuses a server's request for a local file (localinfile.py,
    imported only then: a run on SQLite does not load PyMySQL)."""
    if engine.dialect.driver == "pymysql":
        from runner.db.localinfile import guard

        guard(engine)


# Hosts a connection reached in this process: a name that stops resolving later is DNS failing for a
# while, not a typo (see Kind.UNKNOWN_HOST).
_reached: set[tuple[str | None, int | None]] = set()


def _host_of(url: sa.URL) -> tuple[str | None, int | None]:
    return url.host, url.port


def is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


@dataclass
class Borrow:
    """Who holds a pooled connection, for leak reports."""

    since: float
    where: str
    context: str
    holder: Any = None  # weak reference to the checked-out connection: dead once it was dropped
    timer: threading.Timer | None = None
    reported: bool = False


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


# Set by the executor around each task, read by leak reports.
current_context = threading.local()


def _context() -> str:
    return getattr(current_context, "label", "") or "(no task)"


def _borrow_site() -> str:
    """file:line of the first caller outside SQLAlchemy and this module (walks frames; no source read)."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if "sqlalchemy" not in filename and filename != __file__:
            return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "unknown"


def transaction_ended(raw: Any) -> None:
    """Tell the pool that the borrower of `raw` committed or rolled back: no ROLLBACK is needed on return.

    The driver's status flags cannot say it: after a plain SELECT, InnoDB holds a read snapshot open
    while PyMySQL still reports no transaction, and that snapshot would follow the connection to its
    next borrower.
    """
    raw.info[_ENDED] = True


class PoolGuard:
    """The pool events of one engine: health at checkout, cheap reset at return, leak tracking."""

    def __init__(self, db: Database, engine: Engine, autocommit: bool = False):
        self.db = db
        self.engine = engine
        self.autocommit = autocommit  # no transaction outlives a statement: nothing to roll back at return
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
        _reached.add(_host_of(self.engine.url))
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
        if self.recycle is not None and self.recycle > safe:
            if not self._warned_recycle:
                self._warned_recycle = True
                log.warning("database %s: pool recycle %gs is not safely below the server's wait_timeout %gs; "
                            "using %gs", self.db.name, self.recycle, wait_timeout, safe)
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
        info[_ENDED] = False
        self._track(record, proxy, now)

    # -- leaks: held too long (reported while held), or dropped without being returned
    def _track(self, record: Any, proxy: Any, now: float) -> None:
        borrow = Borrow(now, _borrow_site(), _context(), weakref.ref(proxy))
        limit = self.db.pool.leak_seconds
        if limit is not None:
            borrow.timer = threading.Timer(limit, self._held_too_long, (borrow,))
            borrow.timer.daemon = True
            borrow.timer.start()
        self.borrows.add(id(record), borrow)

    def _held_too_long(self, borrow: Borrow) -> None:
        borrow.reported = True
        log.warning("connection leak: a connection of database %s has been held for more than %ss "
                    "(pool.leak_seconds) by %s, borrowed at %s", self.db.name, self.db.pool.leak_seconds,
                    borrow.context, borrow.where)

    def on_checkin(self, dbapi_conn: Any, record: Any) -> None:
        now = clock.monotonic()
        record.info["last_used"] = now
        borrow = self.borrows.pop(id(record))
        if borrow is None:
            return
        if borrow.timer is not None:
            borrow.timer.cancel()
        if borrow.holder() is None:
            # SQLAlchemy returns a connection whose holder was garbage collected; ours died first.
            log.warning("connection leak: a connection of database %s was dropped without being returned "
                        "(held %.1fs) by %s, borrowed at %s", self.db.name, now - borrow.since, borrow.context,
                        borrow.where)
        elif borrow.reported:
            log.info("the connection of database %s reported as held too long came back after %.1fs (%s)",
                     self.db.name, now - borrow.since, borrow.context)

    # -- return: ROLLBACK unless the borrower ended its transaction and the server agrees none is open
    def on_reset(self, dbapi_conn: Any, record: Any, state: Any) -> None:
        if state.transaction_was_reset or not state.asyncio_safe or dbapi_conn is None or self.autocommit:
            return
        in_trans = self.mysql and (getattr(dbapi_conn, "server_status", 0) or 0) & SERVER_STATUS_IN_TRANS
        if record.info.get(_ENDED) and not in_trans:
            return
        dbapi_conn.rollback()


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


def on_error(context: sa.engine.ExceptionContext) -> None:
    """Errors through SQLAlchemy Connections: the error table decides what is a disconnect.

    A disconnect invalidates only the connection it happened on; only a failover (the server turned
    read-only) drops the whole pool, since every connection then points at the wrong server.
    """
    if context.original_exception is None:
        return
    verdict = classify_error(context.original_exception)
    if verdict.kind in _DISCONNECT_KINDS:
        context.is_disconnect = True
    if context.is_disconnect:
        context.invalidate_pool_on_disconnect = verdict.kind is Kind.FAILOVER


_connect_args: "weakref.WeakKeyDictionary[Engine, dict[str, Any]]" = weakref.WeakKeyDictionary()


def connect_args_of(engine: Engine) -> dict[str, Any]:
    """The driver arguments (timeouts, charset, ssl) the engine's own connections are made with."""
    return dict(_connect_args.get(engine, {}))


# Told how long each checkout waited for a connection: (database, seconds). Metrics listen here.
checkout_waits: list[Any] = []


class TimedQueuePool(QueuePool):
    """SQLAlchemy's QueuePool, timing how long a checkout waits for a connection (a free one, a new
    one, or the pool's timeout). Each engine gets a subclass naming its database (`timed_pool`), so
    the name survives the pool being recreated after a failover; it logs as a stock QueuePool."""

    database = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = logging.getLogger("sqlalchemy.pool.impl.QueuePool")

    def _do_get(self) -> Any:
        if not checkout_waits:
            return super()._do_get()
        start = clock.monotonic()
        try:
            return super()._do_get()
        finally:
            waited = clock.monotonic() - start
            for observe in list(checkout_waits):
                observe(self.database, waited)


def timed_pool(database: str) -> type[TimedQueuePool]:
    return type("TimedQueuePool", (TimedQueuePool,), {"database": database})


def make_engine(db: Database, autocommit: bool = False) -> tuple[Engine, PoolGuard]:
    """The engine of a database, with its pool guard. `autocommit` (a server): every statement commits
    itself, one round trip, with no COMMIT or ROLLBACK after it; for writes of one statement each."""
    url = make_url(db.url)
    kwargs: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None, "pool_recycle": -1}
    if autocommit and url.get_backend_name() != "sqlite":
        kwargs.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    if url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:"):
        kwargs["poolclass"] = timed_pool(db.name)
    if url.get_backend_name() != "sqlite":
        kwargs.update(pool_size=db.pool.size, max_overflow=db.pool.max_overflow, pool_timeout=db.pool.timeout)
    connect_args = dict(db.connect_args)
    if url.get_backend_name() not in ("mysql", "mariadb"):
        # The MySQL socket timeouts mean nothing to other drivers; keep one databases.yml for both.
        for key in MYSQL_ONLY_ARGS:
            if not (key == "connect_timeout" and url.get_backend_name() == "postgresql"):  # libpq has it too
                connect_args.pop(key, None)
    if url.get_backend_name() == "postgresql":
        connect_args.setdefault("connect_timeout", 10)
    if url.get_backend_name() in ("mysql", "mariadb"):
        connect_args.setdefault("connect_timeout", 10)
        connect_args.setdefault("charset", "utf8mb4")
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        from pathlib import Path

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args.setdefault("check_same_thread", False)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    guard_local_infile(engine)
    _connect_args[engine] = connect_args
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine)
    else:
        event.listen(engine, "handle_error", on_error)
    return engine, PoolGuard(db, engine, autocommit=kwargs.get("isolation_level") == "AUTOCOMMIT")


def create_tables(engine: Engine, *tables: Any, attempts: int = 6) -> None:
    """Create tables (and their indexes) unless present, tolerating another process that creates the
    same ones at the same moment (several runs starting together on a fresh state store). SQLite
    answers "database is locked" at once, without waiting, when two such processes upgrade their
    read of the schema to a write together: that is tried again after a pause."""
    for attempt in range(1, attempts + 1):
        try:
            for table in tables:
                table.create(engine, checkfirst=True)
            return
        except sa_exc.DBAPIError as exc:
            errno = getattr(exc.orig, "args", (None,))[0]
            text = str(exc.orig)
            # PostgreSQL: two CREATE TABLEs at once may collide on the type the table gets (pg_type's key)
            raced = errno in (1050, 1061) or "already exists" in text or "database is locked" in text \
                or "pg_type_typname" in text
            if attempt == attempts or not raced:
                raise
            if "database is locked" in text:
                clock.sleep(0.05 * attempt)


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

    def reached(self, name: str) -> bool:
        """Whether a connection to the host of database `name` succeeded earlier in this process."""
        return _host_of(make_url(self.project.databases[name].url)) in _reached

    def display(self, name: str) -> str:
        return f"{name} ({redact(self.project.databases[name].url)})"

    def pools(self) -> list[tuple[str, Any]]:
        """(database, pool) of every engine created so far."""
        with self._lock:
            return [(name, engine.pool) for name, (engine, _) in self._engines.items()]

    def dispose(self) -> None:
        with self._lock:
            for engine, _ in self._engines.values():
                engine.dispose()
            self._engines.clear()


def abandon(engine: Engine, raw: Any, exc: BaseException) -> None:
    """After a failure on a raw pooled connection: roll back, or throw the connection away when it is
    no longer usable (and the whole pool on a failover)."""
    verdict = classify_error(exc) if isinstance(exc, Exception) else None
    if verdict is None or verdict.disconnect:
        raw.invalidate(exc if isinstance(exc, Exception) else None)
        if verdict is not None and verdict.invalidate_pool:
            engine.dispose()
        return
    try:
        raw.rollback()
        transaction_ended(raw)
    except Exception as rollback_exc:
        raw.invalidate(rollback_exc)
