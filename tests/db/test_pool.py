"""The pool guard against the private MariaDB: round trips counted by the server, dead connections
replaced, wait_timeout read from the session, ROLLBACK on return only when needed, leak reports, and
which errors through SQLAlchemy Connections cost one connection or the whole pool.

Idle time is simulated by moving runner.clock (the one clock the pool reads); the server's own
counters (SHOW GLOBAL STATUS) say what went over the wire.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from runner import clock
from runner.db import engines as dbmod
from runner.db.engines import current_context, make_engine, on_error, transaction_ended
from runner.model import Database, PoolSpec
from tests.faultkit import Account, execute, mysql_url, rows_of, wait_until
from tests.harness.mariadb import PrivateMariaDB

COUNTERS = ("Com_admin_commands", "Com_rollback", "Connections")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(clock, "monotonic", fake)
    return fake


class Pools:
    """Engines made by runner.db for one test, disposed afterwards."""

    def __init__(self, server: PrivateMariaDB, db: str):
        self.server, self.db = server, db
        self.made: list[sa.Engine] = []

    def __call__(self, url: str | None = None, connect_args: dict[str, Any] | None = None,
                 **pool: Any) -> tuple[sa.Engine, dbmod.PoolGuard]:
        spec = Database("wh", url or mysql_url(self.server.host, self.server.port, self.db),
                        PoolSpec(**pool), connect_args or {})
        engine, guard = make_engine(spec)
        self.made.append(engine)
        return engine, guard


@pytest.fixture
def pools(mdb: PrivateMariaDB, fresh_db: str) -> Iterator[Pools]:
    made = Pools(mdb, fresh_db)
    yield made
    for engine in made.made:
        engine.dispose()


def status(server: PrivateMariaDB) -> dict[str, int]:
    rows = rows_of(server, None, "SHOW GLOBAL STATUS WHERE Variable_name IN ("
                   + ", ".join(f"'{c}'" for c in COUNTERS) + ")")
    return {name: int(value) for name, value in rows}


def delta(server: PrivateMariaDB, before: dict[str, int]) -> dict[str, int]:
    after = status(server)
    moved = {c: after[c] - before[c] for c in COUNTERS}
    moved["Connections"] -= 1  # the connection that read `after`
    return moved


def short_task(engine: sa.Engine, sql: str = "SELECT CONNECTION_ID()") -> Any:
    """What the executor does with a pooled connection: statements, COMMIT, return."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(sql)
        value = cur.fetchall()[0][0] if cur.description else None
        cur.close()
        raw.commit()
        transaction_ended(raw)
        return value
    finally:
        raw.close()


# ------------------------------------------------------------------------------------------- checkout

def test_recently_used_connection_costs_no_ping_and_no_rollback(mdb: PrivateMariaDB, pools: Pools) -> None:
    engine, _ = pools()
    first = short_task(engine)
    before = status(mdb)
    ids = {short_task(engine) for _ in range(200)}
    d = delta(mdb, before)
    assert ids == {first}
    assert d["Com_admin_commands"] == 0 and d["Com_rollback"] == 0 and d["Connections"] == 0


def test_idle_connection_is_pinged_once_at_checkout(mdb: PrivateMariaDB, pools: Pools,
                                                    fake_clock: FakeClock) -> None:
    engine, _ = pools(ping_skip_ms=500)
    first = short_task(engine)
    fake_clock.advance(0.4)
    before = status(mdb)
    assert short_task(engine) == first
    assert delta(mdb, before)["Com_admin_commands"] == 0
    fake_clock.advance(0.6)
    before = status(mdb)
    assert short_task(engine) == first
    assert delta(mdb, before)["Com_admin_commands"] == 1


def test_killed_idle_connection_is_replaced_at_checkout(mdb: PrivateMariaDB, pools: Pools,
                                                        fake_clock: FakeClock) -> None:
    engine, guard = pools()
    first = short_task(engine)
    execute(mdb, None, f"KILL CONNECTION {first}")
    fake_clock.advance(1)
    second = short_task(engine)  # would raise 2006/2013 if the dead connection were handed out
    assert second != first
    assert guard.pings == 1


def test_dead_connections_are_replaced_after_a_server_restart(mdb: PrivateMariaDB, pools: Pools,
                                                              fake_clock: FakeClock) -> None:
    engine, _ = pools(size=3)
    raws = [engine.raw_connection() for _ in range(3)]
    for raw in raws:
        raw.close()
    mdb.restart()
    fake_clock.advance(1)
    ids = [short_task(engine) for _ in range(3)]
    assert all(isinstance(i, int) for i in ids)


