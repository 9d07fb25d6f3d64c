"""Runs on the private MariaDB: a permanent error fails at once with a message that says where and
hides the password; a connection killed mid-task is retried and its rows land exactly once;
independent tasks run concurrently under max_parallel.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, ledger_attempts, ledger_runs, run_main, write_project
from tests.harness.mariadb import PrivateMariaDB

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark

WAREHOUSE = "warehouse:\n  url: sqlite:///var/unused.db\n"  # every test points it elsewhere by environment


def _execute(server: PrivateMariaDB, db: str | None, *statements: str) -> list[tuple]:
    conn = server.connect(db=db, autocommit=True)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture
def secret_url(mdb: PrivateMariaDB, fresh_db: str) -> Iterator[tuple[str, str]]:
    """(url, password) of a dedicated user with a password, allowed everything on the fresh database."""
    user, password = f"etl_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex[:12]}-secret"
    _execute(mdb, None, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
             f"GRANT ALL PRIVILEGES ON `{fresh_db}`.* TO '{user}'@'%'")
    yield f"mysql+pymysql://{user}:{password}@{mdb.host}:{mdb.port}/{fresh_db}", password
    _execute(mdb, None, f"DROP USER IF EXISTS '{user}'@'%'")


# ------------------------------------------------------------------------------------- permanent error

BROKEN = """\
description: Loads into a table that does not exist
database: warehouse
retry: {attempts: 5, base_delay: 0.05, max_delay: 0.2}
tasks:
  - name: load
    sql: |
      -- the first statement succeeds, and is rolled back with the task
      INSERT INTO kept (id) VALUES (1);
      INSERT INTO no_such_table (id)
      SELECT id FROM kept;
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_permanent_error_fails_once_with_a_clear_message_and_no_password(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, secret_url: tuple[str, str], log_format: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, password = secret_url
    _execute(mdb, fresh_db, "CREATE TABLE kept (id INT PRIMARY KEY)")
    project = write_project(tmp_path, {"broken": BROKEN}, WAREHOUSE)
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", url)

    code, out = run_main(project, "--job", "broken", "--log-format", log_format)
    err = capsys.readouterr().err
    assert code == 1, out + err
    expected = [
        "job broken: task load failed",
        "  statement: jobs/broken.yml:9: INSERT INTO no_such_table (id)",
        f"  database: warehouse (mysql+pymysql://{url.split('//')[1].split(':')[0]}:***@{mdb.host}:{mdb.port}/"
        f"{fresh_db})",
        f"  error: 1146 Table '{fresh_db}.no_such_table' doesn't exist",
        "  attempts: 1 over ",
        "(not retried: it would fail the same way)",
        "  what to do: fix the SQL, the schema or the data it names, then re-run; then: python -m runner "
        "--job broken --from-task load --date ",
    ]
    for fragment in expected:
        assert fragment in out, out
    (run,) = ledger_runs(project)
    attempts = ledger_attempts(project, run["run_id"])
    assert [(a.task, a.attempt, a.status, a.errno) for a in attempts] == [("load", 1, "failed", 1146)]
    assert _execute(mdb, fresh_db, "SELECT COUNT(*) FROM kept") == [(0,)]  # one transaction: rolled back

    history_code, history = run_main(project, "--history", "--log-format", log_format)
    history_err = capsys.readouterr().err
    assert history_code == 0 and " broken " in history and " failed " in history
    assert "load: 1146 Table" in history  # the failing task, its error number and text
    json_code, as_json = run_main(project, "--history", "--format", "json")
    (doc,) = json.loads(as_json)
    assert json_code == 0 and [(t["task"], t["status"], t["attempts"], t["errno"]) for t in doc["tasks"]] == [
        ("load", "failed", 1, 1146)]
    history += as_json
    everything = out + err + history + history_err
    assert password not in everything
    assert password.encode() not in (project / "var" / "runner-state.db").read_bytes()
    if log_format == "json":
        docs = [json.loads(line) for line in err.splitlines()]  # one JSON object per line, nothing else
        assert any(d["level"] == "error" and "task load failed" in d["message"] for d in docs)
        assert all(password not in json.dumps(d) for d in docs)


# ------------------------------------------------------------------------------------- lost connection

SLOW_LOAD = """\
description: Loads 100 rows, then waits inside the same transaction
database: warehouse
retry: {attempts: 4, base_delay: 0.05, max_delay: 0.2}
tasks:
  - name: slow_load
    sql: |
      INSERT INTO landed (id, v)
      WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100)
      SELECT n, n * 7 FROM s;
      SELECT SLEEP(1) AS runner_kill_target;
"""


def _kill_when_seen(server: PrivateMariaDB, marker: str, killed: list[int], timeout: float = 15.0) -> None:
    """Find the connection running a statement holding `marker` and KILL CONNECTION it, once."""
    conn = server.connect(db=None, autocommit=True)
    try:
        deadline = time.monotonic() + timeout
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> "
                            "CONNECTION_ID()", (f"%{marker}%",))
                row = cur.fetchone()
                if row:
                    cur.execute(f"KILL CONNECTION {int(row[0])}")
                    killed.append(int(row[0]))
                    return
                time.sleep(0.02)
    finally:
        conn.close()


