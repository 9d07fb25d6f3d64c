"""What a database error means: classification by MySQL error number, PostgreSQL SQLSTATE (SQLite by
result code).

Classify by number (`exc.orig.args[0]`) or SQLSTATE (`exc.orig.sqlstate`), never by exception class:
PyMySQL raises OperationalError for a deadlock and for an unknown column alike. Errors a driver raises
without a code (a refused connection, a host name that does not resolve, a connection that drops) are
recognised by their text. The retry policy (run/retry.py) acts on the verdict.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    DEADLOCK = "deadlock"
    SERIALIZATION = "serialization failure"
    LOCK_WAIT = "lock wait timeout"
    CONNECTION_LOST = "connection lost"
    KILLED = "connection killed / server shutting down"
    CANNOT_CONNECT = "cannot connect"
    UNKNOWN_HOST = "unknown host"
    FAILOVER = "failover in progress"
    TOO_MANY = "too many connections"
    TIMEOUT = "statement timed out / interrupted"
    PERMANENT = "data, schema, syntax or permission error"
    BUSY = "database is busy (locked)"
    UNKNOWN = "unclassified error"


class Backoff(Enum):
    NONE = 0
    SHORT = 1  # deadlocks: retry soon, with jitter so the two sides do not collide again
    NORMAL = 2
    LONG = 3  # too many connections: give the server room
    # The connection is gone: probe again every couple of seconds at most (a refused connect costs the
    # server nothing), so that a job goes on within moments of the server's return.
    RECONNECT = 4


RECONNECT_CAP = 2.0


@dataclass(frozen=True)
class Verdict:
    """What a database error means for the attempt: its kind, and whether to retry or reconnect."""
    kind: Kind
    errno: int | None
    retryable: bool
    disconnect: bool  # the connection is unusable: throw it away (and for FAILOVER, the whole pool)
    backoff: Backoff
    message: str
    sqlstate: str | None = None  # PostgreSQL's code of the error

    @property
    def code(self) -> str | None:
        """The error's code as the server documents it: MySQL's number or PostgreSQL's SQLSTATE."""
        return str(self.errno) if self.errno is not None else self.sqlstate

    @property
    def invalidate_pool(self) -> bool:
        """Drop every pooled connection: only a failover makes them all point at the wrong server."""
        return self.kind is Kind.FAILOVER


_TABLE: dict[int, tuple[Kind, bool, bool, Backoff]] = {}


def _rows(kind: Kind, errnos: tuple[int, ...], retry: bool, disconnect: bool, backoff: Backoff) -> None:
    for n in errnos:
        _TABLE[n] = (kind, retry, disconnect, backoff)


_rows(Kind.DEADLOCK, (1213,), True, False, Backoff.SHORT)
_rows(Kind.LOCK_WAIT, (1205,), True, False, Backoff.NORMAL)
_rows(Kind.CONNECTION_LOST, (2006, 2013, 2055, 2014, 4031), True, True, Backoff.RECONNECT)
_rows(Kind.KILLED, (1927, 1053), True, True, Backoff.RECONNECT)
_rows(Kind.CANNOT_CONNECT, (2002, 2003), True, True, Backoff.RECONNECT)
_rows(Kind.FAILOVER, (1290, 1047, 1836), True, True, Backoff.NORMAL)
_rows(Kind.TOO_MANY, (1040, 1203), True, True, Backoff.LONG)
_rows(Kind.TIMEOUT, (3024, 1969, 1317), False, False, Backoff.NONE)
_rows(Kind.PERMANENT, (2068, 1062, 1064, 1146, 1054, 1045, 1044, 1366, 1406, 1452, 1049, 1048, 1264, 1292, 1142,
                       1143, 1227, 1050, 1051, 1091, 1136, 1216, 1217, 1451, 1149, 1105),
      False, False, Backoff.NONE)

_LOST_TEXT = ("already closed", "connection was closed", "lost connection", "server has gone away",
              "broken pipe", "connection reset", "server closed the connection", "connection is closed",
              "connection is lost", "consuming input failed", "terminating connection", "ssl syscall error")
# A host name that does not resolve (PyMySQL reports it as 2003, libpq and mysqlclient as their own).
_UNKNOWN_HOST_TEXT = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
                      "could not translate host name", "failed to resolve host", "unknown mysql server host",
                      "no address associated with hostname", "getaddrinfo failed")

