"""Fault injection on the network path, through a TCP proxy in front of the private MariaDB: a stalled
stream that only read_timeout can end, and a COMMIT whose reply never reaches the client.

Each scenario runs a real job through `python -m runner --job`, and checks the exact final data and
the attempts the ledger recorded.
"""

from __future__ import annotations

import threading

import pytest

from tests.faultkit import FaultProject, digest, execute, mysql_url, rows_of, table_digest, wait_for_statement
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.proxy import TcpProxy

ROWS = [(1, "north", 10), (2, "south", 20), (3, "east", 30)]
TASK_SQL = ("INSERT INTO sales VALUES (1, 'north', 10), (2, 'south', 20);\n"
            "SELECT SLEEP(0.5);\n"
            "INSERT INTO sales VALUES (3, 'east', 30);")


def through(tmp_path, proxy: TcpProxy, db: str, **extra: object) -> FaultProject:
    host, port = proxy.address
    return FaultProject(tmp_path, {"wh": {"url": mysql_url(host, port, db), **extra}})


def make_sales(server: PrivateMariaDB, db: str) -> None:
    execute(server, db, "CREATE TABLE sales (id INT PRIMARY KEY, region VARCHAR(16) NOT NULL, amount INT NOT NULL)")


# ------------------------------------------------------------------------------------------- 6

def test_stalled_stream_hits_read_timeout_and_the_task_is_retried(tmp_path, mdb: PrivateMariaDB, fresh_db: str,
                                                                  proxy: TcpProxy) -> None:
    make_sales(mdb, fresh_db)
    project = through(tmp_path, proxy, fresh_db, connect_args={"read_timeout": 1.5})
    job = project.job("stall", {"database": "wh", "tasks": [{"name": "load", "sql": TASK_SQL}]})
    run = project.start(job)
    wait_for_statement(mdb, fresh_db, "SELECT SLEEP(0.5)%")
    proxy.stall()  # no bytes either way, sockets stay open: only the client's read_timeout ends the wait
    resume = threading.Timer(2.5, proxy.resume)
    resume.start()
    try:
        outcome = run.result()
    finally:
        resume.cancel()
        proxy.resume()

    assert outcome.code == 0, outcome.output
    assert rows_of(mdb, fresh_db, "SELECT * FROM sales ORDER BY id") == ROWS
    assert table_digest(mdb, fresh_db, "sales") == digest(ROWS)
    first, second = outcome.attempts
    assert (first.attempt, first.status, first.errno) == (1, "retrying", 2013)
    assert "timed out" in (first.error or "")
    assert (second.attempt, second.status) == (2, "success")


# ------------------------------------------------------------------------------------------- 7

def test_commit_reply_lost_the_rows_exist_exactly_once(tmp_path, mdb: PrivateMariaDB, fresh_db: str,
                                                       proxy: TcpProxy) -> None:
    make_sales(mdb, fresh_db)
    project = through(tmp_path, proxy, fresh_db)
    job = project.job("commit", {"database": "wh", "tasks": [{"name": "load", "sql": TASK_SQL}]})
    run = project.start(job)
    wait_for_statement(mdb, fresh_db, "SELECT SLEEP(0.5)%")
    proxy.cut_after_client_sends(b"COMMIT")  # the next COMMIT is the task's: forwarded, its reply dropped
    outcome = run.result()

    assert proxy.cuts == 1
    assert outcome.code == 0, outcome.output
    assert rows_of(mdb, fresh_db, "SELECT * FROM sales ORDER BY id") == ROWS
    assert table_digest(mdb, fresh_db, "sales") == digest(ROWS)
    first, second = outcome.attempts
    assert (first.attempt, first.status, first.errno) == (1, "retrying", 2013)
    assert (second.attempt, second.status, second.rows, second.error) == (2, "success", 4, "committed by attempt 1")
    assert "committed by attempt 1, confirmed by its marker" in outcome.output
    assert rows_of(mdb, fresh_db, "SELECT task, attempt, rows_affected FROM runner_task_markers") == [("load", 1, 4)]


def test_commit_reply_lost_without_markers_is_outcome_unknown(tmp_path, mdb: PrivateMariaDB, fresh_db: str,
                                                              proxy: TcpProxy) -> None:
    make_sales(mdb, fresh_db)
    project = through(tmp_path, proxy, fresh_db, markers=False)
    job = project.job("commit", {"database": "wh", "tasks": [{"name": "load", "sql": TASK_SQL}]})
    run = project.start(job)
    wait_for_statement(mdb, fresh_db, "SELECT SLEEP(0.5)%")
    proxy.cut_after_client_sends(b"COMMIT")
    outcome = run.result()

    assert outcome.code == 1
    assert table_digest(mdb, fresh_db, "sales") == digest(ROWS)  # it did commit; nothing ran twice
    assert [(a.attempt, a.status, a.errno) for a in outcome.attempts] == [(1, "failed", 2013)]
    assert "was lost while COMMIT was in flight, and markers are off for this database, so the outcome is " \
           "unknown: check the data of this task before re-running it" in outcome.output
    assert not rows_of(mdb, fresh_db, "SHOW TABLES LIKE 'runner_task_markers'")


@pytest.mark.parametrize("markers", [True, False])
def test_connection_cut_before_commit_rolls_back_and_retries(tmp_path, mdb: PrivateMariaDB, fresh_db: str,
                                                             proxy: TcpProxy, markers: bool) -> None:
    make_sales(mdb, fresh_db)
    project = through(tmp_path, proxy, fresh_db, markers=markers)
    job = project.job("cut", {"database": "wh", "tasks": [{"name": "load", "sql": TASK_SQL}]})
    run = project.start(job)
    wait_for_statement(mdb, fresh_db, "SELECT SLEEP(0.5)%")
    proxy.cut_all()
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    assert table_digest(mdb, fresh_db, "sales") == digest(ROWS)
    assert [(a.attempt, a.status) for a in outcome.attempts] == [(1, "retrying"), (2, "success")]
