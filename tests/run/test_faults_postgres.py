"""Fault injection on the private PostgreSQL, the database-independent scenarios of the MariaDB suite:
a backend killed mid-task (pg_terminate_backend), a server restart mid-job, the server down at start,
a COMMIT whose reply never arrives (the TCP proxy), a serialization failure, and a statement timeout
cancelled on the server. Each runs a real job through `python -m runner --job` and checks the exact
final data and the attempts the ledger recorded."""

from __future__ import annotations

import time

import pytest

from tests.faultkit import FaultProject, digest, wait_until
from tests.harness.postgres import PrivatePostgres
from tests.harness.proxy import TcpProxy
from tests.run.test_faults import attempts_by_task, chain, facts_rows
from tests.run.test_faults import facts_task as mysql_facts_task

FACTS = "CREATE TABLE facts (id INT PRIMARY KEY, task VARCHAR(16) NOT NULL, v INT NOT NULL)"


def facts_task(name: str, first_id: int, pause: str) -> dict[str, str]:
    return mysql_facts_task(name, first_id, pause, sleep="pg_sleep")


def running(pg: PrivatePostgres, db: str, like: str) -> list[int]:
    return [r[0] for r in pg.rows("postgres", "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = "
                                              "'active' AND query LIKE %s AND pid <> pg_backend_pid()", (db, like))]