def test_wait_timeout_is_read_from_the_session(mdb: PrivateMariaDB, pools: Pools) -> None:
    execute(mdb, None, "SET GLOBAL wait_timeout = 50")
    engine, _ = pools(connect_args={"init_command": "SET SESSION wait_timeout = 7"})
    raw = engine.raw_connection()
    try:
        assert raw.info["wait_timeout"] == 7.0
    finally:
        raw.close()
    engine2, _ = pools()
    raw = engine2.raw_connection()
    try:
        assert raw.info["wait_timeout"] == 50.0
    finally:
        raw.close()


def test_connection_idle_past_wait_timeout_is_replaced_without_a_ping(
        mdb: PrivateMariaDB, pools: Pools, fake_clock: FakeClock) -> None:
    execute(mdb, None, "SET GLOBAL wait_timeout = 10")
    engine, guard = pools(recycle=0)  # no recycle by age: only the idle rule can replace it
    first = short_task(engine)
    fake_clock.advance(9)
    before = status(mdb)
    second = short_task(engine)
    d = delta(mdb, before)
    assert second != first
    assert d["Com_admin_commands"] == 0 and d["Connections"] == 1
    assert guard.replaced == 1


def test_wait_timeout_really_expired_is_survived_without_a_ping(mdb: PrivateMariaDB, pools: Pools) -> None:
    execute(mdb, None, "SET GLOBAL wait_timeout = 1")
    engine, _ = pools(pre_ping=False)
    first = short_task(engine)
    wait_until(lambda: not any(r[0] == first for r in rows_of(
        mdb, None, "SELECT ID FROM information_schema.PROCESSLIST")), 10, "the server closing the idle connection")
    assert short_task(engine) != first


def test_recycle_not_below_wait_timeout_is_lowered_and_logged_once(
        mdb: PrivateMariaDB, pools: Pools, caplog: pytest.LogCaptureFixture) -> None:
    execute(mdb, None, "SET GLOBAL wait_timeout = 20")
    engine, guard = pools(recycle=1800, size=3)
    with caplog.at_level(logging.WARNING, logger="runner.db"):
        raws = [engine.raw_connection() for _ in range(3)]
        for raw in raws:
            raw.close()
    assert guard.recycle == 16.0
    warnings = [r.getMessage() for r in caplog.records if "recycle" in r.getMessage()]
    assert warnings == ["database wh: pool recycle 1800s is not safely below the server's wait_timeout 20s; "
                        "using 16s"]


