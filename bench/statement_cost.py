"""Per-statement cost inside a task (the executor's path) against a raw PyMySQL loop on one connection.

A private MariaDB (tests/harness) serves both, alternating in every round:
  raw:     one PyMySQL connection, `cur.execute("SELECT 1"); cur.fetchall()` --statements times, COMMIT
  runner:  one task of --statements `SELECT 1` statements run by runner.executor.Runner: pooled
           connection, statements bound and executed one by one, rows counted, marker row, COMMIT,
           two ledger writes (SQLite); the task's own duration as the runner measures it
Figures are medians over --rounds, per statement; the ratio is the median of the rounds' own ratios (a
round runs both back to back, so a busy moment of the machine weighs on both sides of it). Target
(issue 3): runner at most 1.3x raw.

    .venv/bin/python bench/statement_cost.py [--statements 1000] [--rounds 25]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pymysql

from runnerkit import DB, PrivateMariaDB, Runner, job_of, make_project, prepare_server, run

TARGET = 1.3


def raw_loop(conn: pymysql.connections.Connection, statements: int) -> float:
    start = time.perf_counter()
    with conn.cursor() as cur:
        for _ in range(statements):
            cur.execute("SELECT 1")
            cur.fetchall()
    conn.commit()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    n = args.statements
    with PrivateMariaDB() as server, tempfile.TemporaryDirectory() as tmp:
        prepare_server(server)
        project = make_project(Path(tmp), server)
        runner = Runner(project)
        job = job_of("many", [("select", ["SELECT 1"] * n)], project)
        conn = server.connect(db=DB)
        try:
            run(runner, job)  # warm up: engine, pool, marker table, ledger schema
            raw_loop(conn, n)
            raw, task = [], []
            for _ in range(args.rounds):
                raw.append(raw_loop(conn, n))
                task.append(run(runner, job).tasks[0].seconds)
        finally:
            conn.close()
            runner.close()
    raw_us = statistics.median(raw) / n * 1e6
    task_us = statistics.median(task) / n * 1e6
    ratio = statistics.median(t / r for t, r in zip(task, raw))
    print(f"statements per task: {n}, rounds: {args.rounds} (medians)")
    print(f"  raw PyMySQL loop   {raw_us:8.1f} us/statement  (baseline)")
    print(f"  runner task        {task_us:8.1f} us/statement  {ratio:.2f}x raw  (target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'MISSED'}; rounds' ratios from {min(t / r for t, r in zip(task, raw)):.2f}"
          f" to {max(t / r for t, r in zip(task, raw)):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
