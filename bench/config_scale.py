"""How checking configuration scales: with the size of the SQL a job holds, and with the number of job files.

1. SQL text checked: `--check` of a job whose sql_file holds 1, 10 and 100 MB of statements (strings
   holding ; and --, comments, :day placeholders), and of a job holding 1 and 10 MB of SQL inline in
   its YAML. The rate is the size over the time the check takes in this process (start-up, some
   0.4 s, would swamp the small cases); the time and peak memory of `python -m runner --check` are
   shown beside. Baselines of the same bytes: reading them (open, decode), and for the YAML file
   yaml.safe_load (PyYAML's pure-Python loader). Target: at least 5 MB/s.
2. Job files: `--job one`, `--check`, `--list` and `--due` (nothing due) at 10, 100 and 1,000 job
   files, each run in turn with the same command on a project of 1 job file: the ratio, and the cost
   per extra job file. `--job one` reads only its own file, so its ratio stays near 1.

    .venv/bin/python bench/config_scale.py [--rounds 3] [--max-mb 100]

Nothing here gates CI: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGET_MB_S = 5.0

ROW = ("INSERT INTO seed (id, label, day, note) VALUES ({i}, 'row {i}; with a semicolon', :day, "
       "'it''s -- not a comment');\n")


def sql_text(megabytes: float) -> str:
    parts, size, i = [], 0, 0
    goal = int(megabytes * 1_000_000)
    while size < goal:
        chunk = (f"-- batch {i}\n/* a block comment; with a semicolon */\n"
                 + "".join(ROW.format(i=i + k) for k in range(100)))
        parts.append(chunk)
        size += len(chunk)
        i += 100
    return "".join(parts)


def project(root: Path, jobs: dict[str, str], files: dict[str, str] | None = None) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "databases.yml").write_text("wh: {url: 'sqlite:///var/wh.db'}\n")
    (root / "conf" / "runner.yml").write_text("state_url: 'sqlite:///var/state.db'\ntimezone: UTC\n")
    for name, text in jobs.items():
        (root / "jobs" / f"{name}.yml").write_text(text)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# `python -m runner`, telling at exit its peak memory (VmHWM: this process only, not the parent it was
# forked from, which the rusage of a child includes).
_LAUNCH = ("import atexit, runpy, sys\n"
           "def peak():\n"
           "    status = open('/proc/self/status').read()\n"
           "    print('VmHWM', status.split('VmHWM:')[1].split()[0], file=sys.__stderr__)\n"
           "atexit.register(peak)\n"
           "sys.argv = ['runner', *sys.argv[1:]]\n"
           "runpy.run_module('runner', run_name='__main__', alter_sys=True)\n")


def timed(root: Path, *args: str) -> tuple[float, int, int]:
    """(seconds, exit code, peak memory in MB) of one `python -m runner ARGS` on the project."""
    cmd = [sys.executable, "-c", _LAUNCH, "--conf", str(root / "conf"), "-q", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM ")]
    return seconds, done.returncode, int(peak[-1]) // 1024 if peak else -1


def median(root: Path, rounds: int, *args: str) -> tuple[float, int]:
    runs = [timed(root, *args) for _ in range(rounds)]
    return statistics.median(r[0] for r in runs), max(r[2] for r in runs)


def inline_job(sql: str) -> str:
    return "params: {day: '{run_date}'}\ndatabase: wh\ntasks:\n  - name: seed\n    sql: |\n" + "".join(
        "      " + line + "\n" for line in sql.splitlines())


def file_job() -> str:
    return "params: {day: '{run_date}'}\ndatabase: wh\ntasks:\n  - name: seed\n    sql_file: sql/seed.sql\n"


def check_seconds(root: Path, rounds: int) -> float:
    """Median seconds of `--check` done in this process (what a check costs past start-up)."""
    from runner.cli.commands import check
    from runner.config.project import load_project

    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        code = check(load_project(root / "conf"), io.StringIO())
        runs.append(time.perf_counter() - start)
        assert code == 0, f"the benchmark's project is invalid: {root}"
    return statistics.median(runs)


def sql_rates(tmp: Path, rounds: int, max_mb: float) -> None:
    print("SQL text checked: --check in this process (rate = size / time), and python -m runner --check")
    cases = [("sql_file", mb) for mb in (1, 10, 100) if mb <= max_mb] + [("inline", mb) for mb in (1, 10)]
    for kind, mb in cases:
        text = sql_text(mb)
        if kind == "sql_file":
            root = project(tmp / f"file{mb}", {"seed": file_job()}, {"sql/seed.sql": text})
        else:
            root = project(tmp / f"inline{mb}", {"seed": inline_job(text)})
        few = 1 if mb >= 100 else rounds
        seconds = check_seconds(root, few)
        rate = len(text) / 1e6 / seconds
        wall, rss = median(root, few, "--check")
        if kind == "sql_file":
            data = (root / "sql" / "seed.sql").read_bytes()
            start = time.perf_counter()
            data.decode("utf-8")
            base = f"read+decode of the same bytes: {len(data) / 1e6 / (time.perf_counter() - start):.0f} MB/s"
        else:
            job = (root / "jobs" / "seed.yml").read_text()
            start = time.perf_counter()
            yaml.safe_load(job)
            base = f"yaml.safe_load of the same file: {len(job) / 1e6 / (time.perf_counter() - start):.1f} MB/s"
        del text
        print(f"  {kind:<8} {mb:>3} MB: {seconds:6.2f} s, {rate:5.1f} MB/s "
              f"(target >= {TARGET_MB_S}: {'OK' if rate >= TARGET_MB_S else 'BELOW'}); python -m runner --check "
              f"{wall:6.2f} s, peak {rss} MB; baseline {base}")


def scheduled_job(i: int, hour: int = 0) -> str:
    # A daily slot 12 hours ago, past its grace of 1h: the first --due records it missed, after that
    # nothing is due.
    return (f"description: job {i}\nschedule: '{i % 60} {hour} * * *'\ncatch_up: none\ndatabase: wh\n"
            f"params: {{day: '{{run_date}}'}}\ntasks:\n  - name: a\n    sql: DELETE FROM t WHERE day = :day\n"
            f"  - name: b\n    depends_on: [a]\n    sql: INSERT INTO t (day, n) SELECT :day, COUNT(*) FROM s\n")


def job_counts(tmp: Path, rounds: int) -> None:
    print("job files: each command against the same command on a project of 1 job file, run in turn")
    commands = {"--job one": ("--job", "one"), "--check": ("--check",), "--list": ("--list",),
                "--due (nothing due)": ("--due",)}
    roots = {}
    hour = (datetime.now(timezone.utc).hour + 12) % 24
    for n in (1, 10, 100, 1000):
        jobs = {"one": "database: wh\ntasks:\n  - name: one\n    sql: SELECT 1\n"}
        jobs.update({f"job{i:04d}": scheduled_job(i, hour) for i in range(n - 1)})
        roots[n] = project(tmp / f"jobs{n}", jobs)
        timed(roots[n], "--due")  # records the missed slots once; then nothing is due
    for name, args in commands.items():
        line = []
        for n in (10, 100, 1000):
            ones, many = [], []
            for _ in range(rounds):
                ones.append(timed(roots[1], *args)[0])
                many.append(timed(roots[n], *args)[0])
            one, seconds = statistics.median(ones), statistics.median(many)
            per_file = (seconds - one) / (n - 1) * 1000
            line.append(f"{n:>4}: {seconds * 1000:5.0f} ms vs {one * 1000:4.0f} (x{seconds / one:.2f}, "
                        f"{per_file:+.2f} ms/file)")
        print(f"  {name:<20} " + " | ".join(line))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-mb", type=float, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sql_rates(Path(tmp), args.rounds, args.max_mb)
        job_counts(Path(tmp), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