def test_recycle_safely_below_wait_timeout_is_kept(mdb: PrivateMariaDB, pools: Pools,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    engine, guard = pools(recycle=600)
    with caplog.at_level(logging.WARNING, logger="runner.db"):
        short_task(engine)
    assert guard.recycle == 600.0
    assert not [r for r in caplog.records if "recycle" in r.getMessage()]


# ------------------------------------------------------------------------------------------- return

def test_no_rollback_after_the_borrower_committed(mdb: PrivateMariaDB, pools: Pools, fresh_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    engine, _ = pools()
    short_task(engine)
    before = status(mdb)
    for i in range(20):
        short_task(engine, f"INSERT INTO t VALUES ({i})")
    assert delta(mdb, before)["Com_rollback"] == 0
    assert rows_of(mdb, fresh_db, "SELECT COUNT(*) FROM t") == [(20,)]


def test_uncommitted_write_is_rolled_back_on_return(mdb: PrivateMariaDB, pools: Pools, fresh_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    engine, _ = pools()
    raw = engine.raw_connection()
    raw.cursor().execute("INSERT INTO t VALUES (1)")
    before = status(mdb)
    raw.close()
    assert delta(mdb, before)["Com_rollback"] == 1
    assert rows_of(mdb, fresh_db, "SELECT COUNT(*) FROM t") == [(0,)]


def test_read_snapshot_left_open_does_not_follow_the_connection(mdb: PrivateMariaDB, pools: Pools,
                                                                 fresh_db: str) -> None:
    # After a plain SELECT, InnoDB keeps a snapshot while the driver's status says "no transaction".
    execute(mdb, fresh_db, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    engine, _ = pools()
    raw = engine.raw_connection()
    cur = raw.cursor()
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchall()[0][0] == 1
    raw.close()
    execute(mdb, fresh_db, "INSERT INTO t VALUES (2)")
    assert short_task(engine, "SELECT COUNT(*) FROM t") == 2


def test_sqlalchemy_connection_rollback_is_not_doubled(mdb: PrivateMariaDB, pools: Pools) -> None:
    engine, _ = pools()
    short_task(engine)
    before = status(mdb)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert delta(mdb, before)["Com_rollback"] == 1  # the Connection's own; the pool adds none


# ------------------------------------------------------------------------------------------- leaks

def test_connection_held_too_long_is_reported_while_still_held(pools: Pools,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    engine, _ = pools(leak_seconds=0.2)
    current_context.label = "job nightly task rollup"
    caplog.set_level(logging.INFO, logger="runner.db")

    def borrow() -> Any:
        return engine.raw_connection()

    try:
        raw = borrow()
        wait_until(lambda: any("held for more than" in r.getMessage() for r in caplog.records), 5,
                   "a leak report")
        assert raw.dbapi_connection is not None  # still held while reported
        [report] = [r.getMessage() for r in caplog.records if "connection leak" in r.getMessage()]
        assert "job nightly task rollup" in report
        assert "test_pool.py:" in report and " in borrow" in report
        raw.close()
    finally:
        current_context.label = ""
    assert any("came back after" in r.getMessage() for r in caplog.records)


def test_connection_dropped_without_return_is_reported(pools: Pools, caplog: pytest.LogCaptureFixture) -> None:
    engine, _ = pools()
    caplog.set_level(logging.WARNING, logger="runner.db")
    current_context.label = "job nightly task export"

    def borrow_and_forget() -> None:
        raw = engine.raw_connection()
        raw.cursor().execute("SELECT 1")

    try:
        borrow_and_forget()
        gc.collect()
    finally:
        current_context.label = ""
    [report] = [r.getMessage() for r in caplog.records if "connection leak" in r.getMessage()]
    assert "dropped without being returned" in report
    assert "job nightly task export" in report and "in borrow_and_forget" in report
    assert engine.pool.checkedout() == 0


def test_returned_connections_are_never_reported(pools: Pools, caplog: pytest.LogCaptureFixture) -> None:
    engine, _ = pools(size=2, leak_seconds=5)
    caplog.set_level(logging.WARNING, logger="runner.db")

    def work() -> None:
        for _ in range(100):
            short_task(engine, "SELECT 1")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert not [r for r in caplog.records if "leak" in r.getMessage()]


# ------------------------------------------------------------------------------------------- errors

def _ids(engine: sa.Engine, n: int) -> list[int]:
    conns = [engine.connect() for _ in range(n)]
    try:
        return [c.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one() for c in conns]
    finally:
        for c in conns:
            c.close()


def test_read_timeout_costs_one_connection_not_the_pool(pools: Pools) -> None:
    engine, _ = pools(size=3, connect_args={"read_timeout": 1})
    before = _ids(engine, 3)
    with engine.connect() as conn:
        with pytest.raises(sa_exc.OperationalError) as info:
            conn.execute(sa.text("SELECT SLEEP(3)"))
    assert info.value.orig.args[0] == 2013 and info.value.connection_invalidated
    after = _ids(engine, 3)
    assert len(set(before) & set(after)) == 2  # the two others were kept


def test_read_only_failover_drops_the_whole_pool(mdb: PrivateMariaDB, fresh_db: str, pools: Pools) -> None:
    account = Account(mdb, fresh_db)
    execute(mdb, fresh_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    try:
        engine, _ = pools(url=account.url(fresh_db), size=3)
        before = _ids(engine, 3)
        execute(mdb, None, "SET GLOBAL read_only = 1")
        with engine.connect() as conn:
            with pytest.raises(sa_exc.OperationalError) as info:
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert info.value.orig.args[0] == 1290 and info.value.connection_invalidated
        execute(mdb, None, "SET GLOBAL read_only = 0")
        assert not set(before) & set(_ids(engine, 3))
    finally:
        execute(mdb, None, "SET GLOBAL read_only = 0")
        account.drop()


@pytest.mark.parametrize("error, disconnect, whole_pool", [
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (timed out)"), True, False),
    (pymysql.err.OperationalError(2006, "MySQL server has gone away"), True, False),
    (pymysql.err.OperationalError(1927, "Connection was killed"), True, False),
    (pymysql.err.OperationalError(1053, "Server shutdown in progress"), True, False),
    (pymysql.err.OperationalError(1290, "The MariaDB server is running with the --read-only option so it "
                                        "cannot execute this statement"), True, True),
    (pymysql.err.OperationalError(1047, "WSREP has not yet prepared node for application use"), True, True),
    (pymysql.err.InterfaceError(0, ""), True, False),
    (pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), False, True),
    (pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"), False, True),
    (pymysql.err.OperationalError(1290, "The MariaDB server is running with the --secure-file-priv option"),
     False, True),
])
def test_handle_error_decides_disconnects_from_the_error_table(error: Exception, disconnect: bool,
                                                               whole_pool: bool) -> None:
    # SQLAlchemy's ExceptionContext as the event sees it: its own verdict false, pool invalidation on.
    context = SimpleNamespace(original_exception=error, is_disconnect=False, invalidate_pool_on_disconnect=True)
    on_error(context)  # type: ignore[arg-type]
    assert context.is_disconnect is disconnect
    assert context.invalidate_pool_on_disconnect is whole_pool
