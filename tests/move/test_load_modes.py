"""What each load mode means, on the private MariaDB and on SQLite: replace is atomic to a concurrent
reader, upsert updates rows in place, append refuses duplicate keys (LOAD DATA LOCAL would skip them);
incremental loads across runs with new and updated rows, across a run that fails halfway, and across a
COMMIT lost in flight (real faults: a server error mid-stream, the TCP proxy cutting the connection).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.cli.main import main
from runner.state.ledger import Ledger
from tests.faultkit import FaultProject, execute, rows_of, wait_for_statement
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.proxy import TcpProxy
from tests.loadkit import mysql_db, other_db

assert other_db  # a fixture

T0 = dt.datetime(2024, 1, 1, 0, 0, 0, 250000)


class Target:
    """The target database of a test: MariaDB (a second database), PostgreSQL or a SQLite file."""

    def __init__(self, kind: str, server: Any, db: str, path: Path):
        self.kind, self.server, self.db, self.path = kind, server, db, path
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def conf(self) -> dict[str, Any]:
        if self.kind == "mariadb":
            return mysql_db(self.server, self.db)
        if self.kind == "postgresql":
            return {"url": self.server.url(self.db)}
        return {"url": f"sqlite:///{self.path}"}

    def run(self, *statements: str) -> None:
        if self.kind == "mariadb":
            execute(self.server, self.db, *statements)
            return
        if self.kind == "postgresql":
            self.server.execute(self.db, *(s.replace("DATETIME(6)", "TIMESTAMP(6)") for s in statements))
            return
        conn = sqlite3.connect(self.path)
        try:
            for s in statements:
                conn.execute(s)
            conn.commit()
        finally:
            conn.close()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "mariadb":
            return rows_of(self.server, self.db, sql)
        if self.kind == "postgresql":
            return self.server.rows(self.db, sql)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()


@pytest.fixture(params=["mariadb", "sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, mdb: PrivateMariaDB, other_db: str, tmp_path: Path) -> Target:
    if request.param == "postgresql":
        return Target("postgresql", request.getfixturevalue("pg"), request.getfixturevalue("fresh_pg"),
                      tmp_path / "var" / "unused")
    return Target(request.param, mdb, other_db, tmp_path / "var" / "target.db")


def project_for(tmp_path: Path, mdb: PrivateMariaDB, source_db: str, target: Target | dict[str, Any]) -> FaultProject:
    dst = target.conf if isinstance(target, Target) else target
    return FaultProject(tmp_path, {"src": mysql_db(mdb, source_db), "dst": dst})


def load(name: str, query: str, table: str, **spec: Any) -> dict[str, Any]:
    return {"database": "dst", "tasks": [{"name": name, "load": {"source": "src", "query": query, "table": table,
                                                                 **spec}}]}


def fill(server: PrivateMariaDB, db: str, table: str, rows: list[tuple[Any, ...]], columns: str) -> None:
    conn = server.connect(db=db, autocommit=True)
    try:
        with conn.cursor() as cur:
            marks = ", ".join(["%s"] * len(rows[0]))
            cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ replace

def watch(read: Callable[[], tuple[Any, ...]], stop: threading.Event, seen: set[tuple[Any, ...]],
          errors: list[BaseException]) -> None:
    while not stop.is_set():
        try:
            seen.add(read())
        except Exception as exc:  # every failed read is a finding
            errors.append(exc)


def test_replace_is_atomic_to_a_concurrent_reader(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                  target: Target) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO src SELECT seq, 2 FROM seq_1_to_40000")
    target.run("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
    target.run(*[f"INSERT INTO t VALUES ({i}, 1)" for i in range(1, 3001)])
    project = project_for(tmp_path, mdb, fresh_db, target)
    job = project.job("swap", load("swap", "SELECT id, v FROM src", "t", mode="replace"))
    stop, seen, errors = threading.Event(), set(), []  # type: ignore[var-annotated]
    reader = threading.Thread(target=watch, args=(lambda: target.rows("SELECT COUNT(*), SUM(v) FROM t")[0],
                                                  stop, seen, errors))
    reader.start()
    try:
        while not seen:  # the reader has seen the old table before the load starts
            pass
        outcome = project.run(job)
        seen.add(target.rows("SELECT COUNT(*), SUM(v) FROM t")[0])
    finally:
        stop.set()
        reader.join()
    assert outcome.code == 0, outcome.output
    assert errors == []
    assert {tuple(map(int, s)) for s in seen} == {(3000, 3000), (40000, 80000)}
    if target.kind == "mariadb":
        assert rows_of(mdb, target.db, "SHOW TABLES") == [("runner_task_markers",), ("t",)]  # no staging left


# ------------------------------------------------------------------------------------------ upsert

def test_upsert_updates_rows_in_place(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, target: Target) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO src SELECT seq, 2 FROM seq_5_to_15")
    target.run("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, extra VARCHAR(10) NOT NULL DEFAULT 'default')")
    target.run(*[f"INSERT INTO t VALUES ({i}, 1, 'mine')" for i in range(1, 11)])
    project = project_for(tmp_path, mdb, fresh_db, target)
    outcome = project.run(project.job("up", load("up", "SELECT id, v FROM src", "t", mode="upsert", key=["id"])))
    assert outcome.code == 0, outcome.output
    assert [a.rows for a in outcome.of("up")] == [11]
    # Rows 5..10 keep the column the load does not touch: updated in place, not deleted and inserted again.
    assert target.rows("SELECT id, v, extra FROM t ORDER BY id") == (
        [(i, 1, "mine") for i in range(1, 5)] + [(i, 2, "mine") for i in range(5, 11)]
        + [(i, 2, "default") for i in range(11, 16)])


def test_upsert_creates_a_missing_table_keyed_for_the_next_upsert(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                                  target: Target) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO src SELECT seq, seq FROM seq_1_to_20")
    project = project_for(tmp_path, mdb, fresh_db, target)
    job = project.job("up", load("up", "SELECT id, v FROM src", "made", mode="upsert", key=["id"]))
    assert project.run(job).code == 0
    execute(mdb, fresh_db, "UPDATE src SET v = 0 WHERE id <= 5")
    assert project.run(job).code == 0
    assert target.rows("SELECT COUNT(*), SUM(v) FROM made")[0] == (20, sum(range(6, 21)))


def test_append_with_a_duplicate_key_fails_and_leaves_the_table_as_it_was(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, other_db: str) -> None:
    """LOAD DATA LOCAL skips a duplicate with a warning (it cannot stop the client mid-file); the runner
    turns that warning into the failure an INSERT would give, and rolls back."""
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO src SELECT seq, 2 FROM seq_1_to_500")
    execute(mdb, other_db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)", "INSERT INTO t VALUES (250, 1)")
    project = project_for(tmp_path, mdb, fresh_db, mysql_db(mdb, other_db))
    outcome = project.run(project.job("dup", load("dup", "SELECT id, v FROM src", "t")))
    assert outcome.code == 1
    assert "error: 1062 Duplicate entry '250'" in outcome.output and "the load was rolled back" in outcome.output
    assert [a.status for a in outcome.of("dup")] == ["failed"]
    assert rows_of(mdb, other_db, "SELECT id, v FROM t") == [(250, 1)]


def test_a_failing_source_query_names_the_source_database(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                          target: Target) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY)")
    project = project_for(tmp_path, mdb, fresh_db, target)
    outcome = project.run(project.job("bad", load("bad", "SELECT id, no_such_column FROM src", "t")))
    assert outcome.code == 1
    assert f"database: src (mysql+pymysql://root:***@{mdb.host}:{mdb.port}/{fresh_db})" in outcome.output
    assert "jobs/bad.yml:" in outcome.output and "error: 1054 Unknown column 'no_such_column'" in outcome.output


# ------------------------------------------------------------------------------------------ incremental

ORDERS = "CREATE TABLE orders (id INT PRIMARY KEY, v INT NOT NULL, poison INT NOT NULL DEFAULT 0, updated_at DATETIME(6))"
ORDERS_QUERY = ("SELECT id, v, updated_at, IF(poison = 1, (SELECT 1 UNION SELECT 2), 0) AS p FROM orders "
                "WHERE updated_at > :watermark")


def stored_watermark(project: FaultProject, job: str) -> Any:
    ledger = Ledger(project.state_url)
    try:
        return json.loads(ledger.watermark(job, job) or "null")
    finally:
        ledger.dispose()


def source_orders(server: PrivateMariaDB, db: str) -> list[tuple[Any, ...]]:
    return rows_of(server, db, "SELECT id, v, updated_at FROM orders ORDER BY id")


def target_orders(target: Target) -> list[tuple[Any, ...]]:
    rows = target.rows("SELECT id, v, updated_at FROM orders_copy ORDER BY id")
    return [(i, v, dt.datetime.fromisoformat(u) if isinstance(u, str) else u) for i, v, u in rows]


def test_incremental_loads_across_three_runs_with_new_and_updated_rows(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, target: Target) -> None:
    execute(mdb, fresh_db, ORDERS)
    fill(mdb, fresh_db, "orders", [(i, i, T0 + dt.timedelta(seconds=i)) for i in range(1, 101)], "id, v, updated_at")
    project = project_for(tmp_path, mdb, fresh_db, target)
    job = project.job("orders", load("orders", ORDERS_QUERY, "orders_copy", mode="upsert", key=["id"],
                                     incremental={"column": "updated_at"}))
    loaded = []
    for change in (
            [],
            ["UPDATE orders SET v = v + 1000, updated_at = '2024-06-01 00:00:00.5' WHERE id <= 10",
             "INSERT INTO orders (id, v, updated_at) SELECT seq, seq, '2024-06-01 00:00:01' FROM seq_101_to_120"],
            ["UPDATE orders SET v = -v, updated_at = '2024-07-01 12:00:00.000001' WHERE id BETWEEN 50 AND 54",
             "INSERT INTO orders (id, v, updated_at) SELECT seq, seq, '2024-07-01 12:00:00' FROM seq_121_to_125"]):
        if change:
            execute(mdb, fresh_db, *change)
        outcome = project.run(job)
        assert outcome.code == 0, outcome.output
        loaded.append([a.rows for a in outcome.of("orders")])
        assert target_orders(target) == source_orders(mdb, fresh_db)
    assert loaded == [[100], [30], [10]]
    assert stored_watermark(project, "orders")["value"] == {"type": "text", "text": "2024-07-01 12:00:00.000001"}


def test_incremental_run_failing_halfway_neither_skips_nor_repeats_rows(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, target: Target) -> None:
    execute(mdb, fresh_db, ORDERS)
    fill(mdb, fresh_db, "orders", [(i, i, T0 + dt.timedelta(seconds=i)) for i in range(1, 101)], "id, v, updated_at")
    # append into a keyed table: a repeated row would fail the load with a duplicate key
    target.run("CREATE TABLE orders_copy (id INT PRIMARY KEY, v INT NOT NULL, updated_at DATETIME(6), p INT)")
    project = project_for(tmp_path, mdb, fresh_db, target)
    job = project.job("orders", load("orders", ORDERS_QUERY, "orders_copy", incremental={"column": "updated_at"},
                                     batch_rows=10))
    assert project.run(job).code == 0
    first = stored_watermark(project, "orders")
    fill(mdb, fresh_db, "orders", [(i, i, T0 + dt.timedelta(days=1, seconds=i), int(i == 180))
                                   for i in range(101, 201)], "id, v, updated_at, poison")
    failed = project.run(job)  # the source server fails at row 180, after rows 101..179 were sent
    assert failed.code == 1 and "1242" in failed.output and "database: src" in failed.output
    assert stored_watermark(project, "orders") == first
    assert len(target_orders(target)) == 100
    execute(mdb, fresh_db, "UPDATE orders SET poison = 0")  # updated_at unchanged: only the watermark finds them
    outcome = project.run(job)
    assert outcome.code == 0, outcome.output
    assert [a.rows for a in outcome.of("orders")] == [100]
    assert target_orders(target) == source_orders(mdb, fresh_db)


def test_commit_lost_in_flight_is_applied_once_and_the_watermark_follows(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, other_db: str, proxy: TcpProxy) -> None:
    execute(mdb, fresh_db, ORDERS, "INSERT INTO orders (id, v, updated_at) "
                                   "SELECT seq, seq, '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_60000")
    via_proxy = {"url": f"mysql+pymysql://root:@127.0.0.1:{proxy.port}/{other_db}"}
    project = project_for(tmp_path, mdb, fresh_db, via_proxy)
    job = project.job("orders", load("orders", ORDERS_QUERY, "orders_copy", incremental={"column": "updated_at"}))
    run = project.start(job)
    wait_for_statement(mdb, other_db, "LOAD DATA%")
    proxy.cut_after_client_sends(b"COMMIT")  # the next COMMIT is the load's: it commits, its answer is lost
    outcome = run.result()
    assert outcome.code == 0, outcome.output
    assert proxy.cuts == 1
    assert [(a.status, a.rows) for a in outcome.of("orders")] == [("retrying", None), ("success", 60000)]
    assert "committed by attempt 1, confirmed by its marker" in outcome.output
    assert rows_of(mdb, other_db, "SELECT COUNT(*), COUNT(DISTINCT id) FROM orders_copy") == [(60000, 60000)]
    assert stored_watermark(project, "orders")["value"] == {"type": "text", "text": "2024-01-01 16:40:00.000000"}


def test_history_shows_the_rows_of_each_load(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                             other_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY)", "INSERT INTO src SELECT seq FROM seq_1_to_77")
    project = project_for(tmp_path, mdb, fresh_db, mysql_db(mdb, other_db))
    assert project.run(project.job("copy", load("copy", "SELECT id FROM src", "t"))).code == 0
    out = io.StringIO()
    assert main(["--conf", str(project.root / "conf"), "--history", "--job", "copy"], out=out) == 0
    assert " success " in out.getvalue() and "77 rows" in out.getvalue()
    out = io.StringIO()
    assert main(["--conf", str(project.root / "conf"), "--history", "--job", "copy", "--format", "json"], out=out) == 0
    (run,) = json.loads(out.getvalue())
    assert [(t["task"], t["status"], t["rows"]) for t in run["tasks"]] == [("copy", "success", 77)]


def test_a_load_past_its_timeout_is_killed_on_both_servers(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                           target: Target) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY)", "INSERT INTO src SELECT seq FROM seq_1_to_400")
    project = project_for(tmp_path, mdb, fresh_db, target)
    job = load("slow", "SELECT id, SLEEP(0.02) AS z FROM src", "t")
    job["tasks"][0]["timeout"] = "1s"
    outcome = project.run(project.job("slow", job))
    assert outcome.code == 1
    assert "timed out after 1s; the statement was killed on the server" in outcome.output
    assert [a.status for a in outcome.of("slow")] == ["failed"]
    assert rows_of(mdb, fresh_db, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                  "WHERE INFO LIKE '%SLEEP(0.02)%' AND ID <> CONNECTION_ID()") == [(0,)]