# PostgreSQL, by SQLSTATE (appendix A of its manual); classes by their first two characters below.
_SQLSTATE: dict[str, tuple[Kind, bool, bool, Backoff]] = {
    "40001": (Kind.SERIALIZATION, True, False, Backoff.SHORT),
    "40P01": (Kind.DEADLOCK, True, False, Backoff.SHORT),
    "55P03": (Kind.LOCK_WAIT, True, False, Backoff.NORMAL),  # lock_not_available (lock_timeout, NOWAIT)
    "57P01": (Kind.KILLED, True, True, Backoff.RECONNECT),  # admin_shutdown: pg_terminate_backend, a shutdown
    "57P02": (Kind.KILLED, True, True, Backoff.RECONNECT),  # crash_shutdown
    "57P03": (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT),  # cannot_connect_now: starting, stopping
    "25006": (Kind.FAILOVER, True, True, Backoff.NORMAL),  # read_only_sql_transaction: a standby
    "53300": (Kind.TOO_MANY, True, True, Backoff.LONG),
    "57014": (Kind.TIMEOUT, False, False, Backoff.NONE),  # query_canceled
    "08001": (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT),
    "08004": (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT),
}
_SQLSTATE_CLASSES: dict[str, tuple[Kind, bool, bool, Backoff]] = {
    "08": (Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT),  # connection exception
    "22": (Kind.PERMANENT, False, False, Backoff.NONE),  # data exception
    "23": (Kind.PERMANENT, False, False, Backoff.NONE),  # integrity constraint violation
    "42": (Kind.PERMANENT, False, False, Backoff.NONE),  # syntax error or access rule violation
    "28": (Kind.PERMANENT, False, False, Backoff.NONE),  # invalid authorization
    "3D": (Kind.PERMANENT, False, False, Backoff.NONE),  # invalid catalog name (no such database)
    "3F": (Kind.PERMANENT, False, False, Backoff.NONE),  # invalid schema name
    "2B": (Kind.PERMANENT, False, False, Backoff.NONE),  # dependent objects still exist
    "0A": (Kind.PERMANENT, False, False, Backoff.NONE),  # feature not supported
    "P0": (Kind.PERMANENT, False, False, Backoff.NONE),  # raised by PL/pgSQL
}
# libpq says these at connect time without a SQLSTATE.
_CONNECT_TEXT: tuple[tuple[str, tuple[Kind, bool, bool, Backoff]], ...] = (
    ("too many clients", (Kind.TOO_MANY, True, True, Backoff.LONG)),
    ("remaining connection slots are reserved", (Kind.TOO_MANY, True, True, Backoff.LONG)),
    ("the database system is", (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT)),  # starting up, shutting down
    ("password authentication failed", (Kind.PERMANENT, False, False, Backoff.NONE)),
    ("no pg_hba.conf entry", (Kind.PERMANENT, False, False, Backoff.NONE)),
    ("does not exist", (Kind.PERMANENT, False, False, Backoff.NONE)),  # database "x" / role "y"
    ("connection refused", (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT)),
    ("timeout expired", (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT)),
    ("no route to host", (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT)),
    ("could not connect", (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT)),
    ("connection failed", (Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT)),
)


def errno_of(exc: BaseException) -> tuple[int | None, str]:
    """The server's error number and text, looking through SQLAlchemy's wrapper."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    code = getattr(orig, "sqlite_errorcode", None)
    return (code if isinstance(code, int) else None), str(orig)


def sqlstate_of(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of an error (psycopg 3 `sqlstate`, psycopg2 `pgcode`), through SQLAlchemy's wrapper."""
    orig = getattr(exc, "orig", None) or exc
    if not type(orig).__module__.startswith("psycopg"):
        return None
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _unknown_host(text: str) -> bool:
    lowered = text.lower()
    return any(s in lowered for s in _UNKNOWN_HOST_TEXT)


def classify_error(exc: BaseException) -> Verdict:
    """What an error means and what to do about it; see the table in ARCHITECTURE.md."""
    errno, text = errno_of(exc)
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.Error):
        return _classify_sqlite(orig, errno, text)
    if type(orig).__module__.startswith("psycopg"):
        return _classify_postgres(exc, text)
    if errno == 2005 or (errno == 2003 and _unknown_host(text)):
        return Verdict(Kind.UNKNOWN_HOST, errno, False, True, Backoff.RECONNECT, text)
    if errno in _TABLE:
        kind, retry, disconnect, backoff = _TABLE[errno]
        if errno == 1290 and "read-only" not in text and "read_only" not in text:
            kind, retry, disconnect, backoff = Kind.PERMANENT, False, False, Backoff.NONE
        return Verdict(kind, errno, retry, disconnect, backoff, text)
    lowered = text.lower()
    if errno == 0 or any(s in lowered for s in _LOST_TEXT) or getattr(exc, "connection_invalidated", False) \
            or isinstance(orig, (ConnectionError, BrokenPipeError)):
        return Verdict(Kind.CONNECTION_LOST, errno, True, True, Backoff.RECONNECT, text or "connection lost")
    return Verdict(Kind.UNKNOWN if errno is not None else Kind.PERMANENT, errno, False, False, Backoff.NONE, text)


