"""Speed of the status pages, and what serving them costs the daemon's schedule.

1. Render: the overview, a job page and two run pages (3 tasks; 200 tasks with retries) of a project
   of 20 scheduled jobs whose SQLite ledger holds 100,000 runs (5,000 a job, 3 attempts each), rendered
   by the WSGI app in this process; side by side with the same pages on an empty ledger (the cost of
   templates and job files alone) and with the overview over real HTTP (waitress); every request is
   rendered (the server's one-second reuse of answers is off here). Target: median at most 100 ms for
   each page on the full ledger.
2. Fire delay: `bench/schedule.py`'s daemon (100 jobs every 5 s) run twice in turn, alone and with its
   web served (`web:` in conf/runner.yml) while a client requests the overview in a loop, one request
   after the other (the server as it ships: an answer is served again for a second, so the page is
   rendered about once a second). The attempt delay from the slot time should be the same within noise.

Other processes on the machine move these figures; the load average is printed with them.

    .venv/bin/python bench/web.py                 # 30 s for each daemon run
    .venv/bin/python bench/web.py --seconds 15    # quick
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import schedule as schedule_bench  # noqa: E402  (bench/schedule.py)

from runner.config.project import load_project  # noqa: E402

JOBS = 20
RUNS = 100_000
TARGET_MS = 100.0
ROUNDS = 30


def write_project(root: Path) -> None:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "runner.yml").write_text('state_url: "sqlite:///var/state.db"\n')
    (root / "conf" / "databases.yml").write_text('wh:\n  url: "sqlite:///var/wh.db"\n')
    for i in range(JOBS):
        (root / "jobs" / f"job{i:02d}.yml").write_text(
            f'description: job {i}\nschedule: "*/5 * * * *"\ndatabase: wh\ntasks:\n'
            "  - name: extract\n    sql: SELECT 1\n  - name: load\n    depends_on: [extract]\n    sql: SELECT 2\n"
            "  - name: report\n    depends_on: [load]\n    sql: SELECT 3\n")


def fill_ledger(root: Path, runs: int) -> tuple[str, str]:
    """`runs` runs spread over the jobs, every 5 minutes back from now, 3 attempts each (a failure every
    50th, a missed slot every 97th); plus one run of 200 tasks. The ids of a 3-task run and the wide run."""
    from runner.state.ledger import attempts, runs as runs_table
    from runner.state.slots import SlotLedger

    ledger = SlotLedger(f"sqlite:///{root / 'var' / 'state.db'}")
    ledger.ensure_schema()
    now = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    now -= timedelta(minutes=now.minute % 5)
    per_job = runs // JOBS
    sample = ""
    with ledger.engine.begin() as conn:
        for j in range(JOBS):
            run_rows, tries = [], []
            for i in range(per_job):
                slot = now - timedelta(minutes=5 * (per_job - i))
                run_id = uuid.uuid4().hex
                status = "failed" if i % 50 == 7 else "missed" if i % 97 == 5 else "success"
                seconds = 0 if status == "missed" else 2 + (i * 37 + j) % 40
                run_rows.append(dict(run_id=run_id, job=f"job{j:02d}", run_date=slot.date().isoformat(), slot=slot,
                                     trigger="daemon", host="bench", pid=1, started_at=slot,
                                     ended_at=slot + timedelta(seconds=seconds), status=status,
                                     attempts=0 if status == "missed" else 3, rows=100,
                                     error=None if status == "success" else f"{status}: see the attempts"))
                if status != "missed":
                    for k, task in enumerate(("extract", "load", "report")):
                        t = slot + timedelta(seconds=seconds * k / 3)
                        tries.append(dict(run_id=run_id, task=task, attempt=1, started_at=t,
                                          ended_at=t + timedelta(seconds=seconds / 3),
                                          status="failed" if status == "failed" and k == 2 else "success",
                                          rows=100, errno=None, error=None))
                if j == 7 and i == per_job - 1:
                    sample = run_id
            if run_rows:
                conn.execute(runs_table.insert(), run_rows)
                conn.execute(attempts.insert(), tries)
        if not runs:
            ledger.dispose()
            return "", ""
        wide = uuid.uuid4().hex
        t0 = now - timedelta(hours=1)
        conn.execute(runs_table.insert(), [dict(run_id=wide, job="job00", run_date=t0.date().isoformat(), slot=None,
                                                trigger="manual", host="bench", pid=1, started_at=t0,
                                                ended_at=t0 + timedelta(seconds=700), status="success",
                                                attempts=220, rows=0, error=None)])
        tries = []
        for i in range(200):
            t = t0 + timedelta(seconds=3 * i)
            if i % 10 == 0:
                tries.append(dict(run_id=wide, task=f"task_{i:03d}", attempt=1, started_at=t,
                                  ended_at=t + timedelta(seconds=1), status="retrying", rows=None, errno=1213,
                                  error="Deadlock found when trying to get lock"))
                t += timedelta(seconds=1.5)
            tries.append(dict(run_id=wide, task=f"task_{i:03d}", attempt=2 if i % 10 == 0 else 1, started_at=t,
                              ended_at=t + timedelta(seconds=1.2), status="success", rows=i, errno=None, error=None))
        conn.execute(attempts.insert(), tries)
    ledger.dispose()
    return sample, wide


def call(app: Any, path: str) -> tuple[int, int]:
    out: dict[str, Any] = {}

    def start_response(status: str, headers: list) -> None:
        out["status"] = int(status.split()[0])

    path, _, query = path.partition("?")
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
                         "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO()}, start_response))
    return out["status"], len(body)


def timed(fn: Any, rounds: int = ROUNDS) -> list[float]:
    fn()  # warm: templates compiled, job files read, caches filled
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def render_figures(root: Path, pages: dict[str, str]) -> dict[str, tuple[list[float], int]]:
    from runner.web.app import App
    from runner.web.site import Site

    site = Site(load_project(root / "conf", root / "jobs"))
    app = App(site, fresh_for=0)  # every request rendered
    out = {}
    for name, path in pages.items():
        status, size = call(app, path)
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
        out[name] = (timed(lambda p=path: call(app, p)), size)
    site.close()
    return out


def over_http(root: Path, path: str) -> list[float]:
    from runner.model import WebSpec
    from runner.web.server import Background, WebServer

    server = WebServer(load_project(root / "conf", root / "jobs"), WebSpec("127.0.0.1", 0, ""), fresh_for=0)
    bg = Background(server)
    bg.thread.start()
    try:
        def get() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
        return timed(get)
    finally:
        bg.stop(5)


def render_bench() -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "full"
        write_project(empty)
        write_project(full)
        started = time.perf_counter()
        sample, wide = fill_ledger(full, RUNS)
        filled = time.perf_counter() - started
        fill_ledger(empty, 0)
        pages = {"overview": "/", "job page": "/jobs/job07", "run page (3 tasks)": f"/runs/{sample}",
                 "run page (200 tasks)": f"/runs/{wide}"}
        full_figures = render_figures(full, pages)
        empty_figures = render_figures(empty, {"overview": "/", "job page": "/jobs/job07"})
        http_overview = over_http(full, "/")
    print(f"render: {JOBS} jobs, {RUNS:,} runs in the SQLite ledger (filled in {filled:.1f}s); median (p95) of "
          f"{ROUNDS} renders by the WSGI app, ms; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print(f"{'page':22} {'100k runs':>12} {'empty ledger':>14} {'ratio':>7} {'size':>9}")
    ok = True
    for name, (times, size) in full_figures.items():
        med = statistics.median(times)
        ok = ok and med <= TARGET_MS
        base = empty_figures.get(name)
        base_txt = f"{statistics.median(base[0]):6.1f} ({schedule_bench.percentile(base[0], 95):5.1f})" if base else "-"
        ratio = f"{med / statistics.median(base[0]):6.1f}x" if base else "-"
        print(f"{name:22} {med:6.1f} ({schedule_bench.percentile(times, 95):5.1f}) {base_txt:>14} {ratio:>7} "
              f"{size / 1024:7.0f}KiB")
    print(f"{'overview over HTTP':22} {statistics.median(http_overview):6.1f} "
          f"({schedule_bench.percentile(http_overview, 95):5.1f})")
    print(f"target (median <= {TARGET_MS:.0f} ms for each page): {'met' if ok else 'NOT met'}")
    return ok


# ---------------------------------------------------------------------------------------------- fire delay

class OverviewLoop(threading.Thread):
    """Requests the overview one after the other until stopped (connection refused until the daemon
    listens)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.times: list[float] = []
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                conn.close()
                if r.status == 200:
                    self.times.append((time.perf_counter() - start) * 1000)
                else:
                    self.errors += 1
            except OSError:
                self.errors += 1
                time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fire_delay_bench(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-schedule-") as tmp:
        alone, served = Path(tmp) / "alone", Path(tmp) / "served"
        schedule_bench.write_project(alone, schedule_bench.JOBS)
        schedule_bench.write_project(served, schedule_bench.JOBS)
        port = free_port()
        with open(served / "conf" / "runner.yml", "a") as f:
            f.write(f'web: {{listen: "127.0.0.1:{port}"}}\n')
        load = os.getloadavg()[0]
        base = schedule_bench.run_runner(alone, seconds)
        client = OverviewLoop(port)
        client.start()
        with_web = schedule_bench.run_runner(served, seconds)
        client.stop.set()
        client.join(30)
    print(f"\nfire delay: {schedule_bench.JOBS} jobs every {schedule_bench.EVERY}s for {seconds:.0f}s each; attempt "
          f"delay from the slot time, ms; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'daemon':28} {'runs':>6} {'median':>8} {'p99':>8} {'max':>8}")
    for name, r in (("alone", base), ("serving, overview in a loop", with_web)):
        a = r["attempt"]
        print(f"{name:28} {len(a):6d} {statistics.median(a):8.1f} {schedule_bench.percentile(a, 99):8.1f} "
              f"{max(a):8.1f}")
    ra, ba = with_web["attempt"], base["attempt"]
    print(f"serving / alone: median {statistics.median(ra) / statistics.median(ba):.2f}x, "
          f"p99 {schedule_bench.percentile(ra, 99) / schedule_bench.percentile(ba, 99):.2f}x")
    if client.times:
        print(f"overview requests answered meanwhile: {len(client.times)} "
              f"(median {statistics.median(client.times):.1f} "
              f"ms, p95 {schedule_bench.percentile(client.times, 95):.1f} ms); failed: {client.errors} (before the "
              "daemon listened)")
    print(f"runs by status: alone {base['statuses']}, serving {with_web['statuses']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="how long each daemon runs (default 30)")
    p.add_argument("--render-only", action="store_true", help="skip the fire delay part")
    args = p.parse_args()
    render_bench()
    if not args.render_only:
        fire_delay_bench(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
