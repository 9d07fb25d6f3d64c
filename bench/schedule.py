"""Scheduling delay of the daemon: 100 jobs each every 5 seconds, and 1,000 jobs each every minute, each
a one-statement SQLite task.

  runner    python -m runner --scheduler on a fresh project (SQLite state store and warehouse) for
            --seconds. Three delays per slot, all from the slot time:
              fire     the slot's claim and its run row committed: the moment another process sees the
                       run row (the daemon decided to run the slot, and claimed it once across hosts). A
                       watcher in this process reads new run rows every millisecond around each slot
                       time; the row's own started_at (stamped before the claim's transaction) is shown
                       as "stamped";
              attempt  the task's attempt as the ledger records it (APScheduler wake-up, ledger reads,
                       the job's lock, the slot claim and the run row are all before it);
              sql      the task's INSERT as it ran, by SQLite's own clock in the row it inserts (the
                       attempt row's commit and the warehouse's write lock come on top).
  baseline  bare APScheduler (BackgroundScheduler, CronTrigger second=*/5, a pool as large as the
            daemon's) running the same INSERT with sqlite3, no ledger, no lock: the floor under the
            runner's figures (fire and attempt = the job function starts).

Both run one after the other in subprocesses, so each has the machine to itself; the runner's slots of
its first five seconds (start-up catch-up) are left out. Peak memory is the daemon's ru_maxrss. Other
processes on the machine move these figures: the load average is printed with them.

Targets: 100 jobs every 5 s (issue 4): attempt delay median <= 50 ms and p99 <= 250 ms; 1,000 jobs
every minute (issue 13): p99 <= 50 ms.

    .venv/bin/python bench/schedule.py                          # 100 jobs every 5 s, 60 s each side
    .venv/bin/python bench/schedule.py --seconds 20             # quick
    .venv/bin/python bench/schedule.py --jobs 1000 --every 60 --seconds 240   # the 1,000-job row
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOBS = 100
EVERY = 5  # seconds between slots; 60 writes a five-field schedule (* * * * *)
NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"  # SQLite's clock, in ms, as the statement runs
INSERT = f"INSERT INTO ticks (job, run_id, at) VALUES (:job, :run_id, {NOW})"


def workers(jobs: int) -> int:
    sys.path.insert(0, str(REPO))
    from runner.schedule.daemon import MAX_WORKERS

    return max(10, min(MAX_WORKERS, jobs + 2))  # as the daemon sizes its pool


def schedule_of(every: int) -> str:
    return "* * * * *" if every == 60 else f"*/{every} * * * * *"


def write_project(root: Path, jobs: int, every: int = EVERY) -> None:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "runner.yml").write_text('state_url: "sqlite:///var/state.db"\nstop_grace: 30\n')
    (root / "conf" / "databases.yml").write_text('wh:\n  url: "sqlite:///var/wh.db"\n')
    for i in range(jobs):
        (root / "jobs" / f"job{i:03d}.yml").write_text(
            f'schedule: "{schedule_of(every)}"\ndatabase: wh\ntasks:\n  - name: tick\n    sql: "{INSERT}"\n')
    (root / "var").mkdir()
    with sqlite3.connect(root / "var" / "wh.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE ticks (job TEXT, run_id TEXT, at TEXT)")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _ms(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds() * 1000


def watch(path: Path, every: int, stop: threading.Event, seen: dict[str, float]) -> None:
    """Stamp each run row with the moment it became visible to another process: new rows are read every
    millisecond from just before each slot time for a while after it (and while rows keep coming), every
    20 ms otherwise (a row seen then is stamped late, never early)."""
    hot = min(every / 2, 3.0)
    while not path.exists() and not stop.wait(0.01):
        pass
    db, last = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30), 0
    while not stop.is_set():
        try:
            rows = db.execute("SELECT rowid, run_id FROM runner_runs WHERE rowid > ?", (last,)).fetchall()
        except sqlite3.OperationalError:  # the tables are not made yet
            rows = []
        stamp = time.time()
        for rowid, run_id in rows:
            seen.setdefault(run_id, stamp)
            last = max(last, rowid)
        since = stamp % every  # since the latest slot time
        if rows or since < hot or every - since < 0.006:
            time.sleep(0.001)
        else:
            time.sleep(min(0.02, every - since - 0.005))
    db.close()


def run_runner(root: Path, seconds: float, every: int = EVERY) -> dict:
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=watch, args=(root / "var" / "state.db", every, stop, seen), daemon=True)
    watcher.start()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--conf", str(root / "conf"), "--scheduler", "-q"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    stop.set()
    watcher.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode}:\n{err[-3000:]}")
    with sqlite3.connect(root / "var" / "state.db") as db:
        db.execute("ATTACH DATABASE ? AS wh", (str(root / "var" / "wh.db"),))
        rows = db.execute("""
            SELECT r.run_id, r.slot, r.status, MIN(a.started_at), MIN(t.at), r.started_at FROM runner_runs r
            LEFT JOIN runner_task_attempts a ON a.run_id = r.run_id
            LEFT JOIN wh.ticks t ON t.run_id = r.run_id
            WHERE r.slot IS NOT NULL GROUP BY r.run_id""").fetchall()
    first = (started.timestamp() + every)
    out: dict = {"fire": [], "stamped": [], "attempt": [], "sql": [], "statuses": {}, "slots": {}}
    for run_id, slot, status, attempt, at, stamped in rows:
        if datetime.fromisoformat(slot).timestamp() < first:
            continue
        out["statuses"][status] = out["statuses"].get(status, 0) + 1
        if attempt is not None and at is not None:
            slot_at = datetime.fromisoformat(slot).replace(tzinfo=timezone.utc).timestamp()
            out["fire"].append((seen[run_id] - slot_at) * 1000)
            out["stamped"].append(_ms(stamped, slot))
            out["attempt"].append(_ms(attempt, slot))
            out["sql"].append(_ms(at, slot))
            out["slots"].setdefault(slot, []).append(out["fire"][-1])
    out["rss_mib"] = usage.ru_maxrss / 1024
    out["cpu_ms_per_run"] = (usage.ru_utime + usage.ru_stime) * 1000 / max(1, len(rows))
    return out


def baseline_worker(root: Path, seconds: float, out: Path, pool: int, jobs: int = JOBS, every: int = EVERY) -> None:
    """Bare APScheduler and sqlite3: the same jobs, nothing recorded but the start times."""
    import threading

    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    local = threading.local()
    starts: list[tuple[float, str]] = []

    def task(job: str) -> None:
        now = time.time()
        starts.append((now - now % every, job))
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = sqlite3.connect(root / "var" / "wh.db", timeout=30)
        db.execute(f"INSERT INTO ticks (job, run_id, at) VALUES (?, ?, {NOW})", (job, f"{now!r}"))
        db.commit()

    sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(pool)},
                                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60})
    trigger = {"second": 0} if every == 60 else {"second": f"*/{every}"}
    for i in range(jobs):
        sched.add_job(task, CronTrigger(**trigger, timezone="UTC"), args=[f"job{i:03d}"])
    sched.start()
    time.sleep(seconds)
    sched.shutdown(wait=True)
    with sqlite3.connect(root / "var" / "wh.db") as db:
        rows = db.execute("SELECT run_id, at FROM ticks").fetchall()
    attempt, sql = [], []
    for run_id, at in rows:
        started = float(run_id)
        slot = started - started % every
        attempt.append((started - slot) * 1000)
        sql.append((datetime.fromisoformat(at).replace(tzinfo=timezone.utc).timestamp() - slot) * 1000)
    out.write_text(json.dumps({"fire": attempt, "attempt": attempt, "sql": sql}))


def run_baseline(root: Path, seconds: float, pool: int, jobs: int = JOBS, every: int = EVERY) -> dict:
    out = root / "baseline.json"
    subprocess.run([sys.executable, __file__, "--baseline-worker", str(root), str(seconds), str(out), str(pool),
                    str(jobs), str(every)], check=True, cwd=REPO)
    return json.loads(out.read_text())


def main() -> None:
    if len(sys.argv) == 8 and sys.argv[1] == "--baseline-worker":
        baseline_worker(Path(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
                        int(sys.argv[7]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long each side runs (default 60)")
    p.add_argument("--jobs", type=int, default=JOBS, help=f"scheduled jobs (default {JOBS})")
    p.add_argument("--every", type=int, default=EVERY, help=f"seconds between slots, a divisor of 60 (default {EVERY})")
    args = p.parse_args()
    jobs, every = args.jobs, args.every
    with tempfile.TemporaryDirectory(prefix="bench-schedule-") as tmp:
        base_root, runner_root = Path(tmp) / "baseline", Path(tmp) / "runner"
        write_project(base_root, jobs, every)
        write_project(runner_root, jobs, every)
        load = os.getloadavg()[0]
        runner = run_runner(runner_root, args.seconds, every)  # first: ru_maxrss of children is a maximum so far
        base = run_baseline(base_root, args.seconds, workers(jobs), jobs, every)
    print(f"{jobs} jobs every {every}s for {args.seconds:.0f}s each; delay from the slot time, in ms; "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores")
    print(f"{'':10} {'runs':>6} {'fire median':>12} {'p99':>7} {'max':>7} {'attempt median':>15} {'p99':>7} "
          f"{'max':>7} {'sql median':>11} {'p99':>7}")
    for name, r in (("baseline", base), ("runner", runner)):
        f, a, s = r["fire"], r["attempt"], r["sql"]
        print(f"{name:10} {len(a):6d} {statistics.median(f):12.1f} {percentile(f, 99):7.1f} {max(f):7.1f} "
              f"{statistics.median(a):15.1f} {percentile(a, 99):7.1f} {max(a):7.1f} "
              f"{statistics.median(s):11.1f} {percentile(s, 99):7.1f}")
    ra, ba = runner["attempt"], base["attempt"]
    print(f"runner / baseline: attempt median {statistics.median(ra) / statistics.median(ba):.1f}x, "
          f"p99 {percentile(ra, 99) / percentile(ba, 99):.1f}x; sql median "
          f"{statistics.median(runner['sql']) / statistics.median(base['sql']):.1f}x")
    st = runner["stamped"]
    print(f"runner fire as its run rows are stamped (started_at, before the claim commits): median "
          f"{statistics.median(st):.1f}, p99 {percentile(st, 99):.1f}, max {max(st):.1f}; fire p99 runner / "
          f"baseline {percentile(runner['fire'], 99) / percentile(base['fire'], 99):.2f}x")
    print(f"runner runs by status: {runner['statuses']}; fire p99 of each slot: "
          f"{' '.join(f'{percentile(v, 99):.0f}' for _, v in sorted(runner['slots'].items()))}")
    print(f"daemon peak memory (ru_maxrss) {runner['rss_mib']:.0f} MiB; CPU {runner['cpu_ms_per_run']:.2f} ms per run "
          f"(start-up included)")
    if jobs >= 1000:
        ok, target = percentile(runner["fire"], 99) <= 50, "fire p99 <= 50 ms"
    else:
        ok, target = statistics.median(ra) <= 50 and percentile(ra, 99) <= 250, "attempt median <= 50 ms, p99 <= 250 ms"
    print(f"targets ({target}): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
