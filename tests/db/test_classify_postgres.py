"""PostgreSQL errors classified by SQLSTATE (and, where libpq gives none, by their text), host names
that do not resolve on either server, and the driver check of a url: tables, no server."""

from __future__ import annotations

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from psycopg import errors as pge

from runner.config.drivers import missing_driver, with_default_driver
from runner.db.classify import Backoff, Kind, classify_error, server_away

OP = psycopg.OperationalError

# (exception as psycopg raises it, kind, retried, connection unusable, backoff class, SQLSTATE shown)
TABLE = [
    (pge.SerializationFailure("could not serialize access due to concurrent update"), Kind.SERIALIZATION, True,
     False, Backoff.SHORT, "40001"),
    (pge.DeadlockDetected("deadlock detected"), Kind.DEADLOCK, True, False, Backoff.SHORT, "40P01"),
    (pge.LockNotAvailable("canceling statement due to lock timeout"), Kind.LOCK_WAIT, True, False, Backoff.NORMAL,
     "55P03"),
    (pge.AdminShutdown("terminating connection due to administrator command"), Kind.KILLED, True, True,
     Backoff.RECONNECT, "57P01"),
    (pge.CrashShutdown("terminating connection because of crash of another server process"), Kind.KILLED, True,
     True, Backoff.RECONNECT, "57P02"),
    (pge.CannotConnectNow("the database system is starting up"), Kind.CANNOT_CONNECT, True, True,
     Backoff.RECONNECT, "57P03"),
    (pge.ConnectionFailure("connection failure"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT, "08006"),
    (pge.ConnectionDoesNotExist("connection does not exist"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT,
     "08003"),
    (pge.SqlclientUnableToEstablishSqlconnection("could not connect"), Kind.CANNOT_CONNECT, True, True,
     Backoff.RECONNECT, "08001"),
    (pge.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), Kind.FAILOVER, True, True,
     Backoff.NORMAL, "25006"),
    (pge.TooManyConnections("sorry, too many clients already"), Kind.TOO_MANY, True, True, Backoff.LONG, "53300"),
    (pge.QueryCanceled("canceling statement due to statement timeout"), Kind.TIMEOUT, False, False, Backoff.NONE,
     "57014"),
    (pge.UniqueViolation('duplicate key value violates unique constraint "t_pkey"'), Kind.PERMANENT, False, False,
     Backoff.NONE, "23505"),
    (pge.NotNullViolation('null value in column "v"'), Kind.PERMANENT, False, False, Backoff.NONE, "23502"),
    (pge.UndefinedTable('relation "nope" does not exist'), Kind.PERMANENT, False, False, Backoff.NONE, "42P01"),
    (pge.SyntaxError('syntax error at or near "SELEC"'), Kind.PERMANENT, False, False, Backoff.NONE, "42601"),
    (pge.InsufficientPrivilege("permission denied for table t"), Kind.PERMANENT, False, False, Backoff.NONE,
     "42501"),
    (pge.NumericValueOutOfRange("numeric field overflow"), Kind.PERMANENT, False, False, Backoff.NONE, "22003"),
    (pge.InvalidDatetimeFormat('invalid input syntax for type date: "x"'), Kind.PERMANENT, False, False,
     Backoff.NONE, "22007"),
    (pge.InvalidPassword('password authentication failed for user "etl"'), Kind.PERMANENT, False, False,
     Backoff.NONE, "28P01"),
    (pge.InvalidCatalogName('database "nope" does not exist'), Kind.PERMANENT, False, False, Backoff.NONE,
     "3D000"),
    # libpq's own errors carry no SQLSTATE: recognised by their text
    (OP('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the '
        'server running on that host and accepting TCP/IP connections?'), Kind.CANNOT_CONNECT, True, True,
     Backoff.RECONNECT, None),
    (OP("consuming input failed: server closed the connection unexpectedly\n\tThis probably means the server "
        "terminated abnormally"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT, None),
    (OP("the connection is lost"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT, None),
    (psycopg.InterfaceError("the connection is closed"), Kind.CONNECTION_LOST, True, True, Backoff.RECONNECT, None),
    (OP('connection failed: FATAL:  sorry, too many clients already'), Kind.TOO_MANY, True, True, Backoff.LONG,
     None),
    (OP('connection failed: FATAL:  the database system is shutting down'), Kind.CANNOT_CONNECT, True, True,
     Backoff.RECONNECT, None),
    (OP('connection failed: FATAL:  password authentication failed for user "etl"'), Kind.PERMANENT, False, False,
     Backoff.NONE, None),
    (OP('connection failed: FATAL:  database "nope" does not exist'), Kind.PERMANENT, False, False, Backoff.NONE,
     None),
    (OP("failed to resolve host 'wherehouse.example.invalid': [Errno -2] Name or service not known"),
     Kind.UNKNOWN_HOST, False, True, Backoff.RECONNECT, None),
]


@pytest.mark.parametrize("exc,kind,retry,disconnect,backoff,state", TABLE,
                         ids=[f"{r[5] or type(r[0]).__name__}-{r[1].name}" for r in TABLE])
def test_postgres_errors_by_sqlstate(exc, kind, retry, disconnect, backoff, state) -> None:
    for raised in (exc, sa.exc.OperationalError("SELECT 1", {}, exc)):  # as the driver raises it, and wrapped
        v = classify_error(raised)
        assert (v.kind, v.retryable, v.disconnect, v.backoff, v.sqlstate, v.code) == \
            (kind, retry, disconnect, backoff, state, state)
        assert v.errno is None


def test_an_unclassified_sqlstate_is_not_retried_and_keeps_its_code() -> None:
    v = classify_error(pge.DiskFull("could not extend file"))
    assert (v.kind, v.retryable, v.code) == (Kind.UNKNOWN, False, "53100")


@pytest.mark.parametrize("exc", [
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'wherehouse' ([Errno -2] Name or service "
                                       "not known)"),
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'wh' ([Errno -3] Temporary failure in "
                                       "name resolution)"),
    pymysql.err.OperationalError(2005, "Unknown MySQL server host 'wherehouse' (-2)"),
])
def test_a_host_name_that_does_not_resolve_is_not_retried_on_its_own(exc) -> None:
    v = classify_error(exc)
    assert (v.kind, v.retryable, v.disconnect) == (Kind.UNKNOWN_HOST, False, True)
    # When the executor retries it (the host was reached before), it is waited out like an outage.
    assert server_away(v, "connect")


def test_a_refused_connection_is_still_an_outage() -> None:
    v = classify_error(pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1' "
                                                          "([Errno 111] Connection refused)"))
    assert v.kind is Kind.CANNOT_CONNECT and v.retryable


@pytest.mark.parametrize("url,expected", [
    ("postgresql://etl:pw@db:5432/wh", "postgresql+psycopg://etl:pw@db:5432/wh"),
    ("postgres://etl@db/wh", "postgresql+psycopg://etl@db/wh"),
    ("postgresql+psycopg2://etl@db/wh", "postgresql+psycopg2://etl@db/wh"),
    ("mysql+pymysql://etl@db/wh", "mysql+pymysql://etl@db/wh"),
    ("sqlite:///var/x.db", "sqlite:///var/x.db"),
])
def test_postgresql_urls_use_psycopg_3_by_default(url, expected) -> None:
    assert with_default_driver(url) == expected


@pytest.mark.parametrize("url,installed,says", [
    ("postgresql+psycopg://etl@db/wh", True, None),
    ("mysql+pymysql://etl@db/wh", True, None),
    ("sqlite:///x.db", True, None),
    ("mysql://etl@db/wh", False, "pip install mysqlclient (conda: mysqlclient), or write mysql+pymysql://"),
    ("postgresql+pg8000://etl@db/wh", False, "pip install pg8000"),
    ("nosuchdb://etl@db/wh", False, "unknown database kind 'nosuchdb'"),
])
def test_a_missing_driver_names_what_to_install(url, installed, says) -> None:
    found = missing_driver(url)
    if installed:
        assert found is None
    else:
        assert found is not None and says in found


@pytest.mark.parametrize("cause,says", [
    (pge.QueryCanceled("canceling statement due to user request"),
     "timed out after 2.5s; the statement was killed on the server (canceling statement due to user request)"),
    (pymysql.err.OperationalError(1317, "Query execution was interrupted"),
     "timed out after 2.5s; the statement was killed on the server (Query execution was interrupted)"),
    (RuntimeError(), "timed out after 2.5s; the task was stopped before its next statement"),
])
def test_a_timeout_message_claims_a_kill_only_when_the_server_reports_one(cause, says) -> None:
    from runner.tasks.base import timeout_error

    err = timeout_error(cause, None, "statement", 2.5)
    assert err.verdict.message == says and err.timed_out and err.verdict.kind is Kind.TIMEOUT