def _fingerprint(rows: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    """(count, distinct ids, sum, xor of crc32 per row): what the table must hold, computed here."""
    xor = 0
    for i, v in rows:
        xor ^= zlib.crc32(f"{i}:{v}".encode())
    return len(rows), len({i for i, _ in rows}), sum(v for _, v in rows), xor


def test_killed_connection_is_retried_and_rows_land_exactly_once(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _execute(mdb, fresh_db, "CREATE TABLE landed (id INT PRIMARY KEY, v INT NOT NULL)")
    project = write_project(tmp_path, {"slow": SLOW_LOAD}, WAREHOUSE)
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", mdb.url(fresh_db))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_seen, args=(mdb, "runner_kill_target", killed))
    killer.start()
    try:
        code, out = run_main(project, "--job", "slow")
    finally:
        killer.join()
    assert killed, "the task's connection was never seen in the processlist"
    assert code == 0, out
    (run,) = ledger_runs(project)
    attempts = ledger_attempts(project, run["run_id"])
    assert [(a.attempt, a.status) for a in attempts] == [(1, "retrying"), (2, "success")]
    assert attempts[0].errno in (2013, 2006)  # lost connection during query / server gone away
    got = _execute(mdb, fresh_db, "SELECT COUNT(*), COUNT(DISTINCT id), SUM(v), "
                                  "BIT_XOR(CRC32(CONCAT(id, ':', v))) FROM landed")[0]
    assert tuple(int(x) for x in got) == _fingerprint([(n, n * 7) for n in range(1, 101)])
    markers = _execute(mdb, fresh_db, "SELECT task, attempt FROM runner_task_markers WHERE run_id = "
                                      f"'{run['run_id']}'")
    assert markers == [("slow_load", 2)]
    assert "slow_load  success  2 attempts" in out


# ------------------------------------------------------------------------------------- concurrency

PARALLEL = """\
description: Two independent waits, then a task that needs both
database: warehouse
max_parallel: 2
tasks:
  - {name: left, sql: "SELECT SLEEP(0.8)"}
  - {name: right, sql: "SELECT SLEEP(0.8)"}
  - {name: after, depends_on: [left, right], sql: "SELECT 1"}
"""


def test_max_parallel_runs_independent_tasks_at_once(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_project(tmp_path, {"par": PARALLEL}, WAREHOUSE)
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", mdb.url(fresh_db))
    code, out = run_main(project, "--job", "par")
    assert code == 0, out
    (run,) = ledger_runs(project)
    spans = {a.task: (a.started_at, a.ended_at) for a in ledger_attempts(project, run["run_id"])}
    (l0, l1), (r0, r1), (a0, _) = spans["left"], spans["right"], spans["after"]
    assert l0 < r1 and r0 < l1, spans  # the two waits overlap
    assert a0 >= max(l1, r1), spans  # the dependent task starts when both are done


def test_literal_colons_and_percent_signs_reach_mariadb_unchanged(tmp_path: Path, mdb: PrivateMariaDB,
                                                                   fresh_db: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    job = ("database: warehouse\ntasks:\n  - name: note\n    sql: |\n"
           "      CREATE TEMPORARY TABLE scratch (t VARCHAR(64));\n"
           "      INSERT INTO notes (t, who) VALUES ('at 10:30 :not_a_param, 100%', :who);\n")
    _execute(mdb, fresh_db, "CREATE TABLE notes (t VARCHAR(64), who VARCHAR(64))")
    project = write_project(tmp_path, {"notes": job}, WAREHOUSE)
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", mdb.url(fresh_db))
    code, out = run_main(project, "--job", "notes", "--param", "who=it's me; %s")
    assert code == 0, out
    assert _execute(mdb, fresh_db, "SELECT t, who FROM notes") == [("at 10:30 :not_a_param, 100%", "it's me; %s")]


def test_a_number_in_params_is_bound_as_a_number_for_limit(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """MariaDB refuses LIMIT '2' (1064): `params: {n: 2}` must reach the driver as the number 2."""
    job = ("database: warehouse\nparams: {n: 2, since: 2026-01-02, ratio: 0.5}\ntasks:\n  - name: pick\n    sql: |\n"
           "      INSERT INTO picked SELECT id, :ratio * id FROM src WHERE day >= :since ORDER BY id LIMIT :n\n")
    _execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY, day DATE)",
             "INSERT INTO src VALUES (1, '2026-01-01'), (2, '2026-01-02'), (3, '2026-01-03'), (4, '2026-01-04')",
             "CREATE TABLE picked (id INT, half DECIMAL(6, 2))")
    project = write_project(tmp_path, {"pick": job}, WAREHOUSE)
    monkeypatch.setenv("RUNNER_DB_WAREHOUSE_URL", mdb.url(fresh_db))
    code, out = run_main(project, "--job", "pick")
    assert code == 0, out
    assert [(i, float(h)) for i, h in _execute(mdb, fresh_db, "SELECT id, half FROM picked ORDER BY id")] == [
        (2, 1.0), (3, 1.5)]


# ------------------------------------------------------------------------------------- backoff

def test_retries_of_a_real_connect_failure_back_off(tmp_path: Path) -> None:
    """Nothing listens on port 1: every attempt fails with 2003, and each retry waits a jittered backoff."""
    from datetime import date

    from runner.config.jobs import load_job
    from runner.config.project import load_project
    from runner.run.executor import Runner, RunRequest

    job = ("database: warehouse\nretry: {attempts: 4, base_delay: 0.5, max_delay: 3}\n"
           "tasks:\n  - {name: t, sql: SELECT 1}\n")
    project = write_project(tmp_path, {"down": job}, "warehouse:\n  url: mysql+pymysql://u:pw@127.0.0.1:1/db\n")
    loaded = load_project(project / "conf", env={})
    delays: list[float] = []
    runner = Runner(loaded, sleep=delays.append)
    try:
        result = runner.run(RunRequest(load_job(loaded, "down"), date(2026, 11, 2)))
    finally:
        runner.close()
    assert result.status == "failed" and result.tasks[0].attempts == 4
    assert len(delays) == 3
    assert all(0 < d <= 3 for d in delays), delays
    attempts = ledger_attempts(project, result.run_id)
    assert [(a.attempt, a.errno) for a in attempts] == [(1, 2003), (2, 2003), (3, 2003), (4, 2003)]
