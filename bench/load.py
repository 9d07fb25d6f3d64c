"""Speed and memory of a load task, MariaDB to MariaDB, against baselines measured in the same run.

One private MariaDB server (tests/harness) holds database `src` with table t of --rows rows
(BIGINT key, INT, DECIMAL(12,2), VARCHAR(16), DATETIME, nullable VARCHAR(64)); each method copies it
into an empty table of the same definition in database `dst`:

  runner   python -m runner --job copy (a load task, mode append), in a subprocess: wall time and peak RSS
  dump     mariadb-dump --no-create-info src t | mariadb dst                             (baseline a)
  pymysql  hand-written PyMySQL loop: SSCursor, fetchmany(10000), executemany INSERT     (baseline b)
  pandas   pandas read_sql(chunksize=10000) + to_sql(method="multi")                     (baseline c)
  insert-select  INSERT INTO dst.t SELECT * FROM src.t on the server (the ceiling, for reference)

Methods alternate within each round; before each one the target is emptied and the server's dirty
pages are flushed, so every method starts from the same state. Figures are medians over --rounds.
pandas is slow (about 5k rows/s): it runs on the first --pandas-rows rows, once per round.
--scale-rows N also loads N rows with the runner alone and prints its peak RSS, to show memory does
not grow with the row count.

Two more paths, each against its baseline in the same run, on the same rows (`--paths-only` runs just these):

  SQLite -> MariaDB     the runner loading t from a SQLite file      vs  mariadb client LOAD DATA LOCAL INFILE
                                                                         of the same rows as CSV       (baseline d)
  MariaDB -> PostgreSQL the runner loading src.t into a private PostgreSQL  vs  psql \copy of the same rows
                                                                         as CSV                        (baseline e)

Targets (issue 5): runner >= 0.7x dump and >= 3x pymysql; runner peak RSS <= 150 MiB.
Targets (issue 10): SQLite -> MariaDB >= 0.7x (d); MariaDB -> PostgreSQL >= 0.5x (e); peak RSS <= 150 MiB.

    .venv/bin/python bench/load.py                      # 1,000,000 rows, 3 rounds
    .venv/bin/python bench/load.py --rows 100000 --rounds 1 --pandas-rows 20000   # quick
    .venv/bin/python bench/load.py --scale-rows 5000000  # memory at 5M rows as well
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from compiled import compile_runner  # bench/compiled.py

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.mariadb import PrivateMariaDB  # noqa: E402
from tests.harness.postgres import PrivatePostgres  # noqa: E402

MIB = 1024 * 1024
TABLE = """CREATE TABLE {db}.t (
    id BIGINT NOT NULL PRIMARY KEY,
    qty INT NOT NULL,
    price DECIMAL(12,2) NOT NULL,
    code VARCHAR(16) NOT NULL,
    created DATETIME NOT NULL,
    note VARCHAR(64) NULL
)"""
FILL = """INSERT INTO src.t
SELECT seq, seq % 1000, (seq % 100000) / 100, CONCAT('c', seq % 99991),
       '2024-01-01' + INTERVAL (seq % 86400000) SECOND,
       IF(seq % 5 = 0, NULL, CONCAT('note ', seq, ' with a tab\\tand a backslash \\\\'))
