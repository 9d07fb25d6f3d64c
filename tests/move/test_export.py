"""Exports on the private MariaDB and SQLite: CSV and JSON Lines, gzip, the NULL representation (NULL and
the empty string never mix), row counts in the ledger, and atomic files (a query failing halfway, a real
server error mid-stream, leaves no partial file and an earlier file untouched).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.faultkit import FaultProject, execute
from tests.harness.mariadb import PrivateMariaDB
from tests.loadkit import mysql_db

ROWS = """CREATE TABLE r (id INT PRIMARY KEY, s VARCHAR(50) NULL, d DECIMAL(38,10) NULL, t DATETIME(6) NULL,
                         b VARBINARY(8) NULL)"""
VALUES = ("INSERT INTO r VALUES (1, NULL, NULL, NULL, NULL), (2, '', 1.5, '2024-02-29 23:59:59.000001', X'00FF'), "
          "(3, 'say \"hi\", then\nleave', -123456789012345678901234567.0123456789, '2024-01-01', ''), "
          "(4, 'emoji 😀 and \\\\N', 0, NULL, NULL)")


def export_job(path: str, fmt: str = "csv", compress: bool = False, query: str = "SELECT * FROM r ORDER BY id",
               database: str = "db") -> dict[str, Any]:
    return {"database": database, "tasks": [{"name": "out", "export": {
        "query": query, "path": path, "format": fmt, "compress": compress}}]}


def test_csv_keeps_null_and_the_empty_string_apart(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    execute(mdb, fresh_db, ROWS, VALUES)
    project = FaultProject(tmp_path, {"db": mysql_db(mdb, fresh_db)})
    outcome = project.run(project.job("report", export_job("reports/r_{run_date}.csv")))
    assert outcome.code == 0, outcome.output
    assert [a.rows for a in outcome.of("out")] == [4]
    [path] = (tmp_path / "reports").iterdir()
    assert path.read_bytes().decode() == (
        'id,s,d,t,b\n'
        '1,,,,\n'
        '2,"",1.5000000000,2024-02-29 23:59:59.000001,AP8=\n'
        '3,"say ""hi"", then\nleave",-123456789012345678901234567.0123456789,2024-01-01 00:00:00,""\n'
        '4,emoji 😀 and \\N,0.0000000000,,\n')


def test_jsonl_with_gzip(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    execute(mdb, fresh_db, ROWS, VALUES)
    project = FaultProject(tmp_path, {"db": mysql_db(mdb, fresh_db)})
    outcome = project.run(project.job("report", export_job("reports/r.jsonl.gz", fmt="jsonl", compress=True)))
    assert outcome.code == 0, outcome.output
    lines = gzip.decompress((tmp_path / "reports" / "r.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "s": None, "d": None, "t": None, "b": None},
        {"id": 2, "s": "", "d": "1.5000000000", "t": "2024-02-29 23:59:59.000001", "b": "AP8="},
        {"id": 3, "s": 'say "hi", then\nleave', "d": "-123456789012345678901234567.0123456789",
         "t": "2024-01-01 00:00:00", "b": ""},
        {"id": 4, "s": "emoji 😀 and \\N", "d": "0.0000000000", "t": None, "b": None}]


def test_a_query_failing_halfway_leaves_no_partial_file(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE big (id INT PRIMARY KEY)", "INSERT INTO big SELECT seq FROM seq_1_to_20000")
    project = FaultProject(tmp_path, {"db": mysql_db(mdb, fresh_db)})
    target = tmp_path / "reports" / "big.csv"
    target.parent.mkdir()
    target.write_text("yesterday's complete report\n")
    # the server streams rows 1..14999, then fails at row 15000
    query = "SELECT id, IF(id = 15000, (SELECT 1 UNION SELECT 2), id) AS v FROM big ORDER BY id"
    outcome = project.run(project.job("report", export_job("reports/big.csv", query=query)))
    assert outcome.code == 1 and "1242" in outcome.output
    assert target.read_text() == "yesterday's complete report\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.csv"]  # no temporary file left behind


def test_sqlite_export_counts_rows(tmp_path: Path) -> None:
    db = tmp_path / "var" / "lite.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE r (id INTEGER, s TEXT)")
    conn.executemany("INSERT INTO r VALUES (?, ?)", [(i, None if i % 3 == 0 else f"x{i}") for i in range(2500)])
    conn.commit()
    conn.close()
    project = FaultProject(tmp_path, {"db": {"url": f"sqlite:///{db}"}})
    outcome = project.run(project.job("report", export_job("out/r.csv")))
    assert outcome.code == 0, outcome.output
    assert [a.rows for a in outcome.of("out")] == [2500]
    lines = (tmp_path / "out" / "r.csv").read_text().splitlines()
    assert lines[:4] == ["id,s", "0,", "1,x1", "2,x2"] and len(lines) == 2501
