"""Fault injection on the server side: killed connections, idle timeouts, restarts, outages, deadlocks,
too many connections, a read-only failover, permanent errors, and timeouts killed on the server.

Every scenario runs a real job through `python -m runner --job` (runner.cli.main.main) against the
private MariaDB, causes a real fault while it runs, and then checks the exact final data (rows, no
duplicates, checksum) and the attempts the ledger recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pymysql
import pytest

from tests.faultkit import (Account, FaultProject, admin, Outcome, digest, execute, mysql_url, rows_of, table_digest,
                            wait_for_statement, wait_until)
from tests.harness.mariadb import PrivateMariaDB

LOST = {2006, 2013, 1927}  # what a client sees when its connection is killed or the server goes away
GONE = LOST | {1053, 2003}  # ... or when the server shuts down and refuses new connections


@pytest.fixture
def project(tmp_path, mdb: PrivateMariaDB, fresh_db: str) -> FaultProject:
    return FaultProject(tmp_path, {"wh": {"url": mysql_url(mdb.host, mdb.port, fresh_db)}})


def attempts_by_task(outcome: Outcome) -> dict[str, list[tuple[int, str, int | None]]]:
    """task -> [(attempt, status, errno), ...] as the ledger recorded them."""
    out: dict[str, list[tuple[int, str, int | None]]] = {}
    for a in outcome.attempts:
        out.setdefault(a.task, []).append((a.attempt, a.status, a.errno))
    return out


def facts_task(name: str, first_id: int, pause: str, sleep: str = "SLEEP") -> dict[str, str]:
    """A task writing three rows and updating them, with a pause (SLEEP, PostgreSQL's pg_sleep) in the
    middle of its transaction."""
    a, b, c = first_id, first_id + 1, first_id + 2
    return {"name": name, "sql": (f"INSERT INTO facts VALUES ({a}, '{name}', 10), ({b}, '{name}', 20);\n"
                                  f"SELECT {sleep}({pause});\n"
                                  f"INSERT INTO facts VALUES ({c}, '{name}', 30);\n"
                                  f"UPDATE facts SET v = v + 1 WHERE task = '{name}';\n")}


def facts_rows(name: str, first_id: int) -> list[tuple[int, str, int]]:
    return [(first_id, name, 11), (first_id + 1, name, 21), (first_id + 2, name, 31)]


def make_facts(server: PrivateMariaDB, db: str) -> None:
    execute(server, db, "CREATE TABLE facts (id INT PRIMARY KEY, task VARCHAR(16) NOT NULL, v INT NOT NULL)")


def assert_landed_once_after(outcome: Outcome, errno: int, server: PrivateMariaDB, db: str) -> None:
    """Task a of the job succeeded after its earlier attempts had failed with `errno`, and its
    rows are there exactly once."""
    assert outcome.code == 0, outcome.output
    assert table_digest(server, db, "facts") == digest(facts_rows("a", 10))
    attempts = attempts_by_task(outcome)["a"]
    assert len(attempts) >= 2 and attempts[-1][1:] == ("success", None)
    assert [(status, code) for _, status, code in attempts[:-1]] == [("retrying", errno)] * (len(attempts) - 1)


def chain(*tasks: dict[str, str]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, t in enumerate(tasks):
        out.append({**t, "depends_on": [tasks[i - 1]["name"]]} if i else dict(t))
    return out


# ------------------------------------------------------------------------------------------- 1

def test_kill_connection_in_the_middle_of_each_task(project: FaultProject, mdb: PrivateMariaDB,
                                                    fresh_db: str) -> None:
    make_facts(mdb, fresh_db)
    pauses = {"a": "0.31", "b": "0.32", "c": "0.33"}
    job = project.job("kills", {"database": "wh", "tasks": chain(
        *(facts_task(name, 10 * i, pause) for i, (name, pause) in enumerate(pauses.items(), 1)))})
    run = project.start(job)
    for pause in pauses.values():  # the first attempt of every task loses its connection
        connection, _ = wait_for_statement(mdb, fresh_db, f"SELECT SLEEP({pause})%")
        execute(mdb, None, f"KILL CONNECTION {connection}")
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    expected = [row for i, name in enumerate(pauses, 1) for row in facts_rows(name, 10 * i)]
    assert rows_of(mdb, fresh_db, "SELECT * FROM facts ORDER BY id") == expected
    assert table_digest(mdb, fresh_db, "facts") == digest(expected)
    by_task = attempts_by_task(outcome)
    assert sorted(by_task) == ["a", "b", "c"]
    for name, attempts in by_task.items():
        assert [(n, status) for n, status, _ in attempts] == [(1, "retrying"), (2, "success")], name
        assert attempts[0][2] in LOST
    assert rows_of(mdb, fresh_db, "SELECT task, attempt FROM runner_task_markers ORDER BY task") == \
        [("a", 2), ("b", 2), ("c", 2)]


# ------------------------------------------------------------------------------------------- 2

@pytest.mark.parametrize("pre_ping", [True, False])
def test_idle_connection_closed_by_wait_timeout_is_replaced_at_checkout(
        tmp_path, mdb: PrivateMariaDB, fresh_db: str, pre_ping: bool) -> None:
    execute(mdb, fresh_db, "CREATE TABLE seen (task VARCHAR(8) PRIMARY KEY, connection BIGINT NOT NULL)")
    execute(mdb, None, "SET GLOBAL wait_timeout = 2")  # new sessions only: the job's pool reads it on connect
    url = mysql_url(mdb.host, mdb.port, fresh_db)
    project = FaultProject(tmp_path, {"wh": {"url": url, "pool": {"pre_ping": pre_ping}},
                                      "other": {"url": url}})
    job = project.job("idle", {"database": "wh", "tasks": chain(
        {"name": "first", "sql": "INSERT INTO seen SELECT 'first', CONNECTION_ID()"},
        {"name": "pause", "database": "other", "sql": "SELECT SLEEP(3)"},
        {"name": "last", "sql": "INSERT INTO seen SELECT 'last', CONNECTION_ID()"})})
    outcome = project.run(job)

    assert outcome.code == 0, outcome.output
    assert [(a.task, a.attempt, a.status) for a in outcome.attempts] == \
        [("first", 1, "success"), ("pause", 1, "success"), ("last", 1, "success")]
    seen = dict(rows_of(mdb, fresh_db, "SELECT task, connection FROM seen"))
    assert sorted(seen) == ["first", "last"] and seen["first"] != seen["last"]
    alive = {r[0] for r in rows_of(mdb, None, "SELECT ID FROM information_schema.PROCESSLIST")}
    assert seen["first"] not in alive  # the server did close the idle connection


# ------------------------------------------------------------------------------------------- 3

def test_server_restart_in_the_middle_of_a_job(project: FaultProject, mdb: PrivateMariaDB,
                                               fresh_db: str) -> None:
    make_facts(mdb, fresh_db)
    job = project.job("restart", {"database": "wh", "retry": {"attempts": 2, "window": 30}, "tasks": chain(
        facts_task("a", 10, "0"), facts_task("b", 20, "0.5"), facts_task("c", 30, "0"))})
    run = project.start(job)
    wait_for_statement(mdb, fresh_db, "SELECT SLEEP(0.5)%")
    mdb.stop()
    time.sleep(1.0)  # the server stays down for a second: new connections are refused
    mdb.start()
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    expected = facts_rows("a", 10) + facts_rows("b", 20) + facts_rows("c", 30)
    assert table_digest(mdb, fresh_db, "facts") == digest(expected)
    by_task = attempts_by_task(outcome)
    assert by_task["a"] == [(1, "success", None)] and by_task["c"] == [(1, "success", None)]
    b = by_task["b"]
    assert b[-1][1] == "success" and len(b) >= 2
    assert all(status == "retrying" and errno in GONE for _, status, errno in b[:-1])


# ------------------------------------------------------------------------------------------- 4

def test_server_down_at_start_and_back_within_the_window(project: FaultProject, mdb: PrivateMariaDB,
                                                         fresh_db: str) -> None:
    make_facts(mdb, fresh_db)
    # Fewer attempts than the outage lasts: within the window, the server being away is waited out.
    job = project.job("outage", {"database": "wh", "retry": {"attempts": 2, "window": 20},
                                 "tasks": [facts_task("a", 10, "0")]})
    mdb.stop()
    run = project.start(job)
    wait_until(lambda: project.attempts_so_far(job) >= 4, 10, "four refused attempts")
    mdb.start()
    outcome = run.result()

    assert_landed_once_after(outcome, 2003, mdb, fresh_db)


def test_server_stays_down_past_the_window(project: FaultProject, mdb: PrivateMariaDB, fresh_db: str) -> None:
    secret = "s3cret-Pw-9"
    project.databases["wh"]["url"] = mysql_url(mdb.host, mdb.port, fresh_db, "etl", secret)
    project.write_conf()
    job = project.job("outage", {"database": "wh", "retry": {"attempts": 2, "window": 2},
                                 "tasks": [{"name": "a", "sql": "INSERT INTO facts VALUES (1, 'a', 1)"}]})
    mdb.stop()
    started = time.monotonic()
    outcome = project.run(job)
    took = time.monotonic() - started

    assert outcome.code == 1
    assert 2 - 0.3 <= took < 4  # the last sleep (at most max_delay) would have ended past the window
    attempts = outcome.of("a")
    assert len(attempts) >= 3 and {a.errno for a in attempts} == {2003}
    assert attempts[-1].status == "failed" and {a.status for a in attempts[:-1]} == {"retrying"}
    message = outcome.output
    assert "job outage: task a failed" in message
    assert "during: connecting" in message
    assert f"etl:***@{mdb.host}:{mdb.port}/{fresh_db}" in message and secret not in message
    assert "last error: 2003 Can't connect to MySQL server" in message
    assert re.search(rf"tried: {len(attempts)} attempts over [12]\.\ds, with backoff of up to 0\.3s between them",
                     message)
    assert f"errors: 2003 cannot connect x{len(attempts)}" in message
    assert "stopped: the retry window of 2s closed (retry.window)" in message
    assert "check that the server is running and reachable" in message


# ------------------------------------------------------------------------------------------- 5

def test_deadlock_between_two_concurrent_tasks(project: FaultProject, mdb: PrivateMariaDB, fresh_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
            "INSERT INTO acct VALUES (1, 0), (2, 0)")
    job = project.job("deadlock", {"database": "wh", "max_parallel": 2, "tasks": [
        {"name": "one_two", "sql": "UPDATE acct SET v = v + 1 WHERE id = 1;\nSELECT SLEEP(0.4);\n"
                                   "UPDATE acct SET v = v + 10 WHERE id = 2;"},
        {"name": "two_one", "sql": "UPDATE acct SET v = v + 100 WHERE id = 2;\nSELECT SLEEP(0.4);\n"
                                   "UPDATE acct SET v = v + 1000 WHERE id = 1;"},
    ]})
    outcome = project.run(job)

    assert outcome.code == 0, outcome.output
    assert rows_of(mdb, fresh_db, "SELECT id, v FROM acct ORDER BY id") == [(1, 1001), (2, 110)]
    by_task = attempts_by_task(outcome)
    victims = [t for t, a in by_task.items() if len(a) == 2]
    assert len(victims) == 1
    winner = ({"one_two", "two_one"} - set(victims)).pop()
    assert by_task[victims[0]] == [(1, "retrying", 1213), (2, "success", None)]
    assert by_task[winner] == [(1, "success", None)]


# ------------------------------------------------------------------------------------------- 8

@pytest.fixture
def account(mdb: PrivateMariaDB, fresh_db: str) -> Iterator[Account]:
    made = Account(mdb, fresh_db)
    yield made
    made.drop()


def fill_connections(account: Account, db: str) -> list[pymysql.connections.Connection]:
    held: list[pymysql.connections.Connection] = []
    while len(held) < 50:
        try:
            held.append(account.connect(db))
        except pymysql.err.OperationalError as exc:
            assert exc.args[0] == 1040, exc
            return held
    raise AssertionError("max_connections is not enforced")


def test_too_many_connections_backs_off_then_succeeds(tmp_path, mdb: PrivateMariaDB, fresh_db: str,
                                                      account: Account) -> None:
    make_facts(mdb, fresh_db)
    project = FaultProject(tmp_path, {"wh": {"url": account.url(fresh_db)}})
    job = project.job("crowded", {"database": "wh", "tasks": [facts_task("a", 10, "0")]})
    root = admin(mdb)  # connected beforehand: the job's refused attempts may take the slot root keeps
    holders: list[pymysql.connections.Connection] = []
    try:
        root.cursor().execute("SET GLOBAL max_connections = 10")  # the server's minimum
        holders = fill_connections(account, fresh_db)  # every slot an ordinary account may use is taken
        run = project.start(job)
        wait_until(lambda: project.attempts_so_far(job) >= 2, 10, "two refused attempts")
    finally:
        root.cursor().execute("SET GLOBAL max_connections = 200")
        root.close()
        for holder in holders:
            holder.close()
    outcome = run.result()

    assert_landed_once_after(outcome, 1040, mdb, fresh_db)


# ------------------------------------------------------------------------------------------- 9

def test_read_only_failover_for_a_few_seconds(tmp_path, mdb: PrivateMariaDB, fresh_db: str,
                                              account: Account) -> None:
    make_facts(mdb, fresh_db)
    project = FaultProject(tmp_path, {"wh": {"url": account.url(fresh_db)}})
    warm = project.job("warm", {"database": "wh", "tasks": [{"name": "w", "sql": "SELECT 1"}]})
    assert project.run(warm).code == 0  # the marker table exists: the task's own INSERT meets read_only
    job = project.job("failover", {"database": "wh", "tasks": [facts_task("a", 10, "0")]})
    execute(mdb, None, "SET GLOBAL read_only = 1")
    try:
        run = project.start(job)
        wait_until(lambda: project.attempts_so_far(job) >= 2, 10, "two rejected attempts")
    finally:
        execute(mdb, None, "SET GLOBAL read_only = 0")
    outcome = run.result()

    assert_landed_once_after(outcome, 1290, mdb, fresh_db)


# ------------------------------------------------------------------------------------------- 10

def test_permanent_error_gets_one_attempt(project: FaultProject, mdb: PrivateMariaDB, fresh_db: str) -> None:
    make_facts(mdb, fresh_db)
    job = project.job("dup", {"database": "wh", "retry": {"attempts": 8, "window": 60}, "tasks": chain(
        facts_task("a", 10, "0"),
        {"name": "b", "sql": "INSERT INTO facts VALUES (20, 'b', 1);\nINSERT INTO facts VALUES (10, 'b', 2);"})})
    outcome = project.run(job)

    assert outcome.code == 1
    assert table_digest(mdb, fresh_db, "facts") == digest(facts_rows("a", 10))  # b's first row rolled back
    assert attempts_by_task(outcome) == {"a": [(1, "success", None)], "b": [(1, "failed", 1062)]}
    assert "jobs/dup.yml:" in outcome.output and "INSERT INTO facts VALUES (10, 'b', 2)" in outcome.output
    assert "error: 1062 Duplicate entry '10' for key 'PRIMARY'" in outcome.output
    assert "attempts: 1 over" in outcome.output and "(not retried: it would fail the same way)" in outcome.output


# ------------------------------------------------------------------------------------------- timeouts, DDL

def test_task_timeout_kills_the_statement_on_the_server(project: FaultProject, mdb: PrivateMariaDB,
                                                        fresh_db: str) -> None:
    job = project.job("slow", {"database": "wh", "tasks": [
        {"name": "slow", "timeout": "1s", "sql": "SELECT 1;\nSELECT SLEEP(30);\nSELECT 2;"}]})
    started = time.monotonic()
    outcome = project.run(job)

    assert outcome.code == 1
    assert time.monotonic() - started < 5
    assert not rows_of(mdb, None, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(30)%'")
    assert [(a.attempt, a.status, a.errno) for a in outcome.attempts] == [(1, "failed", 1317)]
    assert "timed out after 1s; the statement was killed on the server" in outcome.output
    assert "SELECT SLEEP(30)" in outcome.output


@pytest.mark.parametrize("idempotent", [False, True])
def test_task_with_ddl_is_retried_only_when_idempotent(project: FaultProject, mdb: PrivateMariaDB, fresh_db: str,
                                                       idempotent: bool) -> None:
    job = project.job("ddl", {"database": "wh", "tasks": [
        {"name": "build", "idempotent": idempotent,
         "sql": "CREATE TABLE IF NOT EXISTS built (id INT PRIMARY KEY);\n"
                "DELETE FROM built;\nINSERT INTO built VALUES (1), (2);\nSELECT SLEEP(0.3);"}]})
    run = project.start(job)
    connection, _ = wait_for_statement(mdb, fresh_db, "SELECT SLEEP(0.3)%")
    execute(mdb, None, f"KILL CONNECTION {connection}")
    outcome = run.result()

    attempts = [(a.attempt, a.status) for a in outcome.attempts]
    if idempotent:
        assert outcome.code == 0, outcome.output
        assert attempts == [(1, "retrying"), (2, "success")]
        assert rows_of(mdb, fresh_db, "SELECT id FROM built ORDER BY id") == [(1,), (2,)]
    else:
        assert outcome.code == 1
        assert attempts == [(1, "failed")]
        assert "commits implicitly (DDL); mark it idempotent: true to allow retries" in outcome.output
        assert rows_of(mdb, fresh_db, "SELECT COUNT(*) FROM built") == [(0,)]
