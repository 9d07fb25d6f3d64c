"""Pure decisions of loads and exports, from tables: no database, no clock, no sleeping."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
import sqlalchemy as sa
from pymysql.constants import FIELD_TYPE as F
from sqlalchemy.dialects import mysql, sqlite

from runner.move import watermark as wm
from runner.move.coltypes import SourceColumn, mysql_column, reflected_column, table_for, value_column
from runner.move.export import csv_field, write_csv, write_jsonl
from runner.move.loadsql import (CREATE, encoded_select, insert_sql, load_data_sql, mysql_quote, params_as_null, side_names, sql_field, tsv_field, upsert_tail, write_plan)
from runner.move.progress import Progress, bar_line, eta, log_line
from runner.move.rowcopy import NotExact, adapt_rows, adapters, text_affinity
from runner.move.values import temporal_text

MYSQL, SQLITE = mysql.dialect(), sqlite.dialect()
NOT_NULL, UNSIGNED = 1, 32


def ddl(col: SourceColumn, dialect: sa.Dialect) -> str:
    return str(col.type.compile(dialect=dialect))


# ------------------------------------------------------------------------------------------ column types

@pytest.mark.parametrize("code,length,scale,flags,charset,kind,on_mysql,on_sqlite", [
    (F.LONGLONG, 20, 0, NOT_NULL, 63, "int", "BIGINT", "BIGINT"),
    (F.LONGLONG, 20, 0, UNSIGNED, 63, "int", "BIGINT UNSIGNED", "BIGINT"),
    (F.LONG, 11, 0, 0, 63, "int", "INTEGER", "INTEGER"),
    (F.TINY, 4, 0, 0, 63, "int", "TINYINT", "SMALLINT"),
    (F.NEWDECIMAL, 40, 10, 0, 63, "decimal", "DECIMAL(38, 10)", "NUMERIC(38, 10)"),
    (F.NEWDECIMAL, 14, 2, 0, 63, "decimal", "DECIMAL(12, 2)", "NUMERIC(12, 2)"),
    (F.NEWDECIMAL, 6, 0, 0, 63, "decimal", "DECIMAL(5, 0)", "NUMERIC(5, 0)"),
    (F.DOUBLE, 22, 31, 0, 63, "float", "DOUBLE", "DOUBLE"),
    (F.VAR_STRING, 64, 0, 0, 45, "text", "VARCHAR(16)", "VARCHAR(16)"),
    (F.STRING, 12, 0, 0, 45, "text", "CHAR(3)", "CHAR(3)"),
    (F.BLOB, 262140, 0, 16, 45, "text", "MEDIUMTEXT", "TEXT"),
    (F.BLOB, 4294967295, 0, 16, 45, "text", "LONGTEXT", "TEXT"),
    (F.VAR_STRING, 20, 0, 128, 63, "binary", "VARBINARY(20)", "BLOB"),
    (F.STRING, 4, 0, 128, 63, "binary", "BINARY(4)", "BLOB"),
    (F.BLOB, 4294967295, 0, 144, 63, "binary", "LONGBLOB", "BLOB"),
    (F.DATETIME, 26, 6, 128, 63, "temporal", "DATETIME(6)", "DATETIME"),
    (F.DATETIME, 19, 0, 128, 63, "temporal", "DATETIME", "DATETIME"),
    (F.TIMESTAMP, 23, 3, 128, 63, "temporal", "DATETIME(3)", "DATETIME"),
    (F.DATE, 10, 0, 128, 63, "temporal", "DATE", "DATE"),
    (F.TIME, 13, 2, 128, 63, "temporal", "TIME(2)", "TIME"),
    (F.BIT, 5, 0, 32, 63, "bit", "BIT(5)", "BIGINT"),
    (F.NULL, 0, 0, 128, 63, "text", "LONGTEXT", "TEXT"),
])
def test_mysql_result_columns_become_faithful_types(code, length, scale, flags, charset, kind, on_mysql, on_sqlite):
    col = mysql_column("c", code, length, scale, flags, charset)
    assert (col.kind, ddl(col, MYSQL), ddl(col, SQLITE)) == (kind, on_mysql, on_sqlite)
    assert col.nullable == (not flags & NOT_NULL)


@pytest.mark.parametrize("reflected,kind,on_mysql", [
    (sa.INTEGER(), "int", "BIGINT"),
    (sa.DECIMAL(38, 10), "decimal", "DECIMAL(38, 10)"),
    (sa.REAL(), "float", "DOUBLE"),
    (sa.DATETIME(), "temporal", "DATETIME(6)"),
    (sa.DATE(), "temporal", "DATE"),
    (sa.VARCHAR(16), "text", "VARCHAR(16)"),
    (sa.TEXT(), "text", "LONGTEXT"),
    (sa.BLOB(), "binary", "LONGBLOB"),
])
def test_sqlite_declared_types_are_reflected(reflected, kind, on_mysql):
    col = reflected_column("c", reflected)
    assert col is not None and (col.kind, ddl(col, MYSQL)) == (kind, on_mysql)


def test_a_column_without_declared_type_takes_the_type_of_its_first_value():
    assert reflected_column("c", sa.types.NullType()) is None
    assert [value_column("c", values).kind for values in
            ([None, 3], [1.5], [Decimal("1.5")], [b"x"], ["x"], [None], [dt.datetime(2024, 1, 1)])] == \
        ["int", "float", "decimal", "binary", "text", "text", "temporal"]


def test_created_table_makes_the_upsert_key_its_primary_key():
    cols = [mysql_column("id", F.LONGLONG, 20, 0, 0, 63), mysql_column("v", F.BLOB, 262140, 0, 16, 45)]
    text = str(sa.schema.CreateTable(table_for("t", None, cols, ("id",))).compile(dialect=MYSQL))
    assert "`id` BIGINT NOT NULL" in text and "PRIMARY KEY (`id`)" in text and "`v` MEDIUMTEXT" in text
    text_key = str(sa.schema.CreateTable(table_for("t", None, cols[::-1], ("v",))).compile(dialect=MYSQL))
    assert "`v` VARCHAR(255) NOT NULL" in text_key  # a TEXT key cannot be indexed on MySQL
    assert str(sa.schema.CreateTable(table_for("nothing", None, cols)).compile(dialect=SQLITE)).strip().startswith(
        'CREATE TABLE "nothing" (')  # names are always quoted: SQLite keywords are not all reserved words


# ------------------------------------------------------------------------------------------ SQL text

TEXT, BIN, NUM, WHEN = (SourceColumn("s", "text", sa.Text()), SourceColumn("b", "binary", sa.LargeBinary()),
                        SourceColumn("n", "decimal", sa.Numeric()), SourceColumn("w", "temporal", sa.DateTime()))


@pytest.mark.parametrize("col,expected", [
    (TEXT, "QUOTE(CONVERT(runner_q.`s` USING utf8mb4))"),
    (BIN, "IFNULL(HEX(runner_q.`b`), 'NULL')"),
    (NUM, "IFNULL(runner_q.`n`, 'NULL')"),
    (WHEN, "QUOTE(runner_q.`w`)"),
])
def test_load_data_fields_are_escaped_by_the_source_server(col, expected):
    assert tsv_field(col) == expected


@pytest.mark.parametrize("col,expected", [
    (TEXT, "QUOTE(CONVERT(runner_q.`s` USING utf8mb4))"),
    (BIN, "IF(runner_q.`b` IS NULL, 'NULL', CONCAT('X''', HEX(runner_q.`b`), ''''))"),
    (NUM, "IFNULL(runner_q.`n`, 'NULL')"),
    (WHEN, "QUOTE(runner_q.`w`)"),
])
def test_insert_fallback_fields_are_sql_literals_made_by_the_source_server(col, expected):
    assert sql_field(col) == expected


def test_encoded_select_wraps_the_query_and_adds_the_watermark_column():
    sql = encoded_select("SELECT s, n FROM t WHERE w > %s", [TEXT, NUM], "tsv", watermark="n")
    assert sql.startswith("SELECT CONCAT(") and sql.endswith(") AS runner_q")
    assert ", CHAR(10 USING utf8mb4)) AS runner_row, runner_q.`n` AS runner_wm FROM (\nSELECT s, n FROM t" in sql
    assert "%" not in sql.replace("%s", "")  # the driver formats the text: no stray percent signs
    tuples = encoded_select("SELECT s FROM t", [TEXT, NUM], "sql")
    assert tuples.startswith("SELECT CONCAT('(', QUOTE(") and "')') AS runner_row" in tuples


def test_load_data_statement_decodes_binary_columns_from_hex():
    sql = load_data_sql("db.t", [TEXT, BIN])
    assert sql == ("LOAD DATA LOCAL INFILE 'runner-stream' INTO TABLE `db`.`t` CHARACTER SET utf8mb4 FIELDS "
                   "TERMINATED BY X'09' OPTIONALLY ENCLOSED BY X'27' ESCAPED BY X'5C' LINES TERMINATED BY X'0A' "
                   "(`s`, @runner_b1) SET `b` = UNHEX(@runner_b1)")


@pytest.mark.parametrize("dialect,paramstyle,mode,key,expected", [
    ("mysql", "format", "append", (), "INSERT INTO `t` (`id`, `v`) VALUES (%s, %s)"),
    ("mysql", "format", "upsert", ("id",),
     "INSERT INTO `t` (`id`, `v`) VALUES (%s, %s) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)"),
    ("sqlite", "qmark", "upsert", ("id",),
     "INSERT INTO `t` (`id`, `v`) VALUES (?, ?) ON CONFLICT (`id`) DO UPDATE SET `v` = excluded.`v`"),
    ("sqlite", "qmark", "replace", ("id",), "INSERT INTO `t` (`id`, `v`) VALUES (?, ?)"),
])
def test_insert_statements(dialect, paramstyle, mode, key, expected):
    assert insert_sql(dialect, paramstyle, "t", ["id", "v"], mode, key, mysql_quote) == expected


def test_upsert_of_key_columns_only():
    assert upsert_tail("sqlite", ["id"], ["id"], mysql_quote) == " ON CONFLICT (`id`) DO NOTHING"
    assert upsert_tail("mysql", ["id"], ["id"], mysql_quote) == " ON DUPLICATE KEY UPDATE `id` = VALUES(`id`)"


@pytest.mark.parametrize("dialect,mode,exists,create,into,before,after", [
    ("mysql", "replace", True, True, "t__runner_new",
     ("DROP TABLE IF EXISTS `t__runner_new`", "CREATE TABLE `t__runner_new` LIKE `t`"),
     ("DROP TABLE IF EXISTS `t__runner_old`", "RENAME TABLE `t` TO `t__runner_old`, `t__runner_new` TO `t`",
      "DROP TABLE `t__runner_old`")),
    ("mysql", "replace", False, True, "t__runner_new", ("DROP TABLE IF EXISTS `t__runner_new`", CREATE),
     ("RENAME TABLE `t__runner_new` TO `t`",)),
    ("sqlite", "replace", True, True, "t", ("DELETE FROM `t`",), ()),
    ("sqlite", "replace", False, True, "t", (CREATE,), ()),
    ("mysql", "append", False, True, "t", (CREATE,), ()),
    ("mysql", "upsert", True, True, "t", (), ()),
    ("sqlite", "append", False, False, "t", (), ()),
])
def test_write_plans(dialect, mode, exists, create, into, before, after):
    plan = write_plan(dialect, mode, "t", exists, create, mysql_quote)
    assert (plan.into, plan.before, plan.after) == (into, before, after)


def test_staging_names_fit_mysql_identifiers():
    new, old = side_names("shop." + "x" * 64)
    assert new.startswith("shop.") and len(new.split(".")[1]) <= 64 and old.endswith("__runner_old")


def test_probe_text_keeps_colons_in_strings():
    assert params_as_null("SELECT ':a' FROM t WHERE u > :watermark") == "SELECT ':a' FROM t WHERE u > NULL"


# ------------------------------------------------------------------------------------------ watermarks

@pytest.mark.parametrize("value,bound", [
    (42, 42), (Decimal("1.50"), Decimal("1.50")), (2.5, 2.5), ("abc", "abc"), (b"\x00\xff", b"\x00\xff"),
    (dt.datetime(2024, 5, 1, 13, 45, 0, 250000), "2024-05-01 13:45:00.250000"), (dt.date(2024, 5, 1), "2024-05-01"),
    (dt.timedelta(hours=-1, seconds=1), "-00:59:59"),
])
def test_watermark_values_survive_the_ledger(value, bound):
    state = wm.loads(wm.dumps(wm.State(value, "run1", value)))
    assert (state.value, state.pending_run, state.pending_value) == (bound, "run1", bound)


@pytest.mark.parametrize("current,seen,expected", [
    (None, None, None), (None, 5, 5), (5, None, 5), (5, 7, 7), (7, 5, 7), (Decimal("9.5"), 10, 10),
    ("2024-01-02 00:00:00", dt.datetime(2024, 1, 1), "2024-01-02 00:00:00"),
    ("2024-01-02 00:00:00", dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 3)),
])
def test_watermark_never_moves_back(current, seen, expected):
    assert wm.later(current, seen) == expected


def test_pending_watermark_is_promoted_or_dropped():
    state = wm.State(1, "run", 9)
    assert (state.promoted("2026-11-30T02:31:00Z"), state.dropped()) == (
        wm.State(9, by="run", at="2026-11-30T02:31:00Z"), wm.State(1))
    assert wm.loads("2024-01-01") == wm.State("2024-01-01")  # set by hand: taken as text
    assert wm.loads(None) == wm.State()


@pytest.mark.parametrize("column,dialect,expected", [
    (SourceColumn("c", "int", sa.BigInteger()), "mysql", -1e308),
    (SourceColumn("c", "temporal", sa.DateTime()), "mysql", "0001-01-01 00:00:00"),
    (SourceColumn("c", "temporal", sa.Date()), "mysql", "0001-01-01"),
    (SourceColumn("c", "temporal", sa.Time()), "mysql", "-838:59:59"),
    (SourceColumn("c", "text", sa.Text()), "mysql", ""),
    (None, "sqlite", float("-inf")),
])
def test_first_run_binds_a_value_below_every_value(column, dialect, expected):
    assert wm.sentinel(column, dialect) == expected


@pytest.mark.parametrize("state,initial,expected", [
    (wm.State(), None, "LOW"), (wm.State(), dt.date(2024, 1, 1), "2024-01-01"), (wm.State(5), 1, 5),
])
def test_bound_watermark(state, initial, expected):
    assert wm.bind_value(state, initial, "LOW") == expected


# ------------------------------------------------------------------------------------------ values

def test_sqlite_targets_get_exact_numbers_and_iso_dates():
    cols = [SourceColumn("d", "decimal", sa.Numeric()), SourceColumn("t", "temporal", sa.DateTime()),
            SourceColumn("s", "text", sa.Text()), SourceColumn("b", "bit", sa.BigInteger())]
    rows = [(Decimal("1234567890.0123"), dt.datetime(2024, 1, 1, 0, 0, 0, 5), "x", b"\x01\x00"),
            (Decimal("24.00"), None, None, None), (None, None, None, None)]
    assert adapt_rows(rows, adapters("sqlite", cols)) == [
        [1234567890.0123, "2024-01-01 00:00:00.000005", "x", 256], [24, None, None, None], [None, None, None, None]]
    assert adapt_rows(rows, adapters("mysql", cols))[0][:2] == list(rows[0][:2])
    # a column of TEXT affinity keeps the exact digits
    assert adapt_rows(rows[:1], adapters("sqlite", cols, {"d"}))[0][0] == "1234567890.0123"


@pytest.mark.parametrize("value,held", [
    ("0.07", True), ("99999999999.99", True), ("123456789012345", True), ("0.1234567890123456", True),
    ("1234567890123456789", True),  # an integer: SQLite's 64-bit INTEGER holds it
    ("1234567890123456.78", False), ("12345678901234567890", False), ("12345678901234567890.1", False), ("0.12345678901234567", False),
])
def test_a_decimal_a_sqlite_number_cannot_hold_is_refused_naming_column_and_value(value, held):
    adapt = adapters("sqlite", [SourceColumn("price", "decimal", sa.Numeric())])[0]
    if held:
        assert Decimal(str(adapt(Decimal(value)))) == Decimal(value)
    else:
        with pytest.raises(NotExact, match=rf"column price: the value {value} cannot be stored exactly in SQLite"):
            adapt(Decimal(value))


@pytest.mark.parametrize("declared,text", [("VARCHAR(40)", True), ("TEXT", True), ("NUMERIC(12, 2)", False),
                                           ("DECIMAL(38, 10)", False), ("REAL", False), ("CHARINT", False)])
def test_sqlite_affinity_of_a_declared_type(declared, text):
    assert text_affinity(declared) is text


@pytest.mark.parametrize("value,text", [
    (dt.datetime(2024, 1, 1, 1, 2, 3), "2024-01-01 01:02:03"), (dt.time(1, 2, 3, 4), "01:02:03.000004"),
    (dt.timedelta(days=1, hours=2), "26:00:00"), (dt.timedelta(seconds=-1), "-00:00:01"), ("x", "x"),
])
def test_temporal_text(value, text):
    assert temporal_text(value) == text


# ------------------------------------------------------------------------------------------ export format

@pytest.mark.parametrize("value,field", [
    (None, ""), ("", '""'), ("plain", "plain"), ("a,b", '"a,b"'), ('say "hi"', '"say ""hi"""'),
    ("two\nlines", '"two\nlines"'), (Decimal("1.50"), "1.50"), (True, "true"), (7, "7"), (b"\x00\xff", "AP8="),
    (dt.datetime(2024, 1, 1, 0, 0, 0, 500000), "2024-01-01 00:00:00.500000"), ("\\N", "\\N"),
])
def test_csv_fields_keep_null_and_empty_apart(value, field):
    assert csv_field(value) == field