FROM src.seq_1_to_{rows}"""


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a running process: its peak resident set since it started this program. (A child's
    ru_maxrss would include the benchmark's own memory, copied into the child before exec.)"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Bench:
    def __init__(self, server: PrivateMariaDB, workdir: Path):
        self.server = server
        self.workdir = workdir
        self.cli = ["-h", server.host, "-P", str(server.port), "-uroot", "--password="]

    def sql(self, *statements: str) -> list[tuple]:
        conn = self.server.connect(db=None, autocommit=True)
        try:
            with conn.cursor() as cur:
                rows: list[tuple] = []
                for s in statements:
                    cur.execute(s)
                    rows = list(cur.fetchall())
                return rows
        finally:
            conn.close()

    def setup(self, rows: int) -> None:
        self.sql("DROP DATABASE IF EXISTS src", "CREATE DATABASE src", TABLE.format(db="src"),
                 FILL.format(rows=rows))

    def fresh_target(self) -> None:
        self.sql("DROP DATABASE IF EXISTS dst", "CREATE DATABASE dst", TABLE.format(db="dst"))
        self.settle()

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until InnoDB has written back the dirty pages and purged the undo of the previous method."""
        deadline = time.monotonic() + timeout
        self.sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        try:
            while time.monotonic() < deadline:
                dirty = int(self.sql("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")[0][1])
                history = int(self.sql("SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length'")[0][1])
                if dirty < 50 and history < 50:
                    return
                time.sleep(0.2)
        finally:
            self.sql("SET GLOBAL innodb_max_dirty_pages_pct = 90")

    def check(self, rows: int) -> None:
        """The target holds the first `rows` rows of the source, value for value."""
        digest = ("SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, qty, price, code, created, IFNULL(note, '-')))) "
                  "FROM {db}.t WHERE id <= {rows}")
        want = self.sql(digest.format(db="src", rows=rows))
        got = self.sql(digest.format(db="dst", rows=rows))
        if want != got or self.sql("SELECT COUNT(*) FROM dst.t")[0][0] != rows:
            raise SystemExit(f"copy is wrong: source {want}, target {got}")

    # ---------------------------------------------------------------------------------------- methods
    def runner_project(self) -> Path:
        root = self.workdir / "project"
        (root / "conf").mkdir(parents=True, exist_ok=True)
        (root / "jobs").mkdir(exist_ok=True)
        base = f"mysql+pymysql://root:@{self.server.host}:{self.server.port}"
        (root / "conf" / "databases.yml").write_text(f"src: {{url: '{base}/src'}}\ndst: {{url: '{base}/dst'}}\n")
        (root / "conf" / "runner.yml").write_text("state_url: 'sqlite:///var/state.db'\n")
        (root / "jobs" / "copy.yml").write_text(
            "database: dst\ntasks:\n  - name: copy\n    load: {source: src, query: 'SELECT * FROM t', table: t}\n")
        return root

    def run_runner(self, root: Path | None = None) -> tuple[float, float]:
        """Seconds and peak RSS (MiB) of `python -m runner --job copy` in a subprocess."""
        root = root or self.runner_project()
        cmd = [sys.executable, "-m", "runner", "--conf", str(root / "conf"), "--job", "copy", "-q"]
        start = time.perf_counter()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            peak = 0
            while proc.poll() is None:
                peak = max(peak, peak_rss_kib(proc.pid))
                time.sleep(0.01)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                out.seek(0)
                raise SystemExit(f"runner failed ({proc.returncode}):\n{out.read().decode()}")
        return seconds, peak / 1024

    def run_dump(self) -> float:
        start = time.perf_counter()
        dump = subprocess.Popen(["mariadb-dump", *self.cli, "--no-create-info", "src", "t"], stdout=subprocess.PIPE)
        load = subprocess.run(["mariadb", *self.cli, "dst"], stdin=dump.stdout, check=True)
        dump.stdout.close()  # type: ignore[union-attr]
        if dump.wait() != 0 or load.returncode != 0:
            raise SystemExit("mariadb-dump | mariadb failed")
        return time.perf_counter() - start

    def run_pymysql(self) -> float:
        import pymysql
        import pymysql.cursors

        start = time.perf_counter()
        src = self.server.connect(db="src", cursorclass=pymysql.cursors.SSCursor)
        dst = self.server.connect(db="dst")
        with src.cursor() as read, dst.cursor() as write:
            read.execute("SELECT id, qty, price, code, created, note FROM t")
            while True:
                rows = read.fetchmany(10000)
                if not rows:
                    break
                write.executemany("INSERT INTO t (id, qty, price, code, created, note) "
                                  "VALUES (%s, %s, %s, %s, %s, %s)", rows)
        dst.commit()
        src.close()
        dst.close()
        return time.perf_counter() - start

    def run_pandas(self, rows: int) -> float | None:
        try:
            import pandas as pd
        except ImportError:
            return None
        import sqlalchemy as sa

        base = f"mysql+pymysql://root:@{self.server.host}:{self.server.port}"
        src, dst = sa.create_engine(f"{base}/src"), sa.create_engine(f"{base}/dst")
        start = time.perf_counter()
        with src.connect().execution_options(stream_results=True) as conn:
            for chunk in pd.read_sql(sa.text(f"SELECT * FROM t ORDER BY id LIMIT {rows}"), conn, chunksize=10000):
                chunk.to_sql("t", dst, if_exists="append", index=False, method="multi")
        seconds = time.perf_counter() - start
        src.dispose()
        dst.dispose()
        return seconds

    def run_insert_select(self) -> float:
        start = time.perf_counter()
        self.sql("INSERT INTO dst.t SELECT * FROM src.t")
        return time.perf_counter() - start


