"""pytest fixtures exposing the harness; load with
``pytest_plugins = ["tests.harness.fixtures"]``.

Fixtures:

* ``mariadb``    (session)  - the started `PrivateMariaDB`, removed at session end;
* ``mdb``        (function) - the same server after `PrivateMariaDB.ensure_healthy`
  (running, default globals restored); ``mariadb_up`` is an alias;
* ``fresh_db``   (function) - name of a new empty database, dropped afterwards;
* ``make_proxy`` (function) - factory returning started `TcpProxy` objects in
  front of the server, all stopped after the test;
* ``proxy``      (function) - one such proxy;
* ``postgres``   (session)  - the started `PrivatePostgres`, removed at session end;
* ``pg``         (function) - the same server after `PrivatePostgres.ensure_healthy`;
* ``fresh_pg``   (function) - name of a new empty PostgreSQL database, dropped afterwards;
* ``pg_proxy``   (function) - a started `TcpProxy` in front of the PostgreSQL server.

A missing MariaDB or PostgreSQL installation makes the tests error out, never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pymysql
import pytest

from tests.harness.mariadb import PrivateMariaDB, require_mariadbd
from tests.harness.postgres import PrivatePostgres, require_postgres
from tests.harness.proxy import TcpProxy


@pytest.fixture(scope="session")
def mariadb() -> Iterator[PrivateMariaDB]:
    """A private MariaDB server shared by the whole test session."""
    require_mariadbd()
    server = PrivateMariaDB()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def mdb(mariadb: PrivateMariaDB) -> Iterator[PrivateMariaDB]:
    """The session server, restarted if a previous test left it down."""
    mariadb.ensure_healthy()
    yield mariadb


@pytest.fixture
def mariadb_up(mdb: PrivateMariaDB) -> PrivateMariaDB:
    """Alias of ``mdb``."""
    return mdb


def _drop_database(server: PrivateMariaDB, name: str) -> None:
    """Drop ``name``, first bringing the server back up if a test stopped it."""
    try:
        server.ensure_healthy()
        conn = server.connect(db=None, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
    except (pymysql.err.MySQLError, RuntimeError, OSError):
        pass


@pytest.fixture
def fresh_db(mdb: PrivateMariaDB) -> Iterator[str]:
    """Name of a newly created, uniquely named database (``t_<hex>``)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = mdb.connect(db=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
    finally:
        conn.close()
    yield name
    _drop_database(mdb, name)


@pytest.fixture
def make_proxy(mdb: PrivateMariaDB) -> Iterator[Callable[[], TcpProxy]]:
    """Factory for started TcpProxy objects forwarding to the private server."""
    proxies: list[TcpProxy] = []

    def factory() -> TcpProxy:
        proxy = TcpProxy(mdb.host, mdb.port).start()
        proxies.append(proxy)
        return proxy

    yield factory
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def proxy(make_proxy: Callable[[], TcpProxy]) -> TcpProxy:
    """A started TcpProxy in front of the private server."""
    return make_proxy()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server shared by the whole test session."""
    require_postgres()
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg(postgres: PrivatePostgres) -> Iterator[PrivatePostgres]:
    """The session's PostgreSQL server, started again if a previous test left it down."""
    postgres.ensure_healthy()
    yield postgres


@pytest.fixture
def fresh_pg(pg: PrivatePostgres) -> Iterator[str]:
    """Name of a newly created PostgreSQL database (``t_<hex>``), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.create_database(name)
    yield name
    try:
        pg.ensure_healthy()
        pg.drop_database(name)
    except Exception:  # the server may be down after a fault test; the next ensure_healthy brings it back
        pass


@pytest.fixture
def pg_proxy(pg: PrivatePostgres) -> Iterator[TcpProxy]:
    """A started TcpProxy forwarding to the private PostgreSQL server."""
    proxy = TcpProxy(pg.host, pg.port).start()
    yield proxy
    proxy.stop()
