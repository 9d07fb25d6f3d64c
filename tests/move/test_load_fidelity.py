"""Round trips of every awkward value, source and target compared by count, sums and a checksum over all
rows: MariaDB to MariaDB (LOAD DATA LOCAL INFILE, and the INSERT fallback when the server refuses it),
MariaDB to SQLite, SQLite to MariaDB, and an empty result. Real private MariaDB, real SQLite files.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultkit import FaultProject, execute, rows_of
from tests.harness.mariadb import PrivateMariaDB
from tests.loadkit import (COLUMNS, WIDE_ID, create_fidelity_mariadb, create_fidelity_sqlite, mariadb_rows, mysql_db,
                           other_db, sqlite_rows, table_digest)

assert other_db  # a fixture


def load_job(table: str, query: str = "SELECT * FROM src", **extra: object) -> dict[str, object]:
    return {"database": "dst", "tasks": [{"name": "copy", "load": {"source": "src", "query": query, "table": table,
                                                                   **extra}}]}


def column_types(server: PrivateMariaDB, db: str, table: str) -> dict[str, str]:
    return dict(rows_of(server, db, "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                                    f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}'"))


@pytest.fixture
def local_infile_off(mdb: PrivateMariaDB) -> Iterator[None]:
    execute(mdb, None, "SET GLOBAL local_infile = 0")
    try:
        yield
    finally:
        execute(mdb, None, "SET GLOBAL local_infile = 1")


def test_mariadb_to_mariadb_through_load_data_keeps_every_value(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                                other_db: str) -> None:
    rows = create_fidelity_mariadb(mdb, fresh_db)
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": mysql_db(mdb, other_db)})
    outcome = project.run(project.job("copy", load_job("copy_of_src")))
    assert outcome.code == 0, outcome.output
    assert "by LOAD DATA LOCAL INFILE" in outcome.output
    assert [a.rows for a in outcome.of("copy")] == [len(rows)]
    assert table_digest(mariadb_rows(mdb, other_db, "copy_of_src")) == table_digest(rows)
    assert len(mariadb_rows(mdb, other_db, f"copy_of_src WHERE id = {WIDE_ID}")[0][7]) == 3_000_000
    assert column_types(mdb, other_db, "copy_of_src") == {
        "id": "int(11)", "s": "varchar(200)", "b": "varbinary(64)", "d": "decimal(38,10)", "dt": "datetime(6)",
        "da": "date", "f": "double", "t": "longtext"}


def test_refused_local_infile_falls_back_to_insert_and_says_so_once(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str, other_db: str, local_infile_off: None,
        caplog: pytest.LogCaptureFixture) -> None:
    rows = create_fidelity_mariadb(mdb, fresh_db)
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": mysql_db(mdb, other_db)})
    job = load_job("first")
    job["tasks"].append({"name": "again", "depends_on": ["copy"],  # type: ignore[union-attr]
                         "load": {"source": "src", "query": "SELECT * FROM src", "table": "second"}})
    with caplog.at_level(logging.WARNING, logger="runner.load"):
        outcome = project.run(project.job("copy", job))
    assert outcome.code == 0, outcome.output
    assert outcome.output.count("by multi-row INSERT") == 2
    refusals = [r for r in caplog.records if "refuses LOAD DATA LOCAL INFILE" in r.getMessage()]
    assert len(refusals) == 1 and "batched multi-row INSERT instead" in refusals[0].getMessage()
    for table in ("first", "second"):
        assert table_digest(mariadb_rows(mdb, other_db, table)) == table_digest(rows)


def test_mariadb_to_sqlite_keeps_every_value_a_sqlite_number_holds(tmp_path: Path, mdb: PrivateMariaDB,
                                                                    fresh_db: str) -> None:
    """A created table declares DECIMAL(38,10) as NUMERIC: numbers that compare and sum as numbers. The
    fidelity set's 38-digit decimals do not fit a 64-bit float, so the load is refused, naming the column
    and the value, and nothing is written; into a column of TEXT affinity the exact digits are kept."""
    rows = create_fidelity_mariadb(mdb, fresh_db)
    target = tmp_path / "var" / "lite.db"
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": {"url": f"sqlite:///{target}"}})
    refused = project.run(project.job("copy", load_job("copy_of_src", batch_rows=7)))
    assert refused.code == 1
    assert ("job copy task copy: loading into copy_of_src of database dst: column d: the value "
            "-361234567890123456789012.0987654321 cannot be stored exactly in SQLite") in refused.output
    assert [(a.status, a.error is not None) for a in refused.of("copy")] == [("failed", True)]
    assert sqlite_rows_or_none(str(target), "copy_of_src") is None  # the CREATE TABLE was rolled back too
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE copy_of_src (id INTEGER PRIMARY KEY, s TEXT, b BLOB, d VARCHAR(40), dt TEXT, "
                 "da TEXT, f REAL, t TEXT)")
    conn.close()
    outcome = project.run(project.job("copy", load_job("copy_of_src", batch_rows=7)))
    assert outcome.code == 0, outcome.output
    assert "by batched INSERT" in outcome.output
    assert table_digest(sqlite_rows(str(target), "copy_of_src")) == table_digest(rows)


def sqlite_rows_or_none(path: str, table: str) -> list[tuple] | None:
    try:
        return sqlite_rows(path, table)
    except sqlite3.OperationalError:
        return None


def test_sqlite_to_mariadb_keeps_every_value(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    source = tmp_path / "source.db"
    rows = create_fidelity_sqlite(str(source))
    project = FaultProject(tmp_path, {"src": {"url": f"sqlite:///{source}"}, "dst": mysql_db(mdb, fresh_db)})
    outcome = project.run(project.job("copy", load_job("copy_of_src", mode="replace")))
    assert outcome.code == 0, outcome.output
    assert "by LOAD DATA LOCAL INFILE" in outcome.output  # rows encoded in the runner, whatever the source
    assert table_digest(mariadb_rows(mdb, fresh_db, "copy_of_src")) == table_digest(rows)
    types = column_types(mdb, fresh_db, "copy_of_src")
    assert (types["dt"], types["f"], types["b"]) == ("datetime(6)", "double", "longblob")


@pytest.mark.parametrize("target", ["mariadb", "sqlite"])
def test_an_empty_result_creates_the_table_and_loads_nothing(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                             other_db: str, target: str) -> None:
    create_fidelity_mariadb(mdb, fresh_db)
    lite = tmp_path / "var" / "lite.db"
    dst = mysql_db(mdb, other_db) if target == "mariadb" else {"url": f"sqlite:///{lite}"}
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": dst})
    outcome = project.run(project.job("copy", load_job("empty_copy", query="SELECT * FROM src WHERE id < 0")))
    assert outcome.code == 0, outcome.output
    assert [a.rows for a in outcome.of("copy")] == [0]
    found = mariadb_rows(mdb, other_db, "empty_copy") if target == "mariadb" else sqlite_rows(str(lite), "empty_copy")
    assert found == [] and len(COLUMNS) == 8


def test_sqlite_to_mariadb_rendered_by_sqlite_keeps_every_value(tmp_path: Path, mdb: PrivateMariaDB,
                                                                fresh_db: str) -> None:
    """Without a floating-point column, SQLite renders the LOAD DATA lines itself (its printf is exact to 15
    digits, not 17): NULL, '', 'NULL', tabs, newlines, backslashes, quotes, NUL, 4-byte UTF-8, binary and
    38-digit decimals kept as text all arrive as they were."""
    source = tmp_path / "source.db"
    columns = tuple(c for c in COLUMNS if c != "f")
    rows = [tuple(v for c, v in zip(COLUMNS, r) if c != "f") for r in create_fidelity_sqlite(str(source))]
    project = FaultProject(tmp_path, {"src": {"url": f"sqlite:///{source}"}, "dst": mysql_db(mdb, fresh_db)})
    outcome = project.run(project.job("copy", load_job("copy_of_src", f"SELECT {', '.join(columns)} FROM src",
                                                       batch_rows=7)))
    assert outcome.code == 0, outcome.output
    assert "by LOAD DATA LOCAL INFILE" in outcome.output
    got = mariadb_rows(mdb, fresh_db, "copy_of_src", columns)
    assert table_digest(got, columns) == table_digest(rows, columns)
    assert any(r[1] is not None and "\x00" in r[1] for r in got) and any(r[1] == "" for r in got)


def test_sqlite_values_of_another_storage_class_than_their_column_arrive_as_what_they_are(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """SQLite keeps any value in any column: text in an INTEGER column, numbers and a BLOB in a TEXT column,
    text and a number in a BLOB column. Each is rendered by its own storage class, and loads as the same value."""
    source = tmp_path / "source.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, n INTEGER, s TEXT, b BLOB)")
    conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", [
        (1, "12", 7, "text in a blob"), (2, 5, 2.5, 31), (3, None, "café".encode(), b"\x00'\t\n\\"),
        (4, 6, "it's \t\\ NULL", None), (5, 2 ** 63 - 1, "", b"")])
    conn.commit()
    conn.close()
    execute(mdb, fresh_db, "CREATE TABLE copy_of_src (id INT PRIMARY KEY, n BIGINT NULL, s VARCHAR(40) NULL, "
                           "b VARBINARY(40) NULL)")
    project = FaultProject(tmp_path, {"src": {"url": f"sqlite:///{source}"}, "dst": mysql_db(mdb, fresh_db)})
    outcome = project.run(project.job("copy", load_job("copy_of_src", "SELECT id, n, s, b FROM src")))
    assert outcome.code == 0, outcome.output
    assert "by LOAD DATA LOCAL INFILE" in outcome.output
    assert sorted(mariadb_rows(mdb, fresh_db, "copy_of_src", ("id", "n", "s", "b"))) == [
        (1, 12, "7", b"text in a blob"), (2, 5, "2.5", b"31"), (3, None, "café", b"\x00'\t\n\\"),
        (4, 6, "it's \t\\ NULL", None), (5, 2 ** 63 - 1, "", b"")]
