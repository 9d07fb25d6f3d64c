"""TPC-H's lineitem at a small scale factor, generated in the test (tpchgen-cli), loaded by the runner
through every path between SQLite, MariaDB and PostgreSQL (each as source and as target), then TPC-H Q1
and Q6 run by the runner on every loaded copy (export tasks, parameters bound by the driver) and compared
with DuckDB's answer on the generated file: exactly, every digit, on MariaDB and PostgreSQL; on SQLite,
whose arithmetic is binary floating point, rounded to the cent (TPC-H's own precision).

Q6 is written as TPC-H writes it, `l_discount BETWEEN :discount - 0.01 AND :discount + 0.01` with
`discount: 0.06` in the job: a float parameter made that 0.06999999999999999 and lost every row at 0.07.
"""

from __future__ import annotations

import csv
import decimal
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.faultkit import FaultProject, execute
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.postgres import PrivatePostgres

SCALE = "0.005"  # about 30,000 lineitem rows
COLUMNS = [("l_orderkey", "INTEGER"), ("l_partkey", "INTEGER"), ("l_suppkey", "INTEGER"), ("l_linenumber", "INTEGER"),
           ("l_quantity", "DECIMAL(15,2)"), ("l_extendedprice", "DECIMAL(15,2)"), ("l_discount", "DECIMAL(15,2)"),
           ("l_tax", "DECIMAL(15,2)"), ("l_returnflag", "CHAR(1)"), ("l_linestatus", "CHAR(1)"),
           ("l_shipdate", "DATE"), ("l_commitdate", "DATE"), ("l_receiptdate", "DATE"),
           ("l_shipinstruct", "CHAR(25)"), ("l_shipmode", "CHAR(10)"), ("l_comment", "VARCHAR(44)")]
DDL = ("CREATE TABLE lineitem (" + ", ".join(f"{n} {t} NOT NULL" for n, t in COLUMNS)
       + ", PRIMARY KEY (l_orderkey, l_linenumber))")

Q1 = """SELECT l_returnflag, l_linestatus, {r}SUM(l_quantity){e} AS sum_qty, {r}SUM(l_extendedprice){e} AS sum_base_price,
       {r}SUM(l_extendedprice * (1 - l_discount)){e} AS sum_disc_price,
       {r}SUM(l_extendedprice * (1 - l_discount) * (1 + l_tax)){e} AS sum_charge, COUNT(*) AS count_order
FROM {table} WHERE l_shipdate <= :ship_before GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus"""
Q6_EXACT = """SELECT SUM(l_extendedprice * l_discount) AS revenue FROM {table}
WHERE l_shipdate >= :since AND l_shipdate < :until AND l_discount BETWEEN :discount - 0.01 AND :discount + 0.01
  AND l_quantity < :quantity"""
# SQLite computes :discount - 0.01 in binary floating point: the bounds are given as values instead.
Q6_SQLITE = """SELECT ROUND(SUM(l_extendedprice * l_discount), 2) AS revenue FROM {table}
WHERE l_shipdate >= :since AND l_shipdate < :until AND l_discount BETWEEN :low AND :high AND l_quantity < :quantity"""
PARAMS = {"ship_before": "1998-09-02", "since": "1994-01-01", "until": "1995-01-01", "quantity": 24, "low": 0.05,
          "high": 0.07}
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def lineitem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tpch")
    tool = shutil.which("tpchgen-cli", path=str(Path(sys.executable).parent))
    assert tool, "tpchgen-cli is one of the test tools (pip install -e .[test])"
    subprocess.run([tool, "csv", "-s", SCALE, "--tables=lineitem", "-o", str(out)], check=True, capture_output=True)
    return out / "lineitem.csv"


