"""Tests of the private PostgreSQL server of the harness: it answers on its own port and socket,
keeps its data over a restart and a crash, and the proxy forwards to it."""

from __future__ import annotations

import psycopg
import pytest

from tests.harness.postgres import PrivatePostgres
from tests.harness.proxy import TcpProxy


def test_server_answers_over_tcp_and_its_own_socket(pg: PrivatePostgres, fresh_pg: str) -> None:
    assert pg.rows(fresh_pg, "SELECT current_database(), current_setting('port')") == [(fresh_pg, str(pg.port))]
    with psycopg.connect(host=str(pg.socket_dir), port=pg.port, user="postgres", dbname=fresh_pg) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pg.url(fresh_pg) == f"postgresql+psycopg://postgres:@127.0.0.1:{pg.port}/{fresh_pg}"


def test_restart_and_crash_keep_data_and_port(pg: PrivatePostgres, fresh_pg: str) -> None:
    pg.execute(fresh_pg, "CREATE TABLE items (id INT PRIMARY KEY)", "INSERT INTO items VALUES (1), (2)")
    port, old = pg.port, pg.pid
    pg.restart()
    assert pg.pid != old and pg.port == port
    pg.kill()
    with pytest.raises(psycopg.OperationalError):
        pg.connect(fresh_pg, connect_timeout=1)
    pg.start()
    assert pg.rows(fresh_pg, "SELECT COUNT(*) FROM items") == [(2,)]


def test_terminate_ends_a_backend_and_its_client_sees_it(pg: PrivatePostgres, fresh_pg: str) -> None:
    victim = pg.connect(fresh_pg)
    pid = victim.info.backend_pid
    assert pid in [r[0] for r in pg.rows("postgres", "SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                         (fresh_pg,))]
    pg.rows("postgres", "SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT 1")
    victim.close()


def test_the_proxy_forwards_to_postgres(pg: PrivatePostgres, fresh_pg: str, pg_proxy: TcpProxy) -> None:
    host, port = pg_proxy.address
    with psycopg.connect(host=host, port=port, user="postgres", dbname=fresh_pg, connect_timeout=3) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert pg_proxy.accepted == 1
