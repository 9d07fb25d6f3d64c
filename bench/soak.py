"""Memory of a busy daemon over time: `python -m runner --scheduler` with 1,000 jobs each every minute
(a one-statement SQLite task each), its resident memory (RSS) and thread count sampled every --every
minutes for --minutes (default: every 10 minutes for an hour).

With --sqlite-cache-kib N every SQLite connection keeps at most N KiB of pages (SQLite's default is
2,000 KiB per connection, and the daemon's pools hold up to 30 connections to the ledger and the jobs'
database): the difference from a run without it is the part of the growth that is SQLite's caches.

With --tracemalloc the daemon runs with Python's tracemalloc on, and each sample also lists the source
lines whose allocations grew most since the first sample after warm-up: a leak shows as lines that
grow at every sample; memory that is only reused (caches at their bound, the allocator's arenas) does
not. tracemalloc slows the daemon down, so fire delays measured then are not the daemon's.

Baseline, measured in the same run: the first sample after the warm-up (the first two minutes, when
the pools, caches and APScheduler's job list are filled); growth is reported against it.

    .venv/bin/python bench/soak.py                                  # an hour, 1,000 jobs
    .venv/bin/python bench/soak.py --minutes 12 --every 2 --tracemalloc
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WARM_UP = 120.0


def write_project(root: Path, jobs: int) -> None:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "var").mkdir()
    (root / "conf" / "runner.yml").write_text('state_url: "sqlite:///var/state.db"\nstop_grace: 30\n')
    (root / "conf" / "databases.yml").write_text('wh:\n  url: "sqlite:///var/wh.db"\n')
    for i in range(jobs):
        (root / "jobs" / f"job{i:04d}.yml").write_text(
            'schedule: "* * * * *"\ndatabase: wh\ntasks:\n  - name: t\n    sql: "SELECT 1"\n')
    with sqlite3.connect(root / "var" / "wh.db") as db:
        db.execute("PRAGMA journal_mode=WAL")


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MiB, threads) of a running process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def runs_recorded(root: Path) -> int:
    try:
        with sqlite3.connect(root / "var" / "state.db", timeout=30) as db:
            return int(db.execute("SELECT COUNT(*) FROM runner_runs").fetchone()[0])
    except sqlite3.Error:
        return 0


def small_sqlite_caches(kib: int) -> None:
    """Every SQLite connection of the process keeps at most `kib` KiB of pages (SQLite's default is
    2,000 KiB per connection): shows how much of the daemon's memory is SQLite's page caches."""
    import sqlalchemy as sa

    @sa.event.listens_for(sa.engine.Engine, "connect")
    def _cache(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute(f"PRAGMA cache_size = -{kib}")


def traced_daemon(conf: str, report: str, every: float, cache_kib: int = 0) -> None:
    """The daemon with tracemalloc on; a thread writes the lines that grew most at each sample."""
    import tracemalloc

    sys.path.insert(0, str(REPO))
    if cache_kib:
        small_sqlite_caches(cache_kib)
    if not report:
        from runner.cli.main import main as run

        sys.exit(run(["--conf", conf, "--scheduler", "-q"]))
    tracemalloc.start(8)

    def sample() -> None:
        time.sleep(WARM_UP)
        first = tracemalloc.take_snapshot()
        while True:
            time.sleep(every)
            snap = tracemalloc.take_snapshot()
            top = snap.compare_to(first, "lineno")[:12]
            traced, _ = tracemalloc.get_traced_memory()
            with open(report, "a") as out:
                out.write(f"--- {time.strftime('%H:%M:%S')} traced {traced / 2**20:.1f} MiB; "
                          f"growth since warm-up by line:\n")
                for stat in top:
                    frame = stat.traceback[0]
                    out.write(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
                              f"{frame.filename.replace(str(REPO) + '/', '')}:{frame.lineno}\n")

    threading.Thread(target=sample, name="soak-tracemalloc", daemon=True).start()
    from runner.cli.main import main

    sys.exit(main(["--conf", conf, "--scheduler", "-q"]))


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--traced-daemon":
        traced_daemon(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--every", type=float, default=10.0, help="minutes between samples (default 10)")
    p.add_argument("--tracemalloc", action="store_true", help="trace the daemon's allocations (slower)")
    p.add_argument("--sqlite-cache-kib", type=int, default=0,
                   help="cap every SQLite connection's page cache (SQLite's default: 2000 KiB)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        root = Path(tmp)
        write_project(root, args.jobs)
        report = root / "tracemalloc.txt"
        conf = str(root / "conf")
        wrapped = args.tracemalloc or args.sqlite_cache_kib
        cmd = ([sys.executable, __file__, "--traced-daemon", conf, str(report) if args.tracemalloc else "",
                str(args.every * 60), str(args.sqlite_cache_kib)]
               if wrapped else [sys.executable, "-m", "runner", "--conf", conf, "--scheduler", "-q"])
        print(f"{args.jobs} jobs every minute for {args.minutes:.0f} min, a sample every {args.every:g} min; "
              f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores"
              + ("; tracemalloc on" if args.tracemalloc else "")
              + (f"; SQLite page caches capped at {args.sqlite_cache_kib} KiB" if args.sqlite_cache_kib else ""),
              flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=open(root / "daemon.log", "w"))
        try:
            time.sleep(WARM_UP)
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited {proc.returncode}:\n{(root / 'daemon.log').read_text()[-3000:]}")
            base, _ = proc_status(proc.pid)
            print(f"{'minute':>7} {'RSS MiB':>8} {'growth':>7} {'threads':>8} {'runs':>8}  (baseline: RSS after "
                  f"{WARM_UP / 60:.0f} min warm-up)", flush=True)
            t = WARM_UP
            while True:
                rss, threads = proc_status(proc.pid)
                print(f"{t / 60:7.0f} {rss:8.1f} {rss - base:+7.1f} {threads:8d} {runs_recorded(root):8d}", flush=True)
                t += args.every * 60
                if t > WARM_UP + args.minutes * 60 + 1:
                    break
                time.sleep(max(0.0, started + t - time.monotonic()))
                if proc.poll() is not None:
                    raise SystemExit(f"the daemon exited {proc.returncode}:\n"
                                     f"{(root / 'daemon.log').read_text()[-3000:]}")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        print(f"daemon exit {code}; load average after {os.getloadavg()[0]:.2f}")
        if args.tracemalloc and report.exists():
            print(report.read_text())


if __name__ == "__main__":
    main()
