"""Helpers of the fault-injection tests: a throw-away project folder, job runs (in the foreground or in a
thread while a fault is caused), the ledger's record of a run, and exact checks of the final data.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pymysql
import yaml

from runner.cli.main import main
from runner.state.ledger import Ledger, TaskAttempt
from tests.harness.mariadb import PrivateMariaDB

# Backoff short enough that a test never waits on it for long, long enough to be a real backoff.
FAST_RETRY = {"attempts": 8, "base_delay": 0.05, "max_delay": 0.3, "window": 30}


class _NoAliases(yaml.SafeDumper):
    """The runner refuses YAML aliases: a value used twice in a test's spec is written out twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False)


def mysql_url(host: str, port: int, db: str, user: str = "root", password: str = "") -> str:
    return f"mysql+pymysql://{user}:{password}@{host}:{port}/{db}"


@dataclass
class Outcome:
    """What one `python -m runner --job NAME` did: exit code, its output, and the ledger's record."""

    code: int
    output: str
    run_id: str | None
    attempts: list[TaskAttempt]

    def of(self, task: str) -> list[TaskAttempt]:
        return [a for a in self.attempts if a.task == task]

    def failed_attempts(self) -> list[TaskAttempt]:
        return [a for a in self.attempts if a.status != "success"]


@dataclass
class FaultProject:
    """A project folder (conf/ and jobs/) in a temporary directory, its ledger in SQLite beside it."""

    root: Path
    databases: dict[str, dict[str, Any]]
    retry: dict[str, Any] = field(default_factory=lambda: dict(FAST_RETRY))

    def __post_init__(self) -> None:
        (self.root / "conf").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(exist_ok=True)
        self.write_conf()

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'var' / 'state.db'}"

    def write_conf(self) -> None:
        settings = {"timezone": "UTC", "state_url": self.state_url, "retry": self.retry}
        (self.root / "conf" / "runner.yml").write_text(yaml.safe_dump(settings))
        (self.root / "conf" / "databases.yml").write_text(yaml.safe_dump(self.databases))

    def job(self, name: str, spec: dict[str, Any]) -> str:
        (self.root / "jobs" / f"{name}.yml").write_text(dump_yaml(spec))
        return name

    def run(self, job: str, *args: str) -> Outcome:
        out = io.StringIO()
        code = main(["--conf", str(self.root / "conf"), "--jobs", str(self.root / "jobs"), "-q",
                     "--job", job, *args], out=out)
        run_id, attempts = self.last_run(job)
        return Outcome(code, out.getvalue(), run_id, attempts)

    def cli(self, *args: str) -> Outcome:
        """`python -m runner` in this process with any arguments; output holds stdout and the log."""
        out = io.StringIO()
        with contextlib.redirect_stderr(out):
            code = main(["--conf", str(self.root / "conf"), "--jobs", str(self.root / "jobs"), *args], out=out)
        return Outcome(code, out.getvalue(), None, [])

    def last_run(self, job: str) -> tuple[str | None, list[TaskAttempt]]:
        ledger = Ledger(self.state_url)
        try:
            runs = ledger.history(job, 1)
            if not runs:
                return None, []
            run_id = runs[0]["run_id"]
            return run_id, ledger.attempts_of(run_id)
        finally:
            ledger.dispose()

    def attempts_so_far(self, job: str) -> int:
        """Attempts recorded for the job's runs so far, read without creating the ledger's tables (the
        job under test may be creating them at this moment)."""
        path = self.root / "var" / "state.db"
        if not path.exists():
            return 0
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM runner_task_attempts a JOIN runner_runs r "
                                "ON a.run_id = r.run_id WHERE r.job = ?", (job,)).fetchone()[0]
        except sqlite3.OperationalError:  # no such table yet
            return 0
        finally:
            conn.close()

    def start(self, job: str, *args: str) -> "Background":
        return Background(lambda: self.run(job, *args))


class Background:
    """A job run in a thread, so the test can cause a fault while it runs."""

    def __init__(self, work: Callable[[], Outcome]):
        self._outcome: Outcome | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(work,), daemon=True, name="job-under-test")
        self._thread.start()

    def _main(self, work: Callable[[], Outcome]) -> None:
        try:
            self._outcome = work()
        except BaseException as exc:  # handed to the test thread by result()
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self, timeout: float = 60) -> Outcome:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the job did not finish within {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


# ------------------------------------------------------------------------------------------- server side

def admin(server: PrivateMariaDB, db: str | None = None) -> pymysql.connections.Connection:
    return server.connect(db=db, autocommit=True)


def execute(server: PrivateMariaDB, db: str | None, *statements: str) -> None:
    conn = admin(server, db)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def rows_of(server: PrivateMariaDB, db: str, sql: str) -> list[tuple[Any, ...]]:
    conn = admin(server, db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def digest(rows: Sequence[tuple[Any, ...]]) -> tuple[int, int, str]:
    """(row count, distinct rows, checksum) of a result: equal digests mean the same rows, once each."""
    text = "\n".join("|".join(map(str, r)) for r in sorted(rows, key=repr))
    return len(rows), len(set(rows)), hashlib.sha256(text.encode()).hexdigest()[:16]


def table_digest(server: PrivateMariaDB, db: str, table: str) -> tuple[int, int, str]:
    return digest(rows_of(server, db, f"SELECT * FROM {table}"))


def statements_running(server: PrivateMariaDB, db: str, like: str) -> list[tuple[int, str]]:
    """(connection id, statement) of each statement running in `db` whose text matches `like`."""
    return [(int(r[0]), str(r[1])) for r in rows_of(
        server, db,
        "SELECT ID, INFO FROM information_schema.PROCESSLIST "
        f"WHERE DB = '{db}' AND COMMAND = 'Query' AND INFO LIKE '{like}' AND ID <> CONNECTION_ID()")]


def wait_for_statement(server: PrivateMariaDB, db: str, like: str, timeout: float = 20,
                       exclude: set[int] = frozenset()) -> tuple[int, str]:
    """Block until a statement matching `like` runs in `db` (on a connection not in `exclude`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for found in statements_running(server, db, like):
            if found[0] not in exclude:
                return found
        time.sleep(0.01)
    raise AssertionError(f"no statement like {like!r} started in {db} within {timeout}s")


def wait_until(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} not reached within {timeout}s")


class Account:
    """A non-SUPER account: read_only and the max_connections limit apply to it (they do not to root)."""

    def __init__(self, server: PrivateMariaDB, db: str):
        self.server = server
        self.user = f"etl_{uuid.uuid4().hex[:8]}"
        self.password = f"pw-{uuid.uuid4().hex[:12]}"
        execute(server, None, f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}'",
                f"GRANT ALL ON `{db}`.* TO '{self.user}'@'%'")

    def url(self, db: str, port: int | None = None) -> str:
        return mysql_url(self.server.host, port or self.server.port, db, self.user, self.password)

    def connect(self, db: str) -> pymysql.connections.Connection:
        return self.server.connect(db=db, user=self.user, password=self.password, autocommit=True)

    def drop(self) -> None:
        try:
            execute(self.server, None, f"DROP USER IF EXISTS '{self.user}'@'%'")
        except pymysql.err.MySQLError:
            pass

