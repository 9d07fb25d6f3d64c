"""Tests of the integration-test harness itself: the private MariaDB server,
its lifecycle (restart, crash) and the fault-injecting TCP proxy."""

from __future__ import annotations

import time
from typing import Any

import pymysql
import pytest

from tests.harness.mariadb import PrivateMariaDB
from tests.harness.proxy import TcpProxy

LOST_CONNECTION = {2006, 2013}  # "server has gone away", "lost connection during query"


def _scalar(conn: pymysql.connections.Connection, sql: str) -> Any:
    """Run ``sql`` and return the first column of the first row."""
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return row[0] if row else None


def _make_table(server: PrivateMariaDB, db: str, rows: int = 1) -> None:
    """Create ``items`` in ``db`` holding ids 1..rows, committed."""
    conn = server.connect(db=db, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE items (id INT PRIMARY KEY) ENGINE=InnoDB")
            cur.executemany("INSERT INTO items VALUES (%s)", [(i,) for i in range(1, rows + 1)])
    finally:
        conn.close()


def _count(server: PrivateMariaDB, db: str) -> int:
    """Number of rows in ``db``.items, read over a direct connection."""
    conn = server.connect(db=db)
    try:
        return int(_scalar(conn, "SELECT COUNT(*) FROM items"))
    finally:
        conn.close()


def _via_proxy(proxy: TcpProxy, db: str, **kw: Any) -> pymysql.connections.Connection:
    """Open a root connection to ``db`` through ``proxy``."""
    host, port = proxy.address
    return pymysql.connect(host=host, port=port, user="root", password="", database=db,
                           connect_timeout=3, **kw)


# ------------------------------------------------------------------ server


def test_server_answers_over_tcp(mdb: PrivateMariaDB) -> None:
    conn = mdb.connect()
    try:
        assert "MariaDB" in str(_scalar(conn, "SELECT VERSION()"))
        assert _scalar(conn, "SELECT DATABASE()") == "test"
        assert _scalar(conn, "SELECT @@character_set_server") == "utf8mb4"
    finally:
        conn.close()
    assert mdb.is_running() and mdb.pid
    assert mdb.host == "127.0.0.1"
    assert mdb.url() == f"mysql+pymysql://root:@127.0.0.1:{mdb.port}/test"
    assert mdb.url("x").endswith(f":{mdb.port}/x")


def test_restart_keeps_data_and_port(mdb: PrivateMariaDB, fresh_db: str) -> None:
    _make_table(mdb, fresh_db, rows=3)
    port, datadir, old_pid = mdb.port, mdb.datadir, mdb.pid
    mdb.restart()
    assert (mdb.port, mdb.datadir) == (port, datadir)
    assert mdb.pid != old_pid
    assert _count(mdb, fresh_db) == 3


def test_down_then_back_on_same_port(mdb: PrivateMariaDB) -> None:
    mdb.stop()
    assert not mdb.is_running() and mdb.pid is None
    with pytest.raises(pymysql.err.OperationalError) as info:
        mdb.connect(connect_timeout=1)
    assert info.value.args[0] == 2003
    mdb.start()
    conn = mdb.connect()
    conn.close()


def test_kill_then_start_recovers_committed_rows(mdb: PrivateMariaDB, fresh_db: str) -> None:
    _make_table(mdb, fresh_db, rows=2)
    mdb.kill()
    assert not mdb.is_running()
    mdb.start()
    assert _count(mdb, fresh_db) == 2


def test_ensure_healthy_restores_globals(mdb: PrivateMariaDB) -> None:
    conn = mdb.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET GLOBAL wait_timeout = 5")
        cur.execute("SET GLOBAL read_only = 1")
        cur.execute("SET GLOBAL max_connections = 10")
    conn.close()
    mdb.ensure_healthy()
    conn = mdb.connect()
    try:
        assert _scalar(conn, "SELECT @@GLOBAL.wait_timeout") == 28800
        assert _scalar(conn, "SELECT @@GLOBAL.read_only") == 0
        assert _scalar(conn, "SELECT @@GLOBAL.max_connections") == 200
    finally:
        conn.close()


# ------------------------------------------------------------------- proxy


def test_proxy_forwards(proxy: TcpProxy, fresh_db: str) -> None:
    conn = _via_proxy(proxy, fresh_db)
    try:
        assert _scalar(conn, "SELECT DATABASE()") == fresh_db
    finally:
        conn.close()
    assert proxy.accepted == 1


def test_proxy_cut_all_breaks_open_connections(proxy: TcpProxy, fresh_db: str) -> None:
    conn = _via_proxy(proxy, fresh_db)
    assert _scalar(conn, "SELECT 1") == 1
    proxy.cut_all()
    with pytest.raises(pymysql.err.OperationalError) as info:
        _scalar(conn, "SELECT 1")
    assert info.value.args[0] in LOST_CONNECTION
    conn.close()
    again = _via_proxy(proxy, fresh_db)
    assert _scalar(again, "SELECT 1") == 1
    again.close()


def test_proxy_stall_hits_read_timeout(proxy: TcpProxy, fresh_db: str) -> None:
    conn = _via_proxy(proxy, fresh_db, read_timeout=1)
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info:
        _scalar(conn, "SELECT 1")
    assert info.value.args[0] == 2013
    assert time.monotonic() - started < 2.0
    proxy.resume()
    conn.close()


def test_proxy_delay_adds_latency(proxy: TcpProxy, fresh_db: str) -> None:
    conn = _via_proxy(proxy, fresh_db)
    proxy.delay(0.2)
    started = time.monotonic()
    assert _scalar(conn, "SELECT 1") == 1
    assert time.monotonic() - started >= 0.35  # request and reply each delayed
    proxy.normal()
    conn.close()


def test_proxy_refuse_new(proxy: TcpProxy, fresh_db: str) -> None:
    proxy.refuse_new(True)
    with pytest.raises(pymysql.err.OperationalError):
        _via_proxy(proxy, fresh_db)
    assert proxy.refused == 1
    proxy.refuse_new(False)
    _via_proxy(proxy, fresh_db).close()


def test_cut_after_commit_loses_reply_not_commit(
        mdb: PrivateMariaDB, proxy: TcpProxy, fresh_db: str) -> None:
    _make_table(mdb, fresh_db, rows=0)
    conn = _via_proxy(proxy, fresh_db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (42)")
    proxy.cut_after_client_sends(b"COMMIT")
    with pytest.raises(pymysql.err.OperationalError) as info:
        conn.commit()
    assert info.value.args[0] in LOST_CONNECTION
    assert proxy.cuts == 1
    assert _count(mdb, fresh_db) == 1
    conn.close()