def test_csv_and_jsonl_rows():
    rows = [(1, None, ""), (2, "x", "y")]
    out = io.StringIO()
    assert write_csv(out, ["id", "a", "b"], iter(rows)) == 2
    assert out.getvalue() == 'id,a,b\n1,,""\n2,x,y\n'
    out = io.StringIO()
    assert write_jsonl(out, ["id", "a", "b"], iter([(1, None, Decimal("2.50"))])) == 1
    assert out.getvalue() == '{"id": 1, "a": null, "b": "2.50"}\n'


# ------------------------------------------------------------------------------------------ progress

@pytest.mark.parametrize("rows,total,rate,expected", [
    (500, 1000, 100.0, 5.0), (1000, 1000, 100.0, None), (1200, 1000, 100.0, None), (10, None, 5.0, None),
    (10, 100, 0.0, None),
])
def test_eta(rows, total, rate, expected):
    assert eta(rows, total, rate) == expected


def test_progress_bar_and_log_line():
    assert bar_line("copy", 523_000, 1_000_000, 251_000.0, width=10) == \
        "copy [#####.....]  52% 523,000/1,000,000 rows 251k rows/s ETA 0:02"
    assert bar_line("copy", 1_200, None, 50.0) == "copy 1,200 rows 50 rows/s"
    assert log_line("job j task t", 3_000_000, 9_000_000, 1_000_000.0) == \
        "job j task t: 3,000,000 rows so far, 1.0M rows/s, about 0:06 left (of ~9,000,000)"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_at_most_five_times_a_second():
    now = [0.0]
    out = _Tty()
    p = Progress("t", 100, stream=out, now=lambda: now[0])
    for step in range(10):
        now[0] = step * 0.1
        p.add(1)
    assert out.getvalue().count("\r") == 4  # at 0.2, 0.4, 0.6, 0.8 seconds
    assert p.finish() == pytest.approx(0.9)
    assert out.getvalue().endswith("\r\x1b[K")