def _classify_postgres(exc: BaseException, text: str) -> Verdict:
    state = sqlstate_of(exc)
    row = _SQLSTATE.get(state or "") or _SQLSTATE_CLASSES.get((state or "")[:2])
    if row is not None:
        kind, retry, disconnect, backoff = row
        return Verdict(kind, None, retry, disconnect, backoff, text.strip(), state)
    lowered = text.lower()
    if state is None and _unknown_host(text):
        return Verdict(Kind.UNKNOWN_HOST, None, False, True, Backoff.RECONNECT, text.strip())
    if state is None and any(s in lowered for s in _LOST_TEXT):
        return Verdict(Kind.CONNECTION_LOST, None, True, True, Backoff.RECONNECT, text.strip())
    if state is None:
        for needle, (kind, retry, disconnect, backoff) in _CONNECT_TEXT:
            if needle in lowered:
                return Verdict(kind, None, retry, disconnect, backoff, text.strip())
    pgconn = getattr(getattr(exc, "orig", None) or exc, "pgconn", None)
    broken = pgconn is not None and pgconn.status != 0  # libpq's CONNECTION_BAD: the session is gone
    if getattr(exc, "connection_invalidated", False) or broken:
        return Verdict(Kind.CONNECTION_LOST, None, True, True, Backoff.RECONNECT, text.strip(), state)
    return Verdict(Kind.UNKNOWN if state else Kind.PERMANENT, None, False, False, Backoff.NONE, text.strip(), state)


def _classify_sqlite(orig: sqlite3.Error, errno: int | None, text: str) -> Verdict:
    primary = (errno or 0) & 0xFF
    if primary in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return Verdict(Kind.BUSY, errno, True, False, Backoff.SHORT, text)
    if isinstance(orig, sqlite3.OperationalError) and "interrupted" in text:
        return Verdict(Kind.TIMEOUT, errno, False, False, Backoff.NONE, text)
    return Verdict(Kind.PERMANENT, errno, False, False, Backoff.NONE, text)


HINTS: dict[Kind, str] = {
    Kind.PERMANENT: "fix the SQL, the schema or the data it names, then re-run",
    Kind.UNKNOWN: "look up the error number in the server's documentation; re-run once the cause is fixed",
    Kind.TIMEOUT: "the statement was stopped on the server; raise the task's timeout or make the statement "
                  "faster (set retry_timeouts: true to retry)",
    Kind.CONNECTION_LOST: "the server stayed unreachable for every attempt; check that it is up and the "
                          "network path to it, or widen retry.window",
    Kind.CANNOT_CONNECT: "check that the server is running and reachable (host, port, firewall), or widen "
                         "retry.window to ride out a restart",
    Kind.UNKNOWN_HOST: "the host name of the database's url does not resolve: check it for a typo in "
                       "conf/databases.yml (or RUNNER_DB_<NAME>_URL) and that DNS works on this host; it is "
                       "retried only when the same host was reached earlier in this process",
    Kind.KILLED: "the server killed the connection or is shutting down; check its log",
    Kind.FAILOVER: "the server is read-only (failover in progress?); point the url at the new primary or "
                   "widen retry.window",
    Kind.TOO_MANY: "the server refused new connections; lower pool.size or raise max_connections",
    Kind.SERIALIZATION: "serialization failures persisted over every attempt: concurrent transactions keep "
                        "touching the same rows; run the conflicting jobs apart, or raise retry.attempts",
    Kind.DEADLOCK: "deadlocks persisted over every attempt; order the statements that touch the same rows "
                   "consistently, or raise retry.attempts",
    Kind.LOCK_WAIT: "another session holds the rows for too long; find it in SHOW PROCESSLIST (PostgreSQL: "
                    "pg_stat_activity)",
    Kind.BUSY: "another writer holds the SQLite database; run fewer writers at once",
}


OUTAGE = frozenset({Kind.CANNOT_CONNECT, Kind.FAILOVER, Kind.TOO_MANY})


def server_away(verdict: Verdict, phase: str | None = None) -> bool:
    """The server is away (down, restarting, failing over, full) rather than the task failing.

    With a window, these are waited out until it closes, however many attempts that takes; `attempts`
    bounds the rest. A connection lost in the middle of a statement counts as an attempt: the
    statement itself may be what breaks it (a packet over max_allowed_packet, a crash), and if the
    server is really gone, the next attempt cannot connect and is waited out.
    """
    return verdict.kind in OUTAGE or (verdict.disconnect and phase == "connect")