def wait_running(pg: PrivatePostgres, db: str, like: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = running(pg, db, like)
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no statement like {like!r} started in {db} within {timeout}s")


def table_digest(pg: PrivatePostgres, db: str) -> tuple[int, int, str]:
    return digest(pg.rows(db, "SELECT * FROM facts"))


@pytest.fixture
def project(tmp_path, pg: PrivatePostgres, fresh_pg: str) -> FaultProject:
    pg.execute(fresh_pg, FACTS)
    return FaultProject(tmp_path, {"wh": {"url": pg.url(fresh_pg)}})


def test_backend_terminated_in_the_middle_of_each_task(project: FaultProject, pg: PrivatePostgres,
                                                       fresh_pg: str) -> None:
    pauses = {"a": "0.31", "b": "0.32"}
    job = project.job("kills", {"database": "wh", "tasks": chain(
        *(facts_task(name, 10 * i, pause) for i, (name, pause) in enumerate(pauses.items(), 1)))})
    run = project.start(job)
    for pause in pauses.values():
        pid = wait_running(pg, fresh_pg, f"SELECT pg_sleep({pause})%")
        assert pg.rows("postgres", "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    assert table_digest(pg, fresh_pg) == digest(facts_rows("a", 10) + facts_rows("b", 20))
    for name, attempts in attempts_by_task(outcome).items():
        assert [(n, status) for n, status, _ in attempts] == [(1, "retrying"), (2, "success")], name
    errors = [a.error for a in outcome.attempts if a.status == "retrying"]
    assert all("SQLSTATE 57P01" in e and "terminating connection due to administrator command" in e
               for e in errors), errors


def test_server_restart_in_the_middle_of_a_job(project: FaultProject, pg: PrivatePostgres, fresh_pg: str) -> None:
    job = project.job("restart", {"database": "wh", "retry": {"attempts": 2, "window": 30}, "tasks": chain(
        facts_task("a", 10, "0"), facts_task("b", 20, "0.5"), facts_task("c", 30, "0"))})
    run = project.start(job)
    wait_running(pg, fresh_pg, "SELECT pg_sleep(0.5)%")
    pg.stop()
    time.sleep(1.0)  # down for a second: new connections are refused
    pg.start()
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    assert table_digest(pg, fresh_pg) == digest(facts_rows("a", 10) + facts_rows("b", 20) + facts_rows("c", 30))
    by_task = attempts_by_task(outcome)
    assert by_task["a"] == [(1, "success", None)] and by_task["c"] == [(1, "success", None)]
    assert by_task["b"][-1][1] == "success" and len(by_task["b"]) >= 2


def test_server_down_at_start_is_waited_out_within_the_window(project: FaultProject, pg: PrivatePostgres,
                                                              fresh_pg: str) -> None:
    """'Connection refused' is an outage to ride out, not a permanent error."""
    job = project.job("outage", {"database": "wh", "retry": {"attempts": 2, "window": 20},
                                 "tasks": [facts_task("a", 10, "0")]})
    pg.stop()
    run = project.start(job)
    wait_until(lambda: project.attempts_so_far(job) >= 3, 10, "three refused attempts")
    pg.start()
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    assert table_digest(pg, fresh_pg) == digest(facts_rows("a", 10))
    refused = [a for a in outcome.of("a") if a.status == "retrying"]
    assert len(refused) >= 3 and "Connection refused" in (refused[0].error or "")
    assert all("Connection refused" in (a.error or "") or "starting up" in (a.error or "") for a in refused)


def test_commit_reply_lost_the_rows_exist_exactly_once(tmp_path, pg: PrivatePostgres, fresh_pg: str,
                                                       pg_proxy: TcpProxy) -> None:
    pg.execute(fresh_pg, FACTS)
    host, port = pg_proxy.address
    project = FaultProject(tmp_path, {"wh": {"url": f"postgresql://postgres@{host}:{port}/{fresh_pg}"}})
    job = project.job("commit", {"database": "wh", "tasks": [facts_task("a", 10, "0.5")]})
    run = project.start(job)
    wait_running(pg, fresh_pg, "SELECT pg_sleep(0.5)%")
    pg_proxy.cut_after_client_sends(b"COMMIT")  # the next COMMIT is the task's: it commits, its reply is lost
    outcome = run.result()

    assert pg_proxy.cuts == 1
    assert outcome.code == 0, outcome.output
    assert table_digest(pg, fresh_pg) == digest(facts_rows("a", 10))
    first, second = outcome.attempts
    assert (first.attempt, first.status) == (1, "retrying")
    assert (second.attempt, second.status, second.error) == (2, "success", "committed by attempt 1")
    assert pg.rows(fresh_pg, "SELECT task, attempt FROM runner_task_markers") == [("a", 1)]


def test_serialization_failure_is_retried(project: FaultProject, pg: PrivatePostgres, fresh_pg: str) -> None:
    pg.execute(fresh_pg, "CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL)", "INSERT INTO acct VALUES (1, 0)")
    job = project.job("serial", {"database": "wh", "tasks": [{"name": "bump", "sql": (
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n"
        "SELECT v FROM acct WHERE id = 1;\n"
        "SELECT pg_sleep(0.4);\n"
        "UPDATE acct SET v = v + 1 WHERE id = 1;")}]})
    run = project.start(job)
    wait_running(pg, fresh_pg, "SELECT pg_sleep(0.4)%")
    pg.execute(fresh_pg, "UPDATE acct SET v = v + 100 WHERE id = 1")  # commits under the task's snapshot
    outcome = run.result()

    assert outcome.code == 0, outcome.output
    assert pg.rows(fresh_pg, "SELECT v FROM acct") == [(101,)]  # both changes, the task's once
    (first, second) = outcome.attempts
    assert first.status == "retrying" and "SQLSTATE 40001" in (first.error or "")
    assert second.status == "success"


def test_statement_timeout_is_cancelled_on_the_server(project: FaultProject, pg: PrivatePostgres, fresh_pg: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    job = project.job("slow", {"database": "wh", "tasks": [
        {"name": "slow", "timeout": "1s", "sql": "SELECT 1;\nSELECT pg_sleep(30);\nSELECT 2;"}]})
    started = time.monotonic()
    outcome = project.run(job)

    assert outcome.code == 1
    assert time.monotonic() - started < 6
    assert running(pg, fresh_pg, "SELECT pg_sleep(30)%") == []
    assert [(a.attempt, a.status) for a in outcome.attempts] == [(1, "failed")]
    assert "SQLSTATE 57014" in (outcome.attempts[0].error or "")
    assert "timed out after 1s; the statement was killed on the server" in outcome.output
    assert "canceling statement due to user request" in outcome.output


def test_a_timeout_never_claims_a_kill_that_did_not_happen(project: FaultProject, pg: PrivatePostgres,
                                                           fresh_pg: str, caplog: pytest.LogCaptureFixture) -> None:
    """The watchdog fires between two statements: no statement runs, so none is said to be killed."""
    job = project.job("between", {"database": "wh", "tasks": [
        {"name": "t", "timeout": "0.5s", "sql": "SELECT pg_sleep(0.45);\nSELECT 1 FROM pg_sleep(0.2);\nSELECT 2;"}]})
    outcome = project.run(job)
    assert outcome.code == 1
    message = outcome.output
    if "killed on the server" not in message:  # the cancel arrived after the statement had finished
        assert "timed out after 0.5s; the task was stopped before its next statement" in message
    else:
        assert "SQLSTATE 57014" in (outcome.attempts[0].error or "")
