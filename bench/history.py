"""What a big ledger costs the commands that read it: `--history`, `--history --job X` and `--due`
(nothing due) on a SQLite state store holding 10k and 1M runs, against the same command on an empty
ledger, measured side by side in this run (target: each at most 0.3 s over its empty-ledger figure).

The ledgers are written directly with executemany (runs, one attempt each, slot claims), spread over
the last 347 days so that retention (history_days 400) has nothing to prune; ten daily jobs, each
with its latest slot claimed by a successful run, so `--due` finds nothing due.

    .venv/bin/python bench/history.py [--rounds 5] [--sizes 10000,1000000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner.cron import Schedule  # noqa: E402
from runner.state.jobstate import JobState  # noqa: E402
from runner.state.ledger import attempts, runs  # noqa: E402
from runner.state.slots import SlotLedger, slots  # noqa: E402

JOBS = 10
SCHEDULE = "0 0 * * *"
TARGET = 0.3
CHUNK = 50_000


def make_project(root: Path) -> None:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "databases.yml").write_text("warehouse: {url: 'sqlite:///var/warehouse.db'}\n")
    (root / "conf" / "runner.yml").write_text("state_url: 'sqlite:///var/state.db'\nhistory_days: 400\n")
    for j in range(JOBS):
        (root / "jobs" / f"job{j}.yml").write_text(f"schedule: '{SCHEDULE}'\ndatabase: warehouse\n"
                                                   "tasks:\n  - name: t\n    sql: SELECT 1\n")


def fill(root: Path, count: int) -> float:
    """`count` runs in the project's ledger; returns the seconds it took."""
    started = time.perf_counter()
    ledger = SlotLedger(f"sqlite:///{root / 'var' / 'state.db'}")
    ledger.ensure_schema()
    now = datetime.now(timezone.utc)
    latest = Schedule(SCHEDULE, "UTC").latest_at_or_before(now).replace(tzinfo=None)
    JobState(ledger).see([f"job{j}" for j in range(JOBS)], now - timedelta(days=400))
    for base in range(0, count, CHUNK):
        run_rows, attempt_rows, claim_rows = [], [], []
        for i in range(base, min(count, base + CHUNK)):
            job = f"job{i % JOBS}"
            at = (now - timedelta(seconds=30 * (i + 1))).replace(tzinfo=None)
            slot = latest if i < JOBS else at  # the newest run of each job holds its latest slot
            run_id = uuid.uuid4().hex
            status = "failed" if i % 50 == 7 else "success"
            run_rows.append(dict(run_id=run_id, job=job, run_date=slot.date().isoformat(), slot=slot, trigger="daemon",
                                 host="bench", pid=1, started_at=at, ended_at=at, status=status, attempts=1, rows=10))
            attempt_rows.append(dict(run_id=run_id, task="t", attempt=1, started_at=at, ended_at=at, status=status,
                                     rows=10))
            claim_rows.append(dict(job=job, slot=slot, run_id=run_id, trigger="daemon", host="bench", pid=1,
                                   claimed_at=at))
        with ledger.engine.begin() as conn:
            conn.execute(runs.insert(), run_rows)
            conn.execute(attempts.insert(), attempt_rows)
            conn.execute(slots.insert(), claim_rows)
    ledger.dispose()
    return time.perf_counter() - started


COMMANDS = {
    "--history": ["--history"],
    "--history --job job3": ["--history", "--job", "job3"],
    "--history --status failed": ["--history", "--status", "failed"],
    "--due (nothing due)": ["--due"],
}


def timed(root: Path, args: list[str]) -> float:
    cmd = [sys.executable, "-m", "runner", "--conf", str(root / "conf"), "-q", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    if args == ["--due"] and "nothing due" not in done.stdout:
        raise SystemExit(f"--due found something due in the benchmark ledger: {done.stdout}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="10000,1000000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        roots = {0: Path(tmp) / "empty"}
        make_project(roots[0])
        for size in sizes:
            roots[size] = Path(tmp) / f"runs{size}"
            make_project(roots[size])
            print(f"ledger of {size:,} runs written in {fill(roots[size], size):.1f}s", flush=True)
        for root in roots.values():  # warm: page cache, .pyc files, the ledger's schema
            for argv in COMMANDS.values():
                timed(root, argv)
        worst = 0.0
        print(f"\nmedian of {args.rounds} rounds, each command alternated with its empty-ledger baseline")
        print(f"{'command':<28}{'runs':>11}{'median':>10}{'empty':>10}{'over':>9}")
        for name, argv in COMMANDS.items():
            for size in sizes:
                big, empty = [], []
                for _ in range(args.rounds):
                    big.append(timed(roots[size], argv))
                    empty.append(timed(roots[0], argv))
                b, e = statistics.median(big), statistics.median(empty)
                worst = max(worst, b - e)
                print(f"{name:<28}{size:>11,}{b * 1000:>8.0f}ms{e * 1000:>8.0f}ms{(b - e) * 1000:>7.0f}ms")
    print(f"\nworst: {worst * 1000:.0f} ms over the empty ledger (target <= {TARGET * 1000:.0f} ms) "
          f"{'OK' if worst <= TARGET else 'ABOVE TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