class Paths:
    """SQLite -> MariaDB and MariaDB -> PostgreSQL, each with its baseline, on the rows of src.t."""

    def __init__(self, bench: Bench, pg: "PrivatePostgres", rows: int):
        self.bench, self.pg, self.rows = bench, pg, rows
        self.work = bench.workdir / "paths"
        self.work.mkdir(exist_ok=True)
        self.lite = self.work / "src.db"
        self.mysql_csv = self.work / "rows_mysql.csv"
        self.pg_csv = self.work / "rows_pg.csv"

    def setup(self) -> None:
        """The SQLite source and the two CSV files, all from src.t's rows (not timed)."""
        import sqlite3

        import pymysql.cursors

        conn = sqlite3.connect(self.lite)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, price NUMERIC(12,2) NOT NULL, "
                     "code VARCHAR(16) NOT NULL, created DATETIME NOT NULL, note VARCHAR(64))")
        src = self.bench.server.connect(db="src", cursorclass=pymysql.cursors.SSCursor)
        with src.cursor() as cur, self.mysql_csv.open("w", newline="") as my, self.pg_csv.open("w", newline="") as pg:
            pg_out = csv.writer(pg, lineterminator="\n")
            cur.execute("SELECT id, qty, price, code, created, note FROM t ORDER BY id")
            while True:
                batch = cur.fetchmany(10000)
                if not batch:
                    break
                conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
                                 [(i, q, float(pr), c, str(cr), n) for i, q, pr, c, cr, n in batch])
                for i, q, pr, c, cr, n in batch:
                    my.write(f"{i},{q},{pr},{_my_csv(c)},{cr},{_my_csv(n)}\n")
                    pg_out.writerow((i, q, pr, c, cr, n))
        src.close()
        conn.commit()
        conn.close()
        self.pg.execute("postgres", "DROP DATABASE IF EXISTS bench WITH (FORCE)", "CREATE DATABASE bench")

    def project(self, name: str, source: str, target: str) -> Path:
        root = self.work / name
        (root / "conf").mkdir(parents=True, exist_ok=True)
        (root / "jobs").mkdir(exist_ok=True)
        base = f"mysql+pymysql://root:@{self.bench.server.host}:{self.bench.server.port}"
        (root / "conf" / "databases.yml").write_text(
            f"lite: {{url: 'sqlite:///{self.lite}'}}\nsrc: {{url: '{base}/src'}}\ndst: {{url: '{base}/dst'}}\n"
            f"pg: {{url: '{self.pg.url('bench')}'}}\n")
        (root / "conf" / "runner.yml").write_text("state_url: 'sqlite:///var/state.db'\n")
        (root / "jobs" / "copy.yml").write_text(
            f"database: {target}\ntasks:\n  - name: copy\n    load: {{source: {source}, query: 'SELECT * FROM t', "
            "table: t}\n")
        return root

    def fresh_pg(self) -> None:
        self.pg.execute("bench", "DROP TABLE IF EXISTS t", "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, qty INT NOT "
                        "NULL, price NUMERIC(12,2) NOT NULL, code VARCHAR(16) NOT NULL, created TIMESTAMP NOT NULL, "
                        "note VARCHAR(64))", "CHECKPOINT")

    def check_pg(self) -> None:
        digest = "SELECT COUNT(*), SUM(id), SUM(qty), SUM(price), COUNT(note), SUM(LENGTH(note)) FROM {t}"
        want = [tuple(int(v) for v in r) for r in self.bench.sql(digest.format(t="src.t"))]
        got = [tuple(int(v) for v in r) for r in self.pg.rows("bench", digest.format(t="t"))]
        if want != got:
            raise SystemExit(f"copy into PostgreSQL is wrong: source {want}, target {got}")

    # ---------------------------------------------------------------------------------------- methods
    def sqlite_runner(self, rss: list[float]) -> float:
        seconds, peak = self.bench.run_runner(self.project("lite_to_mariadb", "lite", "dst"))
        rss.append(peak)
        return seconds

    def mariadb_load_data(self) -> float:
        sql = (f"LOAD DATA LOCAL INFILE '{self.mysql_csv}' INTO TABLE dst.t FIELDS TERMINATED BY ',' "
               "OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'")
        start = time.perf_counter()
        subprocess.run(["mariadb", *self.bench.cli, "--local-infile=1", "-e", sql], check=True)
        return time.perf_counter() - start

    def postgres_runner(self, rss: list[float]) -> float:
        seconds, peak = self.bench.run_runner(self.project("mariadb_to_pg", "src", "pg"))
        rss.append(peak)
        return seconds

    def psql_copy(self) -> float:
        start = time.perf_counter()
        subprocess.run(["psql", "-q", "-h", self.pg.host, "-p", str(self.pg.port), "-U", "postgres", "-d", "bench",
                        "-c", f"\\copy t FROM '{self.pg_csv}' WITH (FORMAT csv)"], check=True)
        return time.perf_counter() - start


