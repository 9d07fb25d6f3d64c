"""Start-up cost of `python -m runner --job` against a bare import of the core libraries.

Runs, alternated in the same session for several rounds:
  runner:   python -m runner --job one --conf <tmp project>/conf   (a one-statement SQLite job)
  baseline: python -c "import sqlalchemy, pymysql, yaml, tenacity"
and prints both medians and their ratio (target: at most 1.3).

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
        runner = [sys.executable, "-m", "runner", "--job", "one", "--conf", str(root / "conf"), "-q"]
        baseline = [sys.executable, "-c", "import sqlalchemy, pymysql, yaml, tenacity"]
        timed(runner, env), timed(baseline, env)  # warm the page cache and .pyc files
        runs: list[float] = []
        bases: list[float] = []
        for _ in range(args.rounds):
            runs.append(timed(runner, env))
            bases.append(timed(baseline, env))
    r, b = statistics.median(runs), statistics.median(bases)
    ratio = r / b
    print(f"runner --job (one SQLite statement): median {r * 1000:.1f} ms over {args.rounds} runs")
    print(f"import sqlalchemy, pymysql, yaml, tenacity: median {b * 1000:.1f} ms over {args.rounds} runs")
    print(f"ratio {ratio:.2f} (target <= {TARGET}) {'OK' if ratio <= TARGET else 'ABOVE TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
