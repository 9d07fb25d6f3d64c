"""Error classification and the retry policy, from tables: no server, no sleeping.

Every row of the error table in ARCHITECTURE.md is here, classified both as the driver raises it and
wrapped by SQLAlchemy. The backoff is checked by collecting the delays tenacity would sleep
(`sleep=delays.append`); the stop rule by handing it the elapsed time of a retry state.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa
import tenacity

from runner.model import RetrySpec
from runner.db.classify import Backoff, Kind, Verdict, classify_error, server_away
from runner.run.retry import build_retrying, describe_attempts

OP = pymysql.err.OperationalError
READ_ONLY = "The MariaDB server is running with the --read-only option so it cannot execute this statement"

# (exception as the driver raises it, kind, retried, connection unusable, backoff class)
TABLE = [
    (OP(1213, "Deadlock found when trying to get lock; try restarting transaction"), Kind.DEADLOCK, True, False,
     Backoff.SHORT),
    (OP(1205, "Lock wait timeout exceeded; try restarting transaction"), Kind.LOCK_WAIT, True, False,
     Backoff.NORMAL),
    (OP(2006, "MySQL server has gone away"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT),
    (OP(2013, "Lost connection to MySQL server during query"), Kind.CONNECTION_LOST, True, True,
     Backoff.RECONNECT),
    (OP(2055, "Lost connection to MySQL server at 'reading initial communication packet'"),
     Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT),
    (pymysql.err.InternalError(2014, "Command Out of Sync"), Kind.CONNECTION_LOST, True, True,
     Backoff.RECONNECT),
    (OP(4031, "The client was disconnected by the server because of inactivity"), Kind.CONNECTION_LOST, True,
     True, Backoff.RECONNECT),
    (pymysql.err.InterfaceError(0, ""), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT),
    (pymysql.err.Error("Already closed"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT),
    (OP(1927, "Connection was killed"), Kind.KILLED, True, True, Backoff.RECONNECT),
    (OP(1053, "Server shutdown in progress"), Kind.KILLED, True, True, Backoff.RECONNECT),
    (OP(2002, "Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)"),
     Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT),
    (OP(2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)"),
     Kind.CANNOT_CONNECT, True, True, Backoff.RECONNECT),
    (OP(1290, READ_ONLY), Kind.FAILOVER, True, True, Backoff.NORMAL),
    (OP(1047, "WSREP has not yet prepared node for application use"), Kind.FAILOVER, True, True, Backoff.NORMAL),
    (OP(1040, "Too many connections"), Kind.TOO_MANY, True, True, Backoff.LONG),
    (OP(1203, "User etl already has more than 'max_user_connections' active connections"), Kind.TOO_MANY, True,
     True, Backoff.LONG),
    (OP(3024, "Query execution was interrupted, maximum statement execution time exceeded"), Kind.TIMEOUT,
     False, False, Backoff.NONE),
    (OP(1969, "Query execution was interrupted (max_statement_time exceeded)"), Kind.TIMEOUT, False, False,
     Backoff.NONE),
    (OP(1317, "Query execution was interrupted"), Kind.TIMEOUT, False, False, Backoff.NONE),
    (pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"), Kind.PERMANENT, False, False,
     Backoff.NONE),
    (pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"), Kind.PERMANENT, False, False,
     Backoff.NONE),
    (pymysql.err.ProgrammingError(1146, "Table 'test.nope' doesn't exist"), Kind.PERMANENT, False, False,
     Backoff.NONE),
    (OP(1054, "Unknown column 'x' in 'field list'"), Kind.PERMANENT, False, False, Backoff.NONE),
    (OP(1045, "Access denied for user 'etl'@'localhost' (using password: YES)"), Kind.PERMANENT, False, False,
     Backoff.NONE),
    (OP(1044, "Access denied for user 'etl'@'%' to database 'shop'"), Kind.PERMANENT, False, False,
     Backoff.NONE),
    (pymysql.err.DataError(1366, "Incorrect integer value: 'x' for column 'id' at row 1"), Kind.PERMANENT, False,
     False, Backoff.NONE),
    (pymysql.err.DataError(1406, "Data too long for column 'name' at row 1"), Kind.PERMANENT, False, False,
     Backoff.NONE),
    (pymysql.err.IntegrityError(1452, "Cannot add or update a child row: a foreign key constraint fails"),
     Kind.PERMANENT, False, False, Backoff.NONE),
    (OP(1290, "The MariaDB server is running with the --secure-file-priv option"), Kind.PERMANENT, False, False,
     Backoff.NONE),
]


def _wrapped(exc: Exception) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError.instance("SELECT 1", {}, exc, pymysql.err.Error)


@pytest.mark.parametrize("exc, kind, retried, disconnect, backoff", TABLE, ids=lambda v: str(v)[:40])
def test_classify_error(exc: Exception, kind: Kind, retried: bool, disconnect: bool, backoff: Backoff) -> None:
    for seen in (exc, _wrapped(exc)):
        v = classify_error(seen)
        assert (v.kind, v.retryable, v.disconnect, v.backoff) == (kind, retried, disconnect, backoff)
        assert v.invalidate_pool is (kind is Kind.FAILOVER)
        if isinstance(exc.args[0], int):
            assert v.errno == exc.args[0]


def test_classify_by_number_not_by_exception_class() -> None:
    deadlock = classify_error(OP(1213, "Deadlock found"))
    unknown_column = classify_error(OP(1054, "Unknown column 'x'"))
    assert deadlock.retryable and not unknown_column.retryable


def test_unknown_server_error_fails_fast() -> None:
    v = classify_error(OP(1999, "something new"))
    assert (v.kind, v.retryable, v.errno) == (Kind.UNKNOWN, False, 1999)


def test_sqlite_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as syntax:
            other.execute("SELEC 1")
    finally:
        holder.close()
        other.close()
    assert classify_error(locked.value).kind is Kind.BUSY and classify_error(locked.value).retryable
    assert classify_error(syntax.value).kind is Kind.PERMANENT


# ------------------------------------------------------------------------------------------- waits

def _run(spec: RetrySpec, errors: list[Exception], retry_if: type = Exception) -> tuple[int, list[float]]:
    """Run a function failing with `errors` (then succeeding) under the policy; (calls, delays slept)."""
    delays: list[float] = []
    calls = 0

    def work() -> str:
        nonlocal calls
        calls += 1
        if calls <= len(errors):
            raise errors[calls - 1]
        return "done"

    retrying = build_retrying(spec, should_retry=lambda e: isinstance(e, retry_if) and classify_error(e).retryable,
                              sleep=delays.append)
    try:
        retrying(work)
    except Exception:
        pass
    return calls, delays


@pytest.mark.parametrize("errno, base, cap, multiplier, ceiling", [
    (2013, 0.5, 300.0, 0.5, 2.0),       # connection lost: exponential, but probing at least every 2s
    (2003, 0.5, 300.0, 0.5, 2.0),       # cannot connect: the same, to resume soon after the server is back
    (2003, 0.1, 1.0, 0.1, 1.0),         # ... never above the configured cap
    (1205, 0.5, 300.0, 0.5, 300.0),     # lock wait timeout: normal backoff
    (1290, 1.0, 10.0, 1.0, 10.0),       # failover: normal backoff
    (1213, 0.5, 300.0, 0.05, 2.0),      # deadlock: short, jittered, capped at 2s
    (1213, 0.01, 0.5, 0.01, 0.5),       # ... never above the configured cap
    (1040, 0.5, 300.0, 2.0, 300.0),     # too many connections: long backoff
])
def test_full_jitter_backoff_per_error_class(errno: int, base: float, cap: float, multiplier: float,
                                             ceiling: float) -> None:
    random.seed(7)
    spec = RetrySpec(attempts=9, base_delay=base, max_delay=cap)
    calls, delays = _run(spec, [OP(errno, READ_ONLY if errno == 1290 else "x")] * 8)
    assert calls == 9 and len(delays) == 8
    for n, d in enumerate(delays):
        assert 0 <= d <= min(ceiling, multiplier * 2 ** n)
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule


def test_backoff_follows_the_error_just_seen() -> None:
    random.seed(3)
    spec = RetrySpec(attempts=4, base_delay=10.0, max_delay=1000.0)
    _, delays = _run(spec, [OP(1213, "deadlock"), OP(1040, "too many"), OP(1213, "deadlock")])
    assert delays[0] <= 0.05 and delays[2] <= 0.2  # short backoff for both deadlocks
    assert delays[1] <= 80.0


@pytest.mark.parametrize("errors, calls, sleeps", [
    ([OP(1062, "Duplicate entry")], 1, 0),                     # permanent: one attempt
    ([OP(1317, "interrupted")], 1, 0),                         # timeout: fails fast
    ([OP(2013, "lost")] * 2, 3, 2),                            # retried, then success
    ([OP(2013, "lost")] * 10, 5, 4),                           # attempts exhausted
    ([OP(2013, "lost"), OP(1062, "Duplicate entry")], 2, 1),  # retried, then a permanent error stops it
])
def test_attempts(errors: list[Exception], calls: int, sleeps: int) -> None:
    made, delays = _run(RetrySpec(attempts=5, base_delay=0.01, max_delay=0.1), errors)
    assert (made, len(delays)) == (calls, sleeps)


# ------------------------------------------------------------------------------------------- stop

LOST = OP(2013, "Lost connection to MySQL server during query")
DOWN = OP(2003, "Can't connect to MySQL server")
DEADLOCK = OP(1213, "Deadlock found")


@pytest.mark.parametrize("error, attempt, elapsed, upcoming, attempts, window, stop", [
    (LOST, 1, 0.0, 0.5, 5, None, False),
    (LOST, 4, 100.0, 0.5, 5, None, False),      # no window: only attempts count
    (LOST, 5, 0.0, 0.5, 5, None, True),
    (DEADLOCK, 5, 0.0, 0.5, 5, None, True),
    (DOWN, 2, 10.0, 0.5, 100, 60.0, False),
    (DOWN, 2, 59.0, 0.5, 100, 60.0, False),
    (DOWN, 2, 59.6, 0.5, 100, 60.0, True),      # the next sleep would end past the window
    (DOWN, 3, 61.0, 0.0, 100, 60.0, True),
    (DEADLOCK, 5, 1.0, 0.5, 5, 60.0, True),     # attempts bound deadlocks even inside a window
    (OP(1205, "Lock wait timeout"), 5, 1.0, 0.5, 5, 60.0, True),
    (DOWN, 5, 1.0, 0.5, 5, 60.0, False),        # the server being away is waited out until the window closes
    (LOST, 5, 1.0, 0.5, 5, 60.0, True),         # lost mid-statement: an attempt (the statement may be the cause)
    (OP(1290, READ_ONLY), 9, 20.0, 0.5, 5, 60.0, False),
    (OP(1040, "Too many connections"), 9, 20.0, 0.5, 5, 60.0, False),
    (OP(1053, "Server shutdown in progress"), 9, 59.8, 0.5, 5, 60.0, True),
])
def test_stop_after_attempts_or_before_the_window_closes(error: Exception, attempt: int, elapsed: float,
                                                         upcoming: float, attempts: int, window: float | None,
                                                         stop: bool) -> None:
    retrying = build_retrying(RetrySpec(attempts=attempts, window=window), should_retry=lambda e: True,
                              sleep=lambda s: None)
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    state.set_exception((type(error), error, None))
    state.attempt_number = attempt
    state.start_time = 1000.0
    state.outcome_timestamp = 1000.0 + elapsed
    state.upcoming_sleep = upcoming
    assert retrying.stop(state) is stop


def test_a_new_policy_per_task_run() -> None:
    spec = RetrySpec(attempts=3)
    a = build_retrying(spec, should_retry=lambda e: True)
    b = build_retrying(spec, should_retry=lambda e: True)
    assert a is not b and a.statistics is not b.statistics


# ------------------------------------------------------------------------------------------- message

def _v(errno: int, kind: Kind) -> Verdict:
    return Verdict(kind, errno, True, True, Backoff.NORMAL, "x")


@pytest.mark.parametrize("verdicts, seconds, spec, retried_last, away, lines", [
    ([_v(2003, Kind.CANNOT_CONNECT)] * 9, 3.24, RetrySpec(attempts=100, max_delay=0.3, window=3), True, True,
     ["  tried: 9 attempts over 3.2s, with backoff of up to 0.3s between them; errors: 2003 cannot connect x9",
      "  stopped: the retry window of 3s closed (retry.window)"]),
    ([_v(2013, Kind.CONNECTION_LOST), _v(2003, Kind.CANNOT_CONNECT), _v(2003, Kind.CANNOT_CONNECT)], 12.0,
     RetrySpec(attempts=3, max_delay=300), True, True,
     ["  tried: 3 attempts over 12.0s, with backoff of up to 300s between them; errors: 2013 connection lost x1, "
      "2003 cannot connect x2",
      "  stopped: all 3 attempts were used (retry.attempts)"]),
    ([_v(1213, Kind.DEADLOCK)] * 5, 1.5, RetrySpec(attempts=5, max_delay=2, window=600), True, False,
     ["  tried: 5 attempts over 1.5s, with backoff of up to 2s between them; errors: 1213 deadlock x5",
      "  stopped: all 5 attempts were used (retry.attempts)"]),
    ([_v(2003, Kind.CANNOT_CONNECT)] * 40, 599.0, RetrySpec(attempts=5, max_delay=30, window=600), True, True,
     ["  tried: 40 attempts over 599.0s, with backoff of up to 30s between them; errors: 2003 cannot connect x40",
      "  stopped: the retry window of 600s closed (retry.window)"]),
    ([_v(1213, Kind.DEADLOCK), _v(1062, Kind.PERMANENT)], 0.4, RetrySpec(attempts=5, max_delay=2), False, False,
     ["  tried: 2 attempts over 0.4s, with backoff of up to 2s between them; errors: 1213 deadlock x1, "
      "1062 data, schema, syntax or permission error x1",
      "  stopped: the last error is not retried"]),
])
def test_describe_attempts(verdicts: list[Verdict], seconds: float, spec: RetrySpec, retried_last: bool,
                           away: bool, lines: list[str]) -> None:
    assert describe_attempts(verdicts, seconds, spec, retried_last, away) == lines


@pytest.mark.parametrize("verdict, phase, away", [
    (classify_error(DOWN), "connect", True),
    (classify_error(OP(1290, READ_ONLY)), "statement", True),
    (classify_error(OP(1040, "Too many connections")), "connect", True),
    (classify_error(LOST), "connect", True),
    (classify_error(LOST), "statement", False),
    (classify_error(OP(1053, "Server shutdown in progress")), "statement", False),
    (classify_error(DEADLOCK), "statement", False),
    (classify_error(OP(1062, "Duplicate entry")), "connect", False),
])
def test_server_away(verdict: Verdict, phase: str, away: bool) -> None:
    assert server_away(verdict, phase) is away


@pytest.mark.parametrize("error, phase, stop", [
    (DOWN, "connect", False),
    (LOST, "connect", False),     # no server to talk to yet: waited out
    (LOST, "statement", True),    # lost while a statement ran: counts as an attempt
    (LOST, "commit", True),
    (DEADLOCK, "statement", True),
])
def test_stop_reads_the_verdict_and_phase_the_executor_attaches(error: Exception, phase: str, stop: bool) -> None:
    from runner.tasks.base import AttemptError

    retrying = build_retrying(RetrySpec(attempts=3, window=60.0), should_retry=lambda e: True, sleep=lambda s: None)
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    state.set_exception((AttemptError, AttemptError(error, classify_error(error), None, phase), None))
    state.attempt_number, state.start_time, state.outcome_timestamp, state.upcoming_sleep = 8, 0.0, 5.0, 0.5
    assert retrying.stop(state) is stop