def _my_csv(value: str | None) -> str:
    """A field of the CSV the mariadb client loads: NULL as \\N, text quoted with backslash escapes."""
    if value is None:
        return "\\N"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def measure_paths(paths: Paths, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    results: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    bench = paths.bench
    mysql_side = [("sqlite-runner", lambda: paths.sqlite_runner(rss["sqlite"])), ("mariadb-load-data",
                                                                                 paths.mariadb_load_data)]
    pg_side = [("pg-runner", lambda: paths.postgres_runner(rss["postgres"])), ("psql-copy", paths.psql_copy)]
    for r in range(rounds):
        for name, run in mysql_side[r % 2:] + mysql_side[:r % 2]:
            bench.fresh_target()
            results.setdefault(name, []).append(run())
            bench.check(paths.rows)
        for name, run in pg_side[r % 2:] + pg_side[:r % 2]:
            paths.fresh_pg()
            results.setdefault(name, []).append(run())
            paths.check_pg()
    return results, rss


def report_paths(rows: int, rounds: int, results: dict[str, list[float]], rss: dict[str, list[float]]) -> None:
    rate = {name: rows / statistics.median(times) for name, times in results.items()}
    print(f"load paths: {rows:,} rows (BIGINT, INT, DECIMAL(12,2), VARCHAR, DATETIME, nullable VARCHAR), median of "
          f"{rounds} round(s)")
    labels = {"sqlite-runner": "runner SQLite -> MariaDB", "mariadb-load-data": "(d) mariadb client LOAD DATA LOCAL, CSV",
              "pg-runner": "runner MariaDB -> PostgreSQL", "psql-copy": "(e) psql \\copy of the same CSV"}
    for name, label in labels.items():
        print(f"  {label:<42} {rate[name]:>10,.0f} rows/s  median {statistics.median(results[name]):7.2f}s")
    a = rate["sqlite-runner"] / rate["mariadb-load-data"]
    b = rate["pg-runner"] / rate["psql-copy"]
    print(f"SQLite -> MariaDB / (d)    = {a:.2f}x (target >= 0.7) {'OK' if a >= 0.7 else 'MISSED'}")
    print(f"MariaDB -> PostgreSQL / (e) = {b:.2f}x (target >= 0.5) {'OK' if b >= 0.5 else 'MISSED'}")
    for path, peaks in (("SQLite -> MariaDB", rss["sqlite"]), ("MariaDB -> PostgreSQL", rss["postgres"])):
        peak = max(peaks)
        print(f"runner peak RSS {path} at {rows:,} rows: {peak:.1f} MiB (target <= 150) "
              f"{'OK' if peak <= 150 else 'MISSED'}")


def measure(bench: Bench, rows: int, name: str, run: Callable[[], float | None],
            results: dict[str, list[float]]) -> float | None:
    bench.fresh_target()
    seconds = run()
    if seconds is not None:
        bench.check(rows)
        results.setdefault(name, []).append(seconds)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pandas-rows", type=int, default=100_000)
    ap.add_argument("--scale-rows", type=int, default=0, help="also load this many rows with the runner alone")
    ap.add_argument("--buffer-pool", default="1G", help="innodb_buffer_pool_size of the private server")
    ap.add_argument("--paths-only", action="store_true", help="only SQLite -> MariaDB and MariaDB -> PostgreSQL")
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    rss: list[float] = []
    compile_runner()
    with tempfile.TemporaryDirectory() as tmp, \
            PrivateMariaDB(extra_args=(f"--innodb-buffer-pool-size={args.buffer_pool}",)) as server:
        bench = Bench(server, Path(tmp))
        bench.setup(args.rows)
        with PrivatePostgres(settings={"shared_buffers": "256MB", "max_wal_size": "2GB"}) as pg:
            paths = Paths(bench, pg, args.rows)
            paths.setup()
            path_results, path_rss = measure_paths(paths, args.rounds)
        report_paths(args.rows, args.rounds, path_results, path_rss)
        if args.paths_only:
            return 0
        pandas_rows = min(args.pandas_rows, args.rows)
        pandas_missing = False

        def runner() -> float:
            seconds, peak = bench.run_runner()
            rss.append(peak)
            return seconds

        methods: list[tuple[str, int, Callable[[], float | None]]] = [
            ("runner", args.rows, runner), ("dump", args.rows, bench.run_dump),
            ("pymysql", args.rows, bench.run_pymysql), ("insert-select", args.rows, bench.run_insert_select)]
        if pandas_rows:
            methods.append(("pandas", pandas_rows, lambda: bench.run_pandas(pandas_rows)))
        bench.sql("CHECKSUM TABLE src.t")  # read the source once so that no method pays for a cold cache
        for r in range(args.rounds):
            for name, rows, run in methods[r % len(methods):] + methods[:r % len(methods)]:  # each leads in turn
                if measure(bench, rows, name, run, results) is None:
                    pandas_missing = True
        scale_rss = None
        if args.scale_rows:
            bench.setup(args.scale_rows)
            bench.fresh_target()
            scale_seconds, scale_rss = bench.run_runner()
            bench.check(args.scale_rows)
    report(args, results, rss, pandas_rows, pandas_missing, scale_rss, scale_seconds if args.scale_rows else None)
    return 0


def report(args: argparse.Namespace, results: dict[str, list[float]], rss: list[float], pandas_rows: int,
           pandas_missing: bool, scale_rss: float | None, scale_seconds: float | None) -> None:
    rate = {name: (pandas_rows if name == "pandas" else args.rows) / statistics.median(times)
            for name, times in results.items()}
    print(f"load benchmark: {args.rows:,} rows MariaDB -> MariaDB on one private server, median of "
          f"{args.rounds} round(s)")
    labels = {"runner": "runner (load task)", "dump": "(a) mariadb-dump | mariadb",
              "pymysql": "(b) PyMySQL SSCursor + executemany", "pandas": "(c) pandas read_sql + to_sql(multi)",
              "insert-select": "INSERT ... SELECT (server only)"}
    for name in ("runner", "dump", "pymysql", "pandas", "insert-select"):
        if name in rate:
            extra = f"  (on {pandas_rows:,} rows)" if name == "pandas" else ""
            print(f"  {labels[name]:<38} {rate[name]:>10,.0f} rows/s  median {statistics.median(results[name]):7.2f}s"
                  f"{extra}")
    if pandas_missing:
        print("  (c) pandas: not installed in this environment; install it to measure this baseline")
    r = rate["runner"]
    ok_a, ok_b = r >= 0.7 * rate["dump"], r >= 3 * rate["pymysql"]
    print(f"runner / (a) dump    = {r / rate['dump']:.2f}x (target >= 0.7) {'OK' if ok_a else 'MISSED'}")
    print(f"runner / (b) pymysql = {r / rate['pymysql']:.2f}x (target >= 3) {'OK' if ok_b else 'MISSED'}")
    if "pandas" in rate:
        print(f"runner / (c) pandas  = {r / rate['pandas']:.1f}x")
    peak = max(rss)
    print(f"runner peak RSS at {args.rows:,} rows: {peak:.1f} MiB (max over rounds; target <= 150) "
          f"{'OK' if peak <= 150 else 'MISSED'}")
    if scale_rss is not None and scale_seconds is not None:
        print(f"runner peak RSS at {args.scale_rows:,} rows: {scale_rss:.1f} MiB "
              f"({args.scale_rows / scale_seconds:,.0f} rows/s) "
              f"{'OK' if scale_rss <= max(peak, 150) else 'HIGHER than at ' + format(args.rows, ',') + ' rows'}")


if __name__ == "__main__":
    sys.exit(main())
