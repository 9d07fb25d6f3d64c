"""PostgreSQL as a load's target and source, on the private servers: every awkward value of the
fidelity set through each path (MariaDB -> PostgreSQL by COPY CSV the source renders, SQLite ->
PostgreSQL by psycopg's COPY, PostgreSQL -> MariaDB by LOAD DATA lines encoded in the runner,
PostgreSQL -> PostgreSQL), compared by count, sums and a checksum over all rows; a NUL character,
which PostgreSQL's text cannot hold, refused with the line and column; an upsert without a unique key
refused on every target; the same exactly-once marker and watermark as elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.faultkit import FaultProject, execute, rows_of
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.postgres import PrivatePostgres
from tests.loadkit import (COLUMNS, create_fidelity_mariadb, create_fidelity_sqlite, fidelity_rows, mariadb_rows,
                           mysql_db, other_db, table_digest)

assert other_db  # a fixture

NO_NUL = "WHERE id % 15 <> 10"  # the rows whose s holds a NUL: PostgreSQL's text holds every character but NUL
PG_DDL = ("CREATE TABLE src (id INT PRIMARY KEY, s VARCHAR(200), b BYTEA, d NUMERIC(38,10), dt TIMESTAMP(6), "
          "da DATE, f DOUBLE PRECISION, t TEXT)")


def load_job(table: str, query: str, **extra: object) -> dict[str, object]:
    return {"database": "dst", "tasks": [{"name": "copy", "load": {"source": "src", "query": query, "table": table,
                                                                   **extra}}]}


def pg_rows(pg: PrivatePostgres, db: str, table: str) -> list[tuple[Any, ...]]:
    return pg.rows(db, f"SELECT {', '.join(COLUMNS)} FROM {table}")


def without_nul(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    kept = [r for r in rows if r[0] % 15 != 10]
    assert all("\x00" not in (r[1] or "") for r in kept) and len(kept) < len(rows)
    return kept


def test_mariadb_to_postgres_by_copy_keeps_every_value(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                       pg: PrivatePostgres, fresh_pg: str) -> None:
    rows = without_nul(create_fidelity_mariadb(mdb, fresh_db))
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": {"url": pg.url(fresh_pg)}})
    outcome = project.run(project.job("copy", load_job("copy_of_src", f"SELECT * FROM src {NO_NUL}")))
    assert outcome.code == 0, outcome.output
    assert "by COPY FROM STDIN" in outcome.output
    assert table_digest(pg_rows(pg, fresh_pg, "copy_of_src")) == table_digest(rows)
    types = dict(pg.rows(fresh_pg, "SELECT column_name, format_type(atttypid, atttypmod) FROM "
                                   "information_schema.columns JOIN pg_attribute ON attrelid = 'copy_of_src'::regclass "
                                   "AND attname = column_name WHERE table_name = 'copy_of_src'"))
    assert types == {"id": "integer", "s": "character varying(200)", "b": "bytea", "d": "numeric(38,10)",
                     "dt": "timestamp without time zone", "da": "date", "f": "double precision", "t": "text"}
    assert pg.rows(fresh_pg, "SELECT is_nullable FROM information_schema.columns WHERE table_name = "
                             "'copy_of_src' AND column_name = 'id'") == [("NO",)]


def test_a_nul_character_is_refused_naming_line_and_column(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                           pg: PrivatePostgres, fresh_pg: str) -> None:
    create_fidelity_mariadb(mdb, fresh_db)
    execute(mdb, fresh_db, "INSERT INTO src (id, s) VALUES (5000, CONCAT('ctrl-z ', CHAR(26), ' kept'))")
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": {"url": pg.url(fresh_pg)}})
    outcome = project.run(project.job("copy", load_job("copy_of_src", "SELECT id, s FROM src")))
    assert outcome.code == 1
    assert "SQLSTATE 22021" in outcome.attempts[0].error and "0x00" in outcome.output
    assert "CONTEXT: COPY copy_of_src, line" in outcome.output
    assert pg.rows(fresh_pg, "SELECT to_regclass('copy_of_src')") == [(None,)]  # rolled back, CREATE included
    ok = project.run(project.job("copy", load_job("copy_of_src", f"SELECT id, s FROM src {NO_NUL}")))
    assert ok.code == 0, ok.output
    assert pg.rows(fresh_pg, "SELECT s FROM copy_of_src WHERE id = 5000") == [("ctrl-z \x1a kept",)]


def test_sqlite_to_postgres_keeps_every_value(tmp_path: Path, pg: PrivatePostgres, fresh_pg: str) -> None:
    source = tmp_path / "source.db"
    rows = without_nul(create_fidelity_sqlite(str(source)))
    project = FaultProject(tmp_path, {"src": {"url": f"sqlite:///{source}"}, "dst": {"url": pg.url(fresh_pg)}})
    pg.execute(fresh_pg, PG_DDL.replace("src", "copy_of_src"))
    outcome = project.run(project.job("copy", load_job("copy_of_src", f"SELECT * FROM src {NO_NUL}",
                                                       mode="replace")))
    assert outcome.code == 0, outcome.output
    assert "by COPY FROM STDIN" in outcome.output
    assert table_digest(pg_rows(pg, fresh_pg, "copy_of_src")) == table_digest(rows)


@pytest.fixture
def pg_source(pg: PrivatePostgres, fresh_pg: str) -> list[tuple[Any, ...]]:
    rows = without_nul(fidelity_rows())
    pg.execute(fresh_pg, PG_DDL)
    with pg.connect(fresh_pg) as conn:
        conn.cursor().executemany(f"INSERT INTO src VALUES ({', '.join(['%s'] * 8)})", rows)
    return rows


def test_postgres_to_mariadb_by_load_data_keeps_every_value(tmp_path: Path, pg: PrivatePostgres, fresh_pg: str,
                                                            pg_source: list, mdb: PrivateMariaDB,
                                                            other_db: str) -> None:
    project = FaultProject(tmp_path, {"src": {"url": pg.url(fresh_pg)}, "dst": mysql_db(mdb, other_db)})
    outcome = project.run(project.job("copy", load_job("copy_of_src", "SELECT * FROM src", batch_rows=9)))
    assert outcome.code == 0, outcome.output
    assert "by LOAD DATA LOCAL INFILE" in outcome.output
    assert table_digest(mariadb_rows(mdb, other_db, "copy_of_src")) == table_digest(pg_source)
    assert dict(rows_of(mdb, other_db, "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
                                       f"TABLE_SCHEMA = '{other_db}' AND TABLE_NAME = 'copy_of_src'"))["d"] == \
        "decimal(38,10)"


def test_postgres_to_postgres_incremental_keeps_every_value(tmp_path: Path, pg: PrivatePostgres, fresh_pg: str,
                                                            pg_source: list) -> None:
    other = fresh_pg + "_b"
    pg.create_database(other)
    try:
        project = FaultProject(tmp_path, {"src": {"url": pg.url(fresh_pg)}, "dst": {"url": pg.url(other)}})
        job = project.job("copy", load_job("copy_of_src", "SELECT * FROM src WHERE id > :watermark",
                                           incremental={"column": "id"}, mode="upsert", key=["id"]))
        first = project.run(job)
        assert first.code == 0, first.output
        pg.execute(fresh_pg, "INSERT INTO src (id, s) VALUES (5000, 'later')")
        second = project.run(job)
        assert second.code == 0, second.output
        assert [a.rows for a in second.of("copy")] == [1]
        assert table_digest(pg_rows(pg, other, "copy_of_src")) == table_digest(
            pg_source + [(5000, "later") + (None,) * 6])
        assert pg.rows(other, "SELECT task, attempt FROM runner_task_markers") == [("copy", 1), ("copy", 1)]
    finally:
        pg.drop_database(other)


@pytest.mark.parametrize("kind", ["mariadb", "postgresql", "sqlite"])
def test_upsert_without_a_unique_key_is_refused(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                other_db: str, request: pytest.FixtureRequest, kind: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE src (id INT PRIMARY KEY, v INT)", "INSERT INTO src VALUES (1, 1), (2, 2)")
    ddl = "CREATE TABLE t (id INT, v INT)"
    if kind == "mariadb":
        dst, count = mysql_db(mdb, other_db), lambda: rows_of(mdb, other_db, "SELECT COUNT(*) FROM t")
        execute(mdb, other_db, ddl, "INSERT INTO t VALUES (1, 0)")
    elif kind == "postgresql":
        pg, db = request.getfixturevalue("pg"), request.getfixturevalue("fresh_pg")
        dst, count = {"url": pg.url(db)}, lambda: pg.rows(db, "SELECT COUNT(*) FROM t")
        pg.execute(db, ddl, "INSERT INTO t VALUES (1, 0)")
    else:
        import sqlite3

        path = tmp_path / "lite.db"
        conn = sqlite3.connect(path)
        conn.executescript(ddl + "; INSERT INTO t VALUES (1, 0);")
        conn.close()
        dst = {"url": f"sqlite:///{path}"}

        def count() -> list[tuple[int]]:
            c = sqlite3.connect(path)
            try:
                return c.execute("SELECT COUNT(*) FROM t").fetchall()
            finally:
                c.close()
    project = FaultProject(tmp_path, {"src": mysql_db(mdb, fresh_db), "dst": dst})
    outcome = project.run(project.job("up", load_job("t", "SELECT id, v FROM src", mode="upsert", key=["id"])))
    assert outcome.code == 1
    assert ("upsert into t needs a primary key or unique key on exactly (id), the load's key, and the table has "
            "none") in outcome.output
    assert [tuple(r) for r in count()] == [(1,)]


def test_a_missing_source_table_names_the_source_and_the_phase(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "src.db").close()
    project = FaultProject(tmp_path, {"src": {"url": f"sqlite:///{tmp_path / 'src.db'}"},
                                      "dst": {"url": f"sqlite:///{tmp_path / 'dst.db'}"}})
    outcome = project.run(project.job("copy", load_job("t", "SELECT * FROM nosuch")))
    assert outcome.code == 1
    assert "statement: jobs/copy.yml:" in outcome.output and ": SELECT * FROM nosuch" in outcome.output
    assert "during: reading the rows of the load's source src" in outcome.output
    assert f"database: src (sqlite:///{tmp_path / 'src.db'})" in outcome.output
    assert "no such table: nosuch" in outcome.output and "connecting" not in outcome.output


def test_a_load_within_one_sqlite_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "one.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE src (id INTEGER PRIMARY KEY); INSERT INTO src VALUES (1);")
    conn.close()
    project = FaultProject(tmp_path, {"src": {"url": f"sqlite:///{path}"}, "dst": {"url": f"sqlite:///{path}"}})
    outcome = project.run(project.job("copy", load_job("t", "SELECT id FROM src")))
    assert outcome.code == 1
    assert ("source src and the target database dst are the same SQLite file; copy within it with an sql task "
            "(INSERT INTO t SELECT ...) instead of a load") in outcome.output
    assert [a.status for a in outcome.attempts] == ["failed"]
