"""SQL text: statement splitting with line numbers, placeholders, literal colons, implicit commits."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.config.jobs import load_job
from runner.config.project import load_project
from runner.config.sqltext import bindable, implicit_commit, placeholders, split_statements
from runner.config.statements import prepare
from tests.fixtures.core import write_project


@pytest.mark.parametrize("text, statements", [
    ("SELECT 1", [("SELECT 1", 1)]),
    ("SELECT 1; SELECT 2", [("SELECT 1", 1), ("SELECT 2", 1)]),
    ("SELECT 1;\nSELECT 2;\n", [("SELECT 1", 1), ("SELECT 2", 2)]),
    ("\n\n  SELECT 1;\n  -- nothing after\n", [("SELECT 1", 3)]),
    ("SELECT 'a;b';\nSELECT 2;", [("SELECT 'a;b'", 1), ("SELECT 2", 2)]),
    ('SELECT "a;b"; SELECT `x;y` FROM t;', [('SELECT "a;b"', 1), ("SELECT `x;y` FROM t", 1)]),
    ("SELECT 'it''s;';\nSELECT 2", [("SELECT 'it''s;'", 1), ("SELECT 2", 2)]),
    ("SELECT 'a\\';b';\nSELECT 3", [("SELECT 'a\\';b'", 1), ("SELECT 3", 2)]),  # MySQL backslash escape
    ("INSERT INTO t VALUES ('a\nb;c');\nSELECT 4", [("INSERT INTO t VALUES ('a\nb;c')", 1), ("SELECT 4", 3)]),
    ("-- c1; not a statement\n-- c2\nSELECT 1;\n\n/* x; y */\nSELECT 2;",
     [("-- c1; not a statement\n-- c2\nSELECT 1", 3), ("/* x; y */\nSELECT 2", 6)]),
    ("SELECT 1 -- trailing; comment\n;\nSELECT 2", [("SELECT 1 -- trailing; comment", 1), ("SELECT 2", 3)]),
    ("/* multi\nline; */ SELECT 1;\nSELECT 2 # hash; comment\n;",
     [("/* multi\nline; */ SELECT 1", 2), ("SELECT 2 # hash; comment", 3)]),
    ("SELECT 1;;SELECT 2", [("SELECT 1", 1), ("SELECT 2", 1)]),
    ("-- only a comment; really\n/* and; another */\n", []),
    ("", []),
])
def test_split_statements(text: str, statements: list[tuple[str, int]]) -> None:
    got = split_statements(text, "jobs/x.yml", 1)
    assert [(s.sql, s.line) for s in got] == statements
    assert all(s.file == "jobs/x.yml" for s in got)


def test_split_statements_counts_from_the_first_line_given() -> None:
    got = split_statements("DELETE FROM t;\n\nINSERT INTO t VALUES (1);", "jobs/x.yml", 40)
    assert [(s.where, s.first_line) for s in got] == [("jobs/x.yml:40", "DELETE FROM t"),
                                                      ("jobs/x.yml:42", "INSERT INTO t VALUES (1)")]


@pytest.mark.parametrize("sql, names", [
    ("SELECT :day", ["day"]),
    ("SELECT :day WHERE x = :day AND y = :region", ["day", "region"]),
    ("SELECT :a1, :_b", ["a1", "_b"]),
    ("SELECT ':x', :y", ["y"]),
    ("SELECT '10:30' AS t, :a", ["a"]),
    ("SELECT x FROM t WHERE t = '12:00:00'", []),
    ("SELECT TIMESTAMP '2026-11-01 02:30:00'", []),
    ('SELECT "a:b", `c:d`, :e', ["e"]),
    ("-- :c\nSELECT :d", ["d"]),
    ("SELECT /* :f */ :g", ["g"]),
    ("SELECT 1 # :h\n", []),
    ("SELECT 'it''s :not' , :yes", ["yes"]),
])
def test_placeholders_ignore_colons_in_literals_and_comments(sql: str, names: list[str]) -> None:
    assert placeholders(sql) == names


@pytest.mark.parametrize("sql, commits", [
    ("CREATE TABLE t (a INT)", True),
    ("create table if not exists t (a int)", True),
    ("-- note\nCREATE INDEX i ON t (a)", True),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", True),
    ("CREATE OR REPLACE TABLE t (a INT)", True),
    ("ALTER TABLE t ADD c INT", True),
    ("DROP TABLE t", True),
    ("RENAME TABLE a TO b", True),
    ("TRUNCATE TABLE t", True),
    ("GRANT SELECT ON *.* TO u", True),
    ("LOCK TABLES t WRITE", True),
    ("ANALYZE TABLE t", True),
    ("CREATE TEMPORARY TABLE t (a INT)", False),
    ("create or replace temporary table t (a int)", False),
    ("DROP TEMPORARY TABLE IF EXISTS t", False),
    ("INSERT INTO t VALUES (1)", False),
    ("UPDATE t SET a = 1", False),
    ("DELETE FROM t", False),
    ("SELECT 'CREATE TABLE x'", False),
    ("WITH x AS (SELECT 1) SELECT * FROM x", False),
    ("SET @a = 1", False),
])
def test_implicit_commit(sql: str, commits: bool) -> None:
    assert implicit_commit(sql) is commits


def big_insert(rows: int) -> str:
    """One INSERT of `rows` rows: past sqlparse's default cap of 10,000 tokens from about 700 rows."""
    values = ",\n".join(f"({i}, 'row {i}', :run_date)" for i in range(rows))
    return f"INSERT INTO big (id, label, day) VALUES\n{values};\n"


