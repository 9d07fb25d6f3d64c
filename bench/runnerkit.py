"""Shared pieces of the runner's own benchmarks: a project folder pointing at a private MariaDB,
jobs built in Python, and the server's status counters."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any, Iterable

import pymysql
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner.config.project import load_project  # noqa: E402
from runner.run.executor import RunRequest, RunResult, Runner  # noqa: E402
from runner.model import Job, Project, Statement, Task  # noqa: E402
from tests.harness.mariadb import PrivateMariaDB  # noqa: E402

DB = "bench"


def prepare_server(server: PrivateMariaDB, *statements: str) -> None:
    conn = server.connect(db=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
            cur.execute(f"USE {DB}")
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def make_project(root: Path, server: PrivateMariaDB, retry: dict[str, Any] | None = None,
                 pool: dict[str, Any] | None = None) -> Project:
    """A project whose database `wh` is the server's `bench` database; ledger in SQLite under root."""
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "jobs").mkdir(exist_ok=True)
    wh: dict[str, Any] = {"url": server.url(DB)}
    if pool:
        wh["pool"] = pool
    settings: dict[str, Any] = {"state_url": f"sqlite:///{root / 'var' / 'state.db'}"}
    if retry:
        settings["retry"] = retry
    (root / "conf" / "databases.yml").write_text(yaml.safe_dump({"wh": wh}))
    (root / "conf" / "runner.yml").write_text(yaml.safe_dump(settings))
    return load_project(root / "conf", root / "jobs")


def job_of(name: str, tasks: Iterable[tuple[str, list[str]]], project: Project) -> Job:
    """A job of sequential tasks (name, statements) on database wh, with the project's retry policy."""
    built = tuple(Task(name=t, database="wh", statements=tuple(Statement(sql, f"jobs/{name}.yml", i + 1)
                                                               for i, sql in enumerate(sqls)))
                  for t, sqls in tasks)
    return Job(name=name, file=f"jobs/{name}.yml", tasks=built, database="wh", retry=project.settings.retry)


def run(runner: Runner, job: Job) -> RunResult:
    result = runner.run(RunRequest(job, date.today()))
    if not result.ok:
        raise SystemExit(f"benchmark job failed:\n{result.error}")
    return result


def status(conn: pymysql.connections.Connection, names: Iterable[str]) -> dict[str, int]:
    """Global status counters, read on an existing connection (SHOW STATUS is not one of the counters)."""
    wanted = list(names)
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (" + ", ".join(["%s"] * len(wanted)) + ")", wanted)
        return {name: int(value) for name, value in cur.fetchall()}
