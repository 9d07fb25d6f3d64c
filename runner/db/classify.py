"""What a database error means: classification by MySQL error number (SQLite by result code).

Classify by number (`exc.orig.args[0]`), never by exception class: PyMySQL raises OperationalError
for a deadlock and for an unknown column alike. The retry policy (run/retry.py) acts on the verdict.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    DEADLOCK = "deadlock"
    LOCK_WAIT = "lock wait timeout"
    CONNECTION_LOST = "connection lost"
    KILLED = "connection killed / server shutting down"
    CANNOT_CONNECT = "cannot connect"
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
    kind: Kind
    errno: int | None
    retryable: bool
    disconnect: bool  # the connection is unusable: throw it away (and for FAILOVER, the whole pool)
    backoff: Backoff
    message: str

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
              "broken pipe", "connection reset")


def errno_of(exc: BaseException) -> tuple[int | None, str]:
    """The server's error number and text, looking through SQLAlchemy's wrapper."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    code = getattr(orig, "sqlite_errorcode", None)
    return (code if isinstance(code, int) else None), str(orig)


def classify_error(exc: BaseException) -> Verdict:
    """What an error means and what to do about it; see the table in ARCHITECTURE.md."""
    errno, text = errno_of(exc)
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.Error):
        return _classify_sqlite(orig, errno, text)
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
    Kind.KILLED: "the server killed the connection or is shutting down; check its log",
    Kind.FAILOVER: "the server is read-only (failover in progress?); point the url at the new primary or "
                   "widen retry.window",
    Kind.TOO_MANY: "the server refused new connections; lower pool.size or raise max_connections",
    Kind.DEADLOCK: "deadlocks persisted over every attempt; order the statements that touch the same rows "
                   "consistently, or raise retry.attempts",
    Kind.LOCK_WAIT: "another session holds the rows for too long; find it in SHOW PROCESSLIST",
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