def test_a_statement_of_many_thousand_tokens_is_split_and_parsed() -> None:
    (stmt,) = split_statements("-- seed\n" + big_insert(1500), "sql/big.sql", 1)
    assert (stmt.line, stmt.first_line) == (2, "INSERT INTO big (id, label, day) VALUES")
    assert placeholders(stmt.sql) == ["run_date"]
    assert implicit_commit(stmt.sql) is False
    assert bindable(stmt.sql).count(":run_date") == 1500


def test_a_statement_nested_deeply_is_split_and_its_placeholders_found() -> None:
    deep = "SELECT " + "(" * 500 + ":x" + ")" * 500
    got = split_statements(f"SELECT 1;\n\n{deep};\nSELECT 2", "sql/deep.sql", 1)
    assert [s.line for s in got] == [1, 3, 4]
    assert placeholders(got[1].sql) == ["x"]


@pytest.mark.parametrize("text, statements", [
    ("CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\nSELECT 3;",
     [("CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND", 1), ("SELECT 3", 6)]),
    ("CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN IF NEW.a < 0 THEN SET NEW.a = 0; END IF; END;\n"
     "INSERT INTO x VALUES (1)",
     [("CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN IF NEW.a < 0 THEN SET NEW.a = 0; END IF; END", 1),
      ("INSERT INTO x VALUES (1)", 2)]),
    ("BEGIN; INSERT INTO t VALUES (1); COMMIT;", [("BEGIN", 1), ("INSERT INTO t VALUES (1)", 1), ("COMMIT", 1)]),
    ("SELECT 'a\\\\'; SELECT 'b'", [("SELECT 'a\\\\'", 1), ("SELECT 'b'", 1)]),  # '\\' is one backslash
    ("SELECT $$a;b$$; SELECT 2", [("SELECT $$a;b$$", 1), ("SELECT 2", 1)]),  # PostgreSQL dollar quoting
    ("/*!40101 SET NAMES utf8 */;\nSELECT 1", [("/*!40101 SET NAMES utf8 */", 1), ("SELECT 1", 2)]),
    ("SELECT 1; -- after\nSELECT 2", [("SELECT 1; -- after", 1), ("SELECT 2", 2)]),
])
def test_statements_with_blocks_quotes_and_executable_comments(text: str, statements: list[tuple[str, int]]) -> None:
    assert [(s.sql, s.line) for s in split_statements(text, "sql/x.sql", 1)] == statements


PIECES = ["SELECT 1", "SELECT 'a;b'", 'SELECT "x;y"', "SELECT `c;d` FROM t", "-- note; here\n", "/* block; */",
          "INSERT INTO t VALUES (1, 'it''s', :day)", "SELECT CASE WHEN a THEN 1 END FROM t", "UPDATE t SET a = :v",
          "SELECT '10:30', x::int", "\n\n", "  ", "# hash; comment\n", "SELECT (1 + (2))", "DELETE FROM t",
          "SELECT 'a\\';b'", ";", "SELECT end_date FROM weekend", "SELECT t.end FROM t"]


def test_statements_split_as_sqlparse_splits_them() -> None:
    """Without blocks, the fast split agrees with sqlparse's, statement by statement and line by line."""
    import random

    import sqlparse

    rng = random.Random(7)
    for _ in range(400):
        text = "".join(rng.choice(PIECES) + rng.choice([";", "; ", ";\n", " ", "\n"]) for _ in range(rng.randint(1, 8)))
        expected, cursor = [], 0
        for raw in sqlparse.split(text):
            start = text.find(raw, cursor)
            cursor = start + len(raw)
            sql = raw.strip().rstrip(";").strip()
            if sqlparse.format(sql, strip_comments=True).strip():
                offset = 0  # where the statement's first token past comments and blanks is
                for tok in sqlparse.parse(sql)[0].flatten():
                    if not (tok.is_whitespace or tok.ttype in sqlparse.tokens.Comment):
                        break
                    offset += len(tok.value)
                expected.append((sql, 1 + text.count("\n", 0, start) + sql.count("\n", 0, offset)))
        assert [(s.sql, s.line) for s in split_statements(text, "x.sql", 1)] == expected, text


