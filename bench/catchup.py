"""Catching up after an outage: 1,000 per-minute jobs whose last run was a day ago (1,439 missed slots
each, 1.4 million in all), on a SQLite, a MariaDB and a PostgreSQL state store (private servers).

  --due     `python -m runner --due` once: it records each job's missed slots and runs its latest slot.
  daemon    `python -m runner --scheduler`: the time from its start until its start-up look has recorded
            every job's missed slots and run every latest slot; then, for the slots due after the outage
            (the next --minutes minutes), the delay from the slot time to its claim (fire) and to the
            task's attempt.
  baselines measured in the same run, on the same store and jobs:
            idle --due    `--due` over the same jobs with nothing due (each has run a slot ten minutes
                          ahead): the floor, reading jobs and ledger; item 6 of issue 13: under 3 s;
            one by one    the former way, one transaction per missed slot, timed for a few jobs and scaled
                          to all of them.

Targets (issue 13): --due and the daemon's start-up look each under 10 s, and the slots after the outage
on time. Other processes on the machine move these figures: the load average is printed with them.

    .venv/bin/python bench/catchup.py                       # 1,000 jobs, all three stores, 2 minutes of daemon
    .venv/bin/python bench/catchup.py --jobs 200 --minutes 1 --stores sqlite
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
import yaml

from compiled import compile_runner  # bench/compiled.py

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner.state.ledger import HOST, runs  # noqa: E402
from runner.state.slots import MissedRecord, SlotLedger, missed_slots, slots  # noqa: E402
from tests.harness.mariadb import PrivateMariaDB  # noqa: E402
from tests.harness.postgres import PrivatePostgres  # noqa: E402

UTC = timezone.utc
SAMPLE_JOBS = 3  # jobs timed the former way, one transaction per missed slot


def write_project(root: Path, jobs: int, state_url: str) -> None:
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "jobs").mkdir(exist_ok=True)
    (root / "var").mkdir(exist_ok=True)
    (root / "conf" / "runner.yml").write_text(yaml.safe_dump({"state_url": state_url, "stop_grace": 30}))
    (root / "conf" / "databases.yml").write_text(yaml.safe_dump({"wh": {"url": "sqlite:///var/wh.db"}}))
    for i in range(jobs):
        (root / "jobs" / f"job{i:04d}.yml").write_text(
            'schedule: "* * * * *"\ndatabase: wh\ntasks:\n  - name: t\n    sql: "SELECT 1"\n')
    with sqlite3.connect(root / "var" / "wh.db") as db:  # the jobs' database: WAL, as bench/schedule.py has it
        db.execute("PRAGMA journal_mode=WAL")


def minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def seed(state_url: str, jobs: int, before: datetime) -> None:
    """Each job's last run: a success at `before` (a day ago; or in the next minutes, so that nothing is
    due until then), written in bulk."""
    ledger = SlotLedger(state_url)
    ledger.ensure_schema()
    at = before.replace(tzinfo=None)
    claim_rows, run_rows = [], []
    for i in range(jobs):
        run_id = uuid.uuid4().hex
        base = dict(job=f"job{i:04d}", slot=at, run_id=run_id, trigger="due", host=HOST, pid=1)
        claim_rows.append(dict(base, claimed_at=at))
        run_rows.append(dict(base, run_date=at.date().isoformat(), started_at=at, ended_at=at, status="success",
                             attempts=1, rows=0))
    with ledger.engine.begin() as conn:
        conn.execute(slots.insert(), claim_rows)
        conn.execute(runs.insert(), run_rows)
    ledger.dispose()


def counts(state_url: str, since: datetime) -> tuple[int, int, int]:
    """(missed stretches recorded, runs of slots at or after `since` that succeeded, slots missed in all)."""
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            spans = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(missed_slots.c.slots), 0))
                                 ).one()
            ran = conn.execute(sa.select(sa.func.count()).select_from(runs).where(
                runs.c.slot >= since.replace(tzinfo=None), runs.c.status == "success")).scalar()
    finally:
        engine.dispose()
    return int(spans[0]), int(ran or 0), int(spans[1])


def runner_args(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner", "--conf", str(root / "conf"), *args]


def timed_due(root: Path) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(runner_args(root, "--due", "-q"), cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode, done.stderr[-2000:]


def one_by_one(state_url: str, outage_slots: int) -> float:
    """Seconds per missed slot recorded the former way, one transaction each (on scratch job names)."""
    ledger = SlotLedger(state_url)
    t0 = datetime(2001, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    n = 0
    for j in range(SAMPLE_JOBS):
        for k in range(min(outage_slots, 400)):
            slot = t0 + timedelta(minutes=k)
            ledger.claim_many([], [MissedRecord(f"scratch{j}", "due", "missed (benchmark)",
                                                listed=((slot, slot.date().isoformat()),))])
            n += 1
    ledger.dispose()
    return (time.perf_counter() - started) / n


def daemon_round(root: Path, state_url: str, jobs: int, minutes: int) -> dict:
    latest = minute(datetime.now(UTC))
    spawned = time.perf_counter()
    log = open(root / "daemon.log", "w")
    proc = subprocess.Popen(runner_args(root, "--scheduler", "-q"), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    look = None
    try:
        deadline = spawned + 120
        while time.perf_counter() < deadline:
            spans, ran, _ = counts(state_url, latest)
            if spans >= jobs and ran >= jobs:
                look = time.perf_counter() - spawned
                break
            time.sleep(0.2)
        after = minute(datetime.now(UTC)) + timedelta(minutes=1)  # the slots due after the outage
        until = after + timedelta(minutes=minutes)
        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds() + 5))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        log.close()
    engine = sa.create_engine(state_url)
    from runner.state.ledger import attempts

    with engine.connect() as conn:
        rows = conn.execute(sa.select(runs.c.slot, sa.func.min(attempts.c.started_at), runs.c.started_at).select_from(
            runs.join(attempts, attempts.c.run_id == runs.c.run_id)).where(
            runs.c.slot >= after.replace(tzinfo=None), runs.c.slot < until.replace(tzinfo=None)).group_by(
            runs.c.run_id)).all()
    engine.dispose()
    delays = sorted((a - s).total_seconds() * 1000 for s, a, _ in rows)
    fires = sorted((f - s).total_seconds() * 1000 for s, _, f in rows)
    return {"look": look, "delays": delays, "fires": fires, "expected": jobs * minutes, "rc": proc.returncode}


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def bench_store(name: str, make_url, jobs: int, minutes: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-catchup-{name}-") as tmp:
        # --due after the outage
        root = Path(tmp) / "due"
        url = make_url(root, "due")
        write_project(root, jobs, url)
        latest = minute(datetime.now(UTC))
        seed(url, jobs, latest - timedelta(days=1))
        secs, rc, err = timed_due(root)
        spans, ran, total = counts(url, latest)
        idle_root = Path(tmp) / "idle"  # the same jobs, each with a run of a slot ten minutes ahead
        idle_url = make_url(idle_root, "idle")
        write_project(idle_root, jobs, idle_url)
        seed(idle_url, jobs, minute(datetime.now(UTC)) + timedelta(minutes=10))
        idle, idle_rc, _ = timed_due(idle_root)
        per_slot = one_by_one(url, 1439)
        # the daemon's start-up look after the same outage, on a fresh store
        root = Path(tmp) / "daemon"
        url = make_url(root, "daemon")
        write_project(root, jobs, url)
        seed(url, jobs, minute(datetime.now(UTC)) - timedelta(days=1))
        d = daemon_round(root, url, jobs, minutes)
    print(f"\n[{name}] {jobs} per-minute jobs, last run a day ago")
    print(f"  --due after the outage   {secs:7.2f} s  exit {rc}; {spans} missed stretches holding {total} slots, "
          f"{ran} latest slots run" + (f"\n{err}" if rc else ""))
    print(f"  idle --due (baseline)    {idle:7.2f} s  exit {idle_rc}: reading jobs and ledger, nothing due")
    before = per_slot * total if total else per_slot * 1439 * jobs
    print(f"  one by one (baseline)    {before:7.1f} s  ({per_slot * 1000:.2f} ms per missed slot, one "
          f"transaction each, timed on {SAMPLE_JOBS} jobs): --due is {before / secs:.0f}x faster")
    look = f"{d['look']:7.2f} s" if d["look"] is not None else "  > 120 s"
    print(f"  daemon start-up look     {look}  (from the process start: every missed slot recorded, every latest "
          f"slot run)")
    ds = d["delays"]
    if ds:
        fs = d["fires"]
        print(f"  slots after the outage   {len(ds)} of {d['expected']} runs; fire (claimed) delay median "
              f"{statistics.median(fs):.0f} ms, p99 {percentile(fs, 99):.0f} ms, max {fs[-1]:.0f} ms; attempt delay "
              f"median {statistics.median(ds):.0f} ms, p99 {percentile(ds, 99):.0f} ms; daemon exit {d['rc']}")
    else:
        print(f"  slots after the outage   no runs recorded; daemon exit {d['rc']} (see its log)")
    ok = secs < 10 and d["look"] is not None and d["look"] < 10 and ds and len(ds) >= d["expected"]
    print(f"  targets (--due and start-up look < 10 s, every later slot run): {'met' if ok else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--minutes", type=int, default=2, help="minutes of daemon slots after the outage (default 2)")
    p.add_argument("--stores", default="sqlite,mariadb,postgresql",
                   help="comma-separated: sqlite, mariadb, postgresql (default: all three)")
    args = p.parse_args()
    compile_runner()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    stores = args.stores.split(",")
    if "sqlite" in stores:
        bench_store("sqlite", lambda root, _: f"sqlite:///{root / 'var' / 'state.db'}", args.jobs, args.minutes)
    if "mariadb" in stores:
        with PrivateMariaDB() as server:
            def make(root: Path, label: str) -> str:
                db = f"catchup_{label}_{uuid.uuid4().hex[:6]}"
                conn = server.connect(db=None, autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE {db}")
                conn.close()
                return server.url(db)

            bench_store("mariadb", make, args.jobs, args.minutes)
    if "postgresql" in stores:
        with PrivatePostgres() as pg:
            def make_pg(root: Path, label: str) -> str:
                db = f"catchup_{label}_{uuid.uuid4().hex[:6]}"
                pg.create_database(db)
                return pg.url(db)

            bench_store("postgresql", make_pg, args.jobs, args.minutes)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