@pytest.fixture(scope="module")
def expected(lineitem: Path) -> dict[str, Any]:
    """Q1 and Q6 computed by DuckDB on the generated file, with exact DECIMAL arithmetic."""
    import duckdb

    types = ", ".join(f"'{n}': '{t}'" for n, t in COLUMNS)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE lineitem AS SELECT * FROM read_csv('{lineitem}', header = true, columns = {{{types}}})")
    q1 = con.execute(Q1.format(r="", e="", table="lineitem").replace(":ship_before", "DATE '1998-09-02'")).fetchall()
    q6 = con.execute(Q6_EXACT.format(table="lineitem").replace(":since", "DATE '1994-01-01'")
                     .replace(":until", "DATE '1995-01-01'").replace(":discount", "0.06")
                     .replace(":quantity", "24")).fetchall()
    rows = con.execute("SELECT COUNT(*) FROM lineitem").fetchone()[0]
    con.close()
    assert rows > 29000 and len(q1) == 4 and q6[0][0] > 0
    return {"q1": [tuple(r) for r in q1], "q6": q6[0][0], "rows": rows}


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def seed_sqlite(path: Path, lineitem: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute(DDL)
    with lineitem.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        conn.executemany(f"INSERT INTO lineitem VALUES ({', '.join('?' * len(COLUMNS))})", reader)
    conn.commit()
    conn.close()


def seed_mariadb(server: PrivateMariaDB, db: str, lineitem: Path) -> None:
    execute(server, db, DDL)
    conn = server.connect(db=db, autocommit=True, local_infile=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{lineitem}' INTO TABLE lineitem FIELDS TERMINATED BY ',' "
                        "OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES")
    finally:
        conn.close()


def seed_postgres(pg: PrivatePostgres, db: str, lineitem: Path) -> None:
    pg.execute(db, DDL)
    with pg.connect(db) as conn, conn.cursor().copy("COPY lineitem FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
        copy.write(lineitem.read_bytes())


def test_tpch_q1_and_q6_are_exact_through_every_path(tmp_path: Path, lineitem: Path, expected: dict[str, Any],
                                                     mdb: PrivateMariaDB, fresh_db: str, pg: PrivatePostgres,
                                                     fresh_pg: str) -> None:
    lite, lite_target = tmp_path / "var" / "lite.db", tmp_path / "var" / "lite_target.db"
    lite.parent.mkdir(parents=True)
    seed_sqlite(lite, lineitem)
    seed_mariadb(mdb, fresh_db, lineitem)
    seed_postgres(pg, fresh_pg, lineitem)
    names = ("sqlite", "mariadb", "postgresql")
    # SQLite as a target is a second file: one load cannot read and write one SQLite file
    project = FaultProject(tmp_path, {"sqlite": {"url": f"sqlite:///{lite}"}, "mariadb": {"url": mdb.url(fresh_db)},
                                      "postgresql": {"url": pg.url(fresh_pg)},
                                      "sqlite_target": {"url": f"sqlite:///{lite_target}"}})
    target_db = {"sqlite": "sqlite_target", "mariadb": "mariadb", "postgresql": "postgresql"}
    tasks: list[dict[str, Any]] = []
    for src in names:
        for dst in names:
            tasks.append({"name": f"{src}_to_{dst}", "database": target_db[dst],
                          "load": {"source": src, "query": "SELECT * FROM lineitem", "table": f"from_{src}"}})
    for dst in names:
        for src in names:
            table, after = f"from_{src}", [f"{src}_to_{dst}"]
            exact = dst != "sqlite"
            rounded = ("", "") if exact else ("ROUND(", ", 2)")
            tasks.append({"name": f"q1_{src}_on_{dst}", "database": target_db[dst], "depends_on": after, "export": {
                "query": Q1.format(r=rounded[0], e=rounded[1], table=table), "path": f"out/q1_{src}_on_{dst}.csv"}})
            tasks.append({"name": f"q6_{src}_on_{dst}", "database": target_db[dst], "depends_on": after, "export": {
                "query": (Q6_EXACT if exact else Q6_SQLITE).format(table=table), "path": f"out/q6_{src}_on_{dst}.csv"}})
    job = project.job("tpch", {"params": {**PARAMS, "discount": "DISCOUNT"}, "tasks": tasks})
    text = (project.root / "jobs" / "tpch.yml").read_text().replace("discount: DISCOUNT", "discount: 0.06")
    (project.root / "jobs" / "tpch.yml").write_text(text)  # 0.06 as a YAML number, exactly as a user writes it
    outcome = project.run(job)
    assert outcome.code == 0, outcome.output
    loads = [a for a in outcome.attempts if "_to_" in a.task]
    assert len(loads) == 9 and {a.rows for a in loads} == {expected["rows"]}

    for dst in names:
        for src in names:
            q1 = _rows(project.root / "out" / f"q1_{src}_on_{dst}.csv")
            (q6,), = _rows(project.root / "out" / f"q6_{src}_on_{dst}.csv")
            want_q1 = [(flag, status, *(Decimal(v) for v in sums), count)
                       for flag, status, *sums, count in expected["q1"]]
            got_q1 = [(flag.strip(), status.strip(), *(Decimal(v) for v in sums), int(count))
                      for flag, status, *sums, count in q1]
            if dst == "sqlite":
                want_q1 = [(f, s, *(v.quantize(CENT, decimal.ROUND_HALF_UP) for v in sums), c)
                           for f, s, *sums, c in want_q1]
                got_q1 = [(f, s, *(v.quantize(CENT) for v in sums), c) for f, s, *sums, c in got_q1]
                assert Decimal(q6).quantize(CENT) == expected["q6"].quantize(CENT, decimal.ROUND_HALF_UP), (src, dst)
            else:
                assert Decimal(q6) == expected["q6"], (src, dst)  # every digit
            assert got_q1 == want_q1, (src, dst)