# ------------------------------------------------------------------------------------------ encoded in the runner

def test_load_data_lines_keep_every_value_apart():
    from runner.move.encode import line_encoders, load_data_lines

    cols = [SourceColumn(n, k, sa.Text()) for n, k in (("s", "text"), ("b", "binary"), ("n", "decimal"),
                                                       ("t", "temporal"), ("x", "bit"))]
    rows = [("tab\there\nnew 'q' back\\slash nul\x00", b"\x00\xff", Decimal("1E-7"), dt.date(2024, 2, 29), b"\x01"),
            ("NULL", None, None, None, None), ("", "text in a blob", 1.5, dt.timedelta(hours=-1), 5), (None,) * 5]
    assert load_data_lines(rows, line_encoders(cols)).decode() == (
        "'tab\there\nnew \\'q\\' back\\\\slash nul\\0'\t00ff\t0.0000001\t'2024-02-29'\t1\n"
        "'NULL'\tNULL\tNULL\tNULL\tNULL\n"
        "''\t7465787420696e206120626c6f62\t1.5\t'-01:00:00'\t5\n"
        "NULL\tNULL\tNULL\tNULL\tNULL\n")


@pytest.mark.parametrize("quoted,csv", [
    (b"'plain'", b"'plain'"),
    (b"'nul\\0 and ctrl-z\\Z'", b"'nul\x00 and ctrl-z\x1a'"),
    (b"'escaped backslash then zero \\\\0'", b"'escaped backslash then zero \\\\0'"),
    (b"'three \\\\\\0'", b"'three \\\\\x00'"),
    (b"'quote \\' kept'", b"'quote \\' kept'"),
])
def test_quote_output_made_exact_for_postgres_csv(quoted, csv):
    from runner.move.encode import quote_to_csv

    assert quote_to_csv(quoted) == csv
