"""Timeouts enforced on the server: when time is up, the running statement is killed there.

Abandoning the client socket would leave the query running on the server; instead a separate
connection sends KILL QUERY for the task's connection (MySQL/MariaDB) or pg_cancel_backend for its
backend (PostgreSQL), or the SQLite connection is interrupted. The log says what was done, and only
that: on a database the runner cannot stop a statement on, it says so.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy.engine import Engine

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
        self._thread_id = dbapi_conn.thread_id() if is_mysql(engine) else None
        self._backend_pid = backend_pid(dbapi_conn) if engine.dialect.name == "postgresql" else None

    def __enter__(self) -> "Watchdog":
        if self.seconds is not None:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
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
                self._kill("run interrupted")

    def _kill(self, why: str) -> None:
        try:
            if self._thread_id is not None:
                kill_query(self.engine, self._thread_id)
                log.warning("%s: %s; statement killed on the server (KILL QUERY %d)", self.label, why,
                            self._thread_id)
            elif self._backend_pid is not None:
                if cancel_backend(self.engine, self._backend_pid):
                    log.warning("%s: %s; the server was asked to cancel the statement (pg_cancel_backend(%d))",
                                self.label, why, self._backend_pid)
                else:
                    log.error("%s: %s but backend %d could not be cancelled: it no longer exists", self.label,
                              why, self._backend_pid)
            elif self.engine.dialect.name == "sqlite":
                self.dbapi_conn.interrupt()
                log.warning("%s: %s; statement interrupted", self.label, why)
            else:
                log.error("%s: %s, but the runner cannot stop a statement on a %s database: it runs on until it "
                          "ends, and the task fails then", self.label, why, self.engine.dialect.name)
        except Exception as exc:  # the task still fails on its own when the server answers
            log.error("%s: %s but the statement could not be killed: %s", self.label, why, exc)


@contextmanager
def _side_connection(engine: Engine) -> Iterator[Any]:
    """A cursor on a fresh, unpooled connection to the engine's server (the pool may be exhausted or
    unhealthy), made with the engine's own driver arguments."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    cparams = {**cparams, **connect_args_of(engine), "connect_timeout": 5}
    conn = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
    try:
        cur = conn.cursor()
        yield cur
        cur.close()
        conn.commit()
    finally:
        conn.close()


def kill_query(engine: Engine, thread_id: int) -> None:
    """KILL QUERY for a MySQL/MariaDB connection, from a connection of its own."""
    with _side_connection(engine) as cur:
        cur.execute(f"KILL QUERY {int(thread_id)}")


def backend_pid(dbapi_conn: Any) -> int | None:
    """The PostgreSQL backend serving a connection (psycopg 3, or psycopg2)."""
    info = getattr(dbapi_conn, "info", None)
    pid = getattr(info, "backend_pid", None)
    if pid is None and hasattr(dbapi_conn, "get_backend_pid"):
        pid = dbapi_conn.get_backend_pid()
    return int(pid) if pid else None


def cancel_backend(engine: Engine, pid: int) -> bool:
    """pg_cancel_backend from a connection of its own; whether the backend was there to signal."""
    with _side_connection(engine) as cur:
        cur.execute("SELECT pg_cancel_backend(%s)", (int(pid),))
        return bool(cur.fetchone()[0])