# ------------------------------------------------------------------------------------- lines in files

JOB = """\
description: statements and their lines
database: warehouse
tasks:
  - name: block
    sql: |
      -- clear the day first; then load it
      DELETE FROM t WHERE day = :day;

      INSERT INTO t (day, note)
      VALUES (:day, 'a;b');
      UPDATE t SET note = 'x' WHERE day = :day
  - name: inline
    sql: SELECT 1; SELECT 2
  - name: quoted
    sql: "SELECT 'x'"
  - name: fromfile
    sql_file: sql/two.sql
  - name: exp
    export:
      path: out.csv
      query: |

        SELECT *
        FROM t
"""

SQL_FILE = """\
-- header; comment
/* block
   comment; */
CREATE TABLE t (a VARCHAR(8));

INSERT INTO t VALUES (';'),
  ('--');
SELECT 'x'; SELECT 2
"""


def test_statement_lines_in_the_yaml_and_in_a_sql_file(tmp_path: Path) -> None:
    write_project(tmp_path, {"lines": JOB}, files={"sql/two.sql": SQL_FILE})
    job = load_job(load_project(tmp_path / "conf", env={}), "lines")
    where = {t.name: [(s.where, s.first_line) for s in t.statements] for t in job.tasks}
    assert where["block"] == [("jobs/lines.yml:7", "DELETE FROM t WHERE day = :day"),
                              ("jobs/lines.yml:9", "INSERT INTO t (day, note)"),
                              ("jobs/lines.yml:11", "UPDATE t SET note = 'x' WHERE day = :day")]
    assert where["inline"] == [("jobs/lines.yml:13", "SELECT 1"), ("jobs/lines.yml:13", "SELECT 2")]
    assert where["quoted"] == [("jobs/lines.yml:15", "SELECT 'x'")]
    assert where["fromfile"] == [("sql/two.sql:4", "CREATE TABLE t (a VARCHAR(8))"),
                                 ("sql/two.sql:6", "INSERT INTO t VALUES (';'),"),
                                 ("sql/two.sql:8", "SELECT 'x'"), ("sql/two.sql:8", "SELECT 2")]
    assert job.task("exp").export.query.where == "jobs/lines.yml:23"  # after the blank first line
    assert [t.line for t in job.tasks] == [4, 12, 14, 16, 18]


# ------------------------------------------------------------------------------------- binding on SQLite

@pytest.mark.parametrize("sql, params, row", [
    ("SELECT '10:30', :a", {"a": "A"}, ("10:30", "A")),
    ("SELECT 'x:y' || :b, ':b'", {"b": "B"}, ("x:yB", ":b")),
    ("SELECT :a -- :not_bound\n", {"a": 1}, (1,)),
    ("SELECT '100%', :a", {"a": "%s"}, ("100%", "%s")),
    ("SELECT :a, :a, :b", {"a": 1, "b": 2}, (1, 1, 2)),
])
def test_colons_inside_literals_stay_literal_on_sqlite(sql: str, params: dict[str, object],
                                                      row: tuple[object, ...]) -> None:
    engine = sa.create_engine("sqlite://")
    try:
        raw = engine.raw_connection()
        cur = raw.cursor()
        cur.execute(*prepare(sql, engine.dialect, params))
        assert cur.fetchone() == row
        raw.close()
    finally:
        engine.dispose()


def test_values_are_bound_not_pasted_for_the_mysql_driver() -> None:
    from sqlalchemy.dialects.mysql import pymysql as mysql_pymysql

    dialect = mysql_pymysql.dialect()
    text, args = prepare("SELECT '10:30', '100%', :day WHERE note = :note", dialect,
                         {"day": "2026-11-01", "note": "x'; DROP TABLE t; --"})
    assert "2026-11-01" not in text and "DROP" not in text
    assert text == "SELECT '10:30', '100%%', %s WHERE note = %s"
    assert list(args) == ["2026-11-01", "x'; DROP TABLE t; --"]


@pytest.mark.parametrize("sql, first", [
    ("SELECT 1", "SELECT 1"),
    ("DELETE FROM t\nWHERE a = 1", "DELETE FROM t"),
    ("-- why\nDELETE FROM t", "DELETE FROM t"),
    ("# why\n-- and why\n\nUPDATE t SET a = 1", "UPDATE t SET a = 1"),
    ("/* multi\nline; */ SELECT 1", "SELECT 1"),
    ("/*! conditional */ SELECT 1", "/*! conditional */ SELECT 1"),  # executable comment: part of the SQL
])
def test_first_line_is_the_line_of_sql_that_the_line_number_points_at(sql: str, first: str) -> None:
    from runner.model import Statement

    assert Statement(sql, "jobs/x.yml", 1).first_line == first
