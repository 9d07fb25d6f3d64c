"""Start-up cost of `python -m runner --job` against a bare import of the core libraries.

Runs, alternated in the same session for several rounds:
  runner:   python -m runner --job one --conf <tmp project>/conf   (a one-statement SQLite job)
  baseline: python -c "import sqlalchemy, pymysql, yaml, tenacity"
and prints both medians and their ratio (target: at most 1.3).

The runner's entry point takes its objects out of the cyclic collector's reach before the interpreter's
teardown (runner.cli.main.entry). A third command, the same run through runner.cli.main.main() without
that step, shows how much of the difference is the teardown and how much the runner's own work.

    .venv/bin/python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compiled import compile_runner  # bench/compiled.py

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.3


def make_project(root: Path) -> None:
    (root / "conf").mkdir()
    (root / "jobs").mkdir()
    (root / "conf" / "databases.yml").write_text("warehouse: {url: 'sqlite:///var/warehouse.db'}\n")
    (root / "conf" / "runner.yml").write_text("state_url: 'sqlite:///var/state.db'\n")
    (root / "jobs" / "one.yml").write_text("database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    compile_runner()
    # PYTHONDONTWRITEBYTECODE set to anything, "0" too, stops Python writing bytecode: left out.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root)
        argv = ["--job", "one", "--conf", str(root / "conf"), "-q"]
        runner = [sys.executable, "-m", "runner", *argv]
        baseline = [sys.executable, "-c", "import sqlalchemy, pymysql, yaml, tenacity"]
        full_teardown = [sys.executable, "-c", f"import sys; from runner.cli.main import main; sys.exit(main({argv!r}))"]
        timed(runner, env), timed(baseline, env), timed(full_teardown, env)  # warm the page cache and .pyc files
        runs: list[float] = []
        bases: list[float] = []
        fulls: list[float] = []
        for _ in range(args.rounds):
            runs.append(timed(runner, env))
            bases.append(timed(baseline, env))
            fulls.append(timed(full_teardown, env))
    r, b, f = statistics.median(runs), statistics.median(bases), statistics.median(fulls)
    ratio = r / b
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print(f"runner --job (one SQLite statement): median {r * 1000:.1f} ms over {args.rounds} runs")
    print(f"import sqlalchemy, pymysql, yaml, tenacity: median {b * 1000:.1f} ms over {args.rounds} runs")
    print(f"ratio {ratio:.2f} (target <= {TARGET}) {'OK' if ratio <= TARGET else 'ABOVE TARGET'}")
    print(f"the same run with the interpreter's full teardown: median {f * 1000:.1f} ms, ratio {f / b:.2f}; "
          f"the runner's own work above the baseline: {(f - b) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
