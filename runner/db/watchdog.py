"""Timeouts and stop requests enforced on the server: when time is up, or SIGTERM/SIGINT asks the run
to stop, the running statement is killed there.

Abandoning the client socket would leave the query running on the server; instead a separate
connection sends KILL QUERY for the task's connection (MySQL/MariaDB) or pg_cancel_backend for its
backend (PostgreSQL), or the SQLite connection is interrupted. The log says what happened on the
server (killed, nothing running any more, the connection already gone), and only that: on a database
the runner cannot stop a statement on, it says so.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy.engine import Engine

from runner import stop
from runner.db.engines import connect_args_of, is_mysql

log = logging.getLogger("runner.watchdog")


class Watchdog:
    """Kills the statement running on `dbapi_conn` once `seconds` have passed (unless stopped first)."""

    def __init__(self, engine: Engine, dbapi_conn: Any, seconds: float | None, label: str):
        self.engine = engine
        self.dbapi_conn = dbapi_conn
        self.seconds = seconds
        self.label = label
        self.fired = False
        self._timer: threading.Timer | None = None
        # Held while killing: once the task leaves the watchdog, its connection may go back to the
        # pool and serve another task, whose statement a late KILL QUERY must not hit.
        self._lock = threading.Lock()
        self._stopped = False
        self._killed = False
        self._thread_id = dbapi_conn.thread_id() if is_mysql(engine) else None
        self._on_stop = stop.on_stop(self.interrupt)
        self._backend_pid = backend_pid(dbapi_conn) if engine.dialect.name == "postgresql" else None

    def __enter__(self) -> "Watchdog":
        stop.check()  # a run asked to stop starts no statement
        if self.seconds is not None:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        self._on_stop.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._on_stop.__exit__(None, None, None)
        if self._timer is not None:
            self._timer.cancel()
        if exc_type is not None and not issubclass(exc_type, Exception):
            # Ctrl-C or SIGTERM: a statement left running on the server would keep its locks.
            self.interrupt()
        with self._lock:
            self._stopped = True

    def _fire(self) -> None:
        with self._lock:
            if not self._stopped:
                self.fired = True
                self._kill(f"timeout of {self.seconds}s reached")

    def interrupt(self) -> None:
        """Kill the running statement now (the run is being interrupted)."""
        with self._lock:
            if not self._stopped:
                self._kill(stop.reason() if stop.requested() else "run interrupted")

    def _kill(self, why: str) -> None:
        if self._killed:
            return
        self._killed = True
        try:
            if self._thread_id is not None:
                outcome = kill_query(self.engine, self._thread_id)
            elif self._backend_pid is not None:
                outcome = cancel_backend(self.engine, self._backend_pid)
            elif self.engine.dialect.name == "sqlite":
                self.dbapi_conn.interrupt()
                outcome = "; statement interrupted (SQLite)"
            else:
                outcome = (f"; the runner cannot stop a statement on a {self.engine.dialect.name} database: it runs "
                           "on until it ends")
            where = f" (connection {self._thread_id} to {self.engine.url.database})" if self._thread_id else ""
            log.warning("%s: %s%s%s", self.label, why, outcome, where)
        except Exception as exc:  # the task still fails on its own when the server answers
            log.error("%s: %s but the statement could not be killed: %s", self.label, why, exc)


KILLED = "; statement killed on the server"
IDLE = "; no statement was running any more on the server"
GONE = "; its connection had already ended on the server, and the statement with it"
_UNKNOWN_THREAD = 1094


@contextmanager
def _side_connection(engine: Engine) -> Iterator[Any]:
    """A cursor on a fresh, unpooled connection to the engine's server (the pool may be exhausted or
    unhealthy), made with the engine's own driver arguments."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    cparams = {**cparams, **connect_args_of(engine), "connect_timeout": 5}
    connect = engine.dialect.loaded_dbapi.connect
    if engine.dialect.driver == "pymysql":
        from runner.db.localinfile import GuardedConnection as connect  # type: ignore[assignment]
    conn = connect(*cargs, **cparams)
    try:
        cur = conn.cursor()
        yield cur
        cur.close()
        conn.commit()
    finally:
        conn.close()


def kill_query(engine: Engine, thread_id: int) -> str:
    """KILL QUERY for a MySQL/MariaDB connection, from a connection of its own; says what it found on
    the server (KILLED, IDLE or GONE)."""
    with _side_connection(engine) as cur:
        cur.execute(f"SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = {int(thread_id)}")
        row = cur.fetchone()
        if row is None:
            return GONE
        if str(row[0]) == "Sleep":
            return IDLE
        try:
            cur.execute(f"KILL QUERY {int(thread_id)}")
        except Exception as exc:
            if getattr(exc, "args", (None,))[0] == _UNKNOWN_THREAD:  # it ended between the two statements
                return GONE
            raise
        return KILLED


def backend_pid(dbapi_conn: Any) -> int | None:
    """The PostgreSQL backend serving a connection (psycopg 3, or psycopg2)."""
    info = getattr(dbapi_conn, "info", None)
    pid = getattr(info, "backend_pid", None)
    if pid is None and hasattr(dbapi_conn, "get_backend_pid"):
        pid = dbapi_conn.get_backend_pid()
    return int(pid) if pid else None


def cancel_backend(engine: Engine, pid: int) -> str:
    """pg_cancel_backend from a connection of its own; says what it found on the server."""
    with _side_connection(engine) as cur:
        cur.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (int(pid),))
        row = cur.fetchone()
        if row is None:
            return GONE
        if row[0] != "active":
            return IDLE
        cur.execute("SELECT pg_cancel_backend(%s)", (int(pid),))
        if not cur.fetchone()[0]:
            return GONE
        return f"; the server was asked to cancel the statement (pg_cancel_backend({int(pid)}))"
