"""Round trips the pool adds to a busy job, counted by the server, and the time per short task.

--tasks short tasks in a row (each: `UPDATE counter SET n = n + 1`, COMMIT) against a private MariaDB
(started with innodb_flush_log_at_trx_commit=2, so that time is spent on round trips, not on fsync),
done five ways in the same run; for each, the deltas of the server's own counters (SHOW GLOBAL
STATUS: Com_admin_commands counts pings, Com_rollback the resets on return; Questions every
statement, Connections the new connections) and the time per task:

  raw            one PyMySQL connection, no pool                                       (baseline)
  stock begin    SQLAlchemy create_engine(pool_pre_ping=True), `with engine.begin()` per task
  stock raw      the same engine, engine.raw_connection() per task (the executor's access path)
  runner pool    runner.db.engines.make_engine (the pool guard), engine.raw_connection() per task
  runner job     runner.run.executor.Runner running one job of --tasks tasks: pool, retry policy,
                 marker row per task (an INSERT of its own, counted in Questions), ledger in SQLite

Target (issue 3): the pool's extra round trips (pings + rollbacks) at most 1% of the statements.

    .venv/bin/python bench/pool_roundtrips.py [--tasks 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from runnerkit import DB, PrivateMariaDB, Runner, job_of, make_project, prepare_server, run, status
from runner.db.engines import make_engine, transaction_ended
from runner.model import Database

COUNTERS = ("Com_admin_commands", "Com_rollback", "Questions", "Connections")
UPDATE = "UPDATE counter SET n = n + 1 WHERE id = 1"
TARGET = 0.01


def raw_work(server: PrivateMariaDB, tasks: int) -> None:
    conn = server.connect(db=DB)
    try:
        cur = conn.cursor()
        for _ in range(tasks):
            cur.execute(UPDATE)
            conn.commit()
    finally:
        conn.close()


def stock_begin(server: PrivateMariaDB, tasks: int) -> None:
    engine = sa.create_engine(server.url(DB), pool_pre_ping=True)
    statement = sa.text(UPDATE)
    try:
        for _ in range(tasks):
            with engine.begin() as conn:
                conn.execute(statement)
    finally:
        engine.dispose()


def pooled_raw(engine: sa.Engine, tasks: int, ended: Callable[[object], None] | None) -> None:
    for _ in range(tasks):
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(UPDATE)
            cur.close()
            raw.commit()
            if ended is not None:
                ended(raw)
        finally:
            raw.close()


def stock_raw(server: PrivateMariaDB, tasks: int) -> None:
    engine = sa.create_engine(server.url(DB), pool_pre_ping=True)
    try:
        pooled_raw(engine, tasks, None)
    finally:
        engine.dispose()


def runner_pool(server: PrivateMariaDB, tasks: int) -> None:
    engine, _ = make_engine(Database("wh", server.url(DB)))
    try:
        pooled_raw(engine, tasks, transaction_ended)
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10000)
    args = parser.parse_args()
    n = args.tasks
    rows = []
    # No fsync at COMMIT: the time per task then shows round trips, not the disk.
    with PrivateMariaDB(extra_args=("--innodb-flush-log-at-trx-commit=2",)) as server, \
            tempfile.TemporaryDirectory() as tmp:
        prepare_server(server, "CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL)",
                       "INSERT INTO counter VALUES (1, 0)")
        project = make_project(Path(tmp), server)
        runner = Runner(project)
        job = job_of("busy", [(f"t{i}", [UPDATE]) for i in range(n)], project)
        run(runner, job_of("warm", [("w", ["SELECT 1"])], project))  # marker table and ledger schema exist
        ways: list[tuple[str, Callable[[], object]]] = [
            ("raw", lambda: raw_work(server, n)),
            ("stock begin", lambda: stock_begin(server, n)),
            ("stock raw", lambda: stock_raw(server, n)),
            ("runner pool", lambda: runner_pool(server, n)),
            ("runner job", lambda: run(runner, job)),
        ]
        watcher = server.connect(db=None)
        try:
            for name, work in ways:
                before = status(watcher, COUNTERS)
                start = time.perf_counter()
                work()
                seconds = time.perf_counter() - start
                after = status(watcher, COUNTERS)
                rows.append((name, {c: after[c] - before[c] for c in COUNTERS}, seconds))
        finally:
            watcher.close()
            runner.close()
    report(n, rows)
    return 0


def report(n: int, rows: list[tuple[str, dict[str, int], float]]) -> None:
    raw_task = rows[0][2] / n
    print(f"{n} short tasks in a row (one UPDATE + COMMIT each); counters are server-side deltas")
    print(f"  {'':12} {'pings':>7} {'rollbacks':>9} {'extra/stmt':>10} {'questions':>9} {'connects':>8} "
          f"{'us/task':>8} {'vs raw':>6}")
    for name, d, seconds in rows:
        extra = d["Com_admin_commands"] + d["Com_rollback"]
        per_task = seconds / n
        print(f"  {name:12} {d['Com_admin_commands']:7d} {d['Com_rollback']:9d} {extra / n:10.2%} "
              f"{d['Questions']:9d} {d['Connections']:8d} {per_task * 1e6:8.1f} {per_task / raw_task:5.2f}x")
    for name, d, _ in rows[3:]:
        extra = (d["Com_admin_commands"] + d["Com_rollback"]) / n
        print(f"{name}: pool adds {extra:.2%} round trips per statement (target <= {TARGET:.0%}: "
              f"{'met' if extra <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    raise SystemExit(main())
