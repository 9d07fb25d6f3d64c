"""The state store failing is a clear error naming it (password hidden), what is wrong and what to do:
a read-only file or folder (a real read-only mount when the tests run as root, permissions otherwise),
a full disk (RLIMIT_FSIZE), a garbage file, a SQLite database holding someone else's runner_* tables,
a folder where the file should be: exit 2 before any task runs. The state database dropped on the
server while a run is going: the run stops, its tasks stay as they are, the error says the ledger
could not be written. A task failing with one of the runner's own errors is recorded failed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.state.ledger import Ledger
from tests.faultkit import FaultProject, execute, rows_of, wait_for_statement
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.postgres import PrivatePostgres as PostgresServer
from tests.loadkit import mysql_db, other_db

assert other_db  # a fixture

REPO = Path(__file__).resolve().parents[2]
JOB = {"database": "wh", "tasks": [{"name": "t", "sql": "CREATE TABLE IF NOT EXISTS ran (x INT)"}]}


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` (with what it holds) read-only for this process: a read-only tmpfs when running as root,
    whom permissions do not stop, else mode 0555/0444."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    keep = folder.with_name(folder.name + ".content")
    shutil.copytree(folder, keep)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("running as root, and no read-only mount can be made here")
    try:
        shutil.copytree(keep, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def run_cli(project: FaultProject, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limits() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "runner", "--conf", str(project.root / "conf"), "--jobs",
                           str(project.root / "jobs"), *args], capture_output=True, text=True, timeout=60,
                          preexec_fn=limits, cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)})


def assert_named(done: subprocess.CompletedProcess[str], state: Path, what: str) -> None:
    assert done.returncode == 2, done.stderr
    assert f"state store sqlite:///{state}: {what}" in done.stderr, done.stderr
    assert "unexpected error" not in done.stderr and "Traceback" not in done.stderr
    assert not (state.parent.parent / "var" / "wh.db").exists() or "ran" not in _tables(state.parent / "wh.db")


def _tables(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return " ".join(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
    finally:
        conn.close()


@pytest.fixture
def project(tmp_path: Path) -> FaultProject:
    p = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}})
    p.job("job", JOB)
    (tmp_path / "var").mkdir()
    return p


def state_file(project: FaultProject) -> Path:
    return project.root / "var" / "state.db"


def test_a_read_only_ledger_file(project: FaultProject) -> None:
    assert run_cli(project, "--job", "job").returncode == 0  # the ledger exists, with one run
    (project.root / "var" / "wh.db").unlink()
    with read_only(project.root / "var"):
        done = run_cli(project, "--job", "job")
    assert_named(done, state_file(project), "it is read-only for this user")


def test_a_read_only_folder_where_the_ledger_would_be_made(project: FaultProject) -> None:
    with read_only(project.root / "var"):
        done = run_cli(project, "--job", "job")
    assert done.returncode == 2, done.stderr
    assert f"state store sqlite:///{state_file(project)}" in done.stderr and "writable" in done.stderr, done.stderr


def test_a_full_disk(project: FaultProject) -> None:
    done = run_cli(project, "--job", "job", fsize=4096)
    assert done.returncode == 2, done.stderr
    assert f"state store sqlite:///{state_file(project)}: " in done.stderr
    assert "the disk holding it is full" in done.stderr or "I/O error" in done.stderr, done.stderr


def test_a_garbage_file_at_state_url(project: FaultProject) -> None:
    state_file(project).write_bytes(os.urandom(8192))
    assert_named(run_cli(project, "--job", "job"), state_file(project), "the file is not a SQLite database")
    history = run_cli(project, "--history")
    assert_named(history, state_file(project), "the file is not a SQLite database")


def test_a_sqlite_database_of_someone_else(project: FaultProject) -> None:
    conn = sqlite3.connect(state_file(project))
    conn.execute("CREATE TABLE runner_runs (id INTEGER PRIMARY KEY, what TEXT)")
    conn.commit()
    conn.close()
    for args in (("--job", "job"), ("--due",), ("--history",)):
        done = run_cli(project, *args)
        if args == ("--due",):
            assert done.returncode == 0  # nothing scheduled: the state store is not needed
            continue
        assert_named(done, state_file(project), "it holds tables named runner_* that are not the runner's")


def test_a_folder_where_the_ledger_file_should_be(project: FaultProject) -> None:
    state_file(project).mkdir()
    assert_named(run_cli(project, "--job", "job"), state_file(project), "the file cannot be opened or created")


def test_the_state_database_dropped_mid_run_stops_the_run_and_says_so(tmp_path: Path, mdb: PrivateMariaDB,
                                                                      fresh_db: str, other_db: str) -> None:
    state_url = mdb.url(other_db).replace("root:", "root:")
    project = FaultProject(tmp_path, {"wh": mysql_db(mdb, fresh_db)})
    (tmp_path / "conf" / "runner.yml").write_text(f"timezone: UTC\nstate_url: '{state_url}'\n")
    project.job("three", {"database": "wh", "tasks": [
        {"name": "a", "sql": "CREATE TABLE IF NOT EXISTS done (task VARCHAR(8))"},
        {"name": "b", "depends_on": ["a"], "sql": "INSERT INTO done VALUES ('b'); DO SLEEP(1.5)"},
        {"name": "c", "depends_on": ["b"], "sql": "INSERT INTO done VALUES ('c')"}]})
    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(project.cli("--job", "three")))
    runner.start()
    wait_for_statement(mdb, fresh_db, "%SLEEP(1.5)%")
    execute(mdb, None, f"DROP DATABASE `{other_db}`")
    runner.join(30)
    done = outcome[0]
    assert done.code == 1, done.output
    assert "the ledger could not be written: state store mysql+pymysql://root:***@" in done.output
    assert "the run stopped; its tasks stay as they are; committed: a, b; not run: c" in done.output
    assert "--from-task c" in done.output and "unexpected error" not in done.output
    assert rows_of(mdb, fresh_db, "SELECT task FROM done") == [("b",)]  # b committed once, c never ran
    execute(mdb, None, f"CREATE DATABASE `{other_db}`")  # for the fixture's clean-up


def test_a_task_failing_with_a_runner_error_is_recorded_failed(tmp_path: Path) -> None:
    project = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}, "src": {"url": "sqlite:///var/src.db"}})
    project.job("inc", {"database": "wh", "tasks": [{"name": "l", "load": {
        "source": "src", "query": "SELECT 1 AS id WHERE 1 > :watermark", "table": "copy",
        "incremental": {"column": "updated_at"}}}]})
    outcome = project.run("inc")
    assert outcome.code == 1
    assert "incremental column 'updated_at' is not a column of the query's result" in outcome.output
    assert [(a.status, a.task) for a in outcome.attempts] == [("failed", "l")]
    assert "incremental column" in (outcome.attempts[0].error or "")
    ledger = Ledger(project.state_url)
    try:
        assert ledger.history("inc", 1)[0]["status"] == "failed"
    finally:
        ledger.dispose()


def test_a_ledger_deleted_while_a_run_is_going_keeps_the_run_s_history(tmp_path: Path) -> None:
    project = FaultProject(tmp_path, {"wh": {"url": "sqlite:///var/wh.db"}})
    count = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000) SELECT count(*) FROM n"
    project.job("long", {"database": "wh", "tasks": [{"name": "first", "sql": "SELECT 1"},
                                                   {"name": "count", "depends_on": ["first"], "sql": count}]})
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--conf", str(tmp_path / "conf"), "--jobs",
                             str(tmp_path / "jobs"), "--job", "long"], cwd="/", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    from tests.faultkit import wait_until

    wait_until(lambda: project.attempts_so_far("long") >= 2 or proc.poll() is not None, timeout=30,
               what="the second task to start")
    state_file(project).unlink()  # as `rm var/state.db` would
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "was deleted or replaced while run" in err and "the run is recorded in it" in err
    ledger = Ledger(project.state_url)
    try:
        [run] = ledger.history("long")
        assert run["status"] == "success"
        assert [(a.task, a.status) for a in ledger.attempts_of(run["run_id"])] == [("first", "success"),
                                                                                    ("count", "success")]
    finally:
        ledger.dispose()


def _pg_state(project: FaultProject, url: str) -> None:
    (project.root / "conf" / "runner.yml").write_text(f"timezone: UTC\nstate_url: '{url}'\n")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_postgres_state_store_that_cannot_be_used_is_diagnosed_as_mysql_ones_are(
        project: FaultProject, pg: PostgresServer, fresh_pg: str) -> None:
    host = f"{pg.host}:{pg.port}"
    pg.execute(fresh_pg, "CREATE ROLE runner_weak LOGIN", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        cases = [  # (state url, what the error says is wrong and what to do)
            (f"postgresql://etl:s3cret@127.0.0.1:{_free_port()}/{fresh_pg}", "the server cannot be reached: check "
                                                                             "that it is up and the host and port"),
            (f"postgresql://{pg.user}@{host}/no_such_db", "the database does not exist: create it"),
            (f"postgresql://nobody:s3cret@{host}/{fresh_pg}", "the server refused the user or password"),
            (f"postgresql://runner_weak:s3cret@{host}/{fresh_pg}", "the user lacks privileges: GRANT it USAGE and CREATE "
                                                                  "on the schema"),
        ]
        for url, says in cases:
            _pg_state(project, url)
            done = run_cli(project, "--job", "job")
            assert done.returncode == 2, (url, done.stderr)
            assert "state store postgresql+psycopg://" in done.stderr and says in done.stderr, (url, done.stderr)
            assert "s3cret" not in done.stderr and "Traceback" not in done.stderr, done.stderr
            assert "unexpected error" not in done.stderr and "see the error" not in done.stderr, done.stderr
            assert not (project.root / "var" / "wh.db").exists()  # nothing ran
    finally:
        pg.execute(fresh_pg, "DROP OWNED BY runner_weak", "DROP ROLE runner_weak")
