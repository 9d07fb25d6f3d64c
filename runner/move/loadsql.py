"""SQL text of a load, built from column names and kinds: pure functions, no I/O.

Identifiers are quoted here; values are never pasted into SQL text by the runner. The one exception
by design is the MySQL-to-MySQL path, where the *source server* renders each row as text (escaped by
its own REPLACE/QUOTE/HEX functions) so that the bytes pass through the runner without a Python
object per value: LOAD DATA lines, or SQL tuples for the multi-row INSERT fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from runner.config.sqltext import substitute
from runner.move.coltypes import SourceColumn

Quote = Callable[[str], str]

# Built with CHAR(... USING utf8mb4), the separators mean the same under any sql_mode.
_TAB = "CHAR(9 USING utf8mb4)"
_NL = "CHAR(10 USING utf8mb4)"

STREAM_NAME = "runner-stream"
_ESCAPE, _NO_ESCAPE = "X'5C'", "''"  # backslash, or no escape character  # the name in LOAD DATA LOCAL INFILE; no file of that name is ever opened


def mysql_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def split_name(table: str) -> tuple[str | None, str]:
    """`schema.table` or `table`."""
    schema, dot, name = table.rpartition(".")
    return (schema or None) if dot else None, name


def qualified(table: str, quote: Quote) -> str:
    schema, name = split_name(table)
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


# ---------------------------------------------------------------------------------------- source side

def wrapped(inner_sql: str, select: str = "*", limit0: bool = False) -> str:
    """The user's query as a derived table (its result column names become the target columns)."""
    return f"SELECT {select} FROM (\n{inner_sql}\n) AS runner_q" + (" LIMIT 0" if limit0 else "")


def _ref(name: str) -> str:
    return "runner_q." + mysql_quote(name)


def sql_field(col: SourceColumn) -> str:
    """A column as a SQL literal rendered by the source server: text quoted and escaped by QUOTE() (linear
    in the value's length, unlike REPLACE(), which is quadratic on MariaDB), binary as X'..', NULL as NULL."""
    ref = _ref(col.name)
    if col.kind == "text":
        return f"QUOTE(CONVERT({ref} USING utf8mb4))"
    if col.kind == "binary":
        return f"IF({ref} IS NULL, 'NULL', CONCAT('X''', HEX({ref}), ''''))"
    if col.kind == "temporal":
        return f"QUOTE({ref})"
    if col.kind == "bit":
        return f"IFNULL({ref} + 0, 'NULL')"
    return f"IFNULL({ref}, 'NULL')"


def tsv_field(col: SourceColumn) -> str:
    """A column as one LOAD DATA field: text enclosed and escaped by QUOTE() (so it may hold tabs and
    newlines), binary as hex, NULL as the unquoted word NULL."""
    if col.kind == "binary":
        return f"IFNULL(HEX({_ref(col.name)}), 'NULL')"
    return sql_field(col)


def csv_field(col: SourceColumn) -> str:
    """A column as one field of PostgreSQL's COPY CSV (quote ', escape \\, NULL as the word NULL): text as
    QUOTE() renders it, binary as bytea's hex input (\\x0a1b)."""
    if col.kind == "binary":
        return f"IF({_ref(col.name)} IS NULL, 'NULL', CONCAT(CHAR(92 USING utf8mb4), 'x', HEX({_ref(col.name)})))"
    return sql_field(col)


def encoded_select(inner_sql: str, columns: Sequence[SourceColumn], fmt: str, watermark: str | None = None) -> str:
    """The source query that returns each row already encoded: one LOAD DATA line (fmt "tsv", newline
    included), one line of PostgreSQL's COPY CSV (fmt "csv") or one SQL tuple (fmt "sql"); plus the raw
    watermark column when the load is incremental."""
    if fmt in ("tsv", "csv"):
        field = tsv_field if fmt == "tsv" else csv_field
        parts = [p for c in columns for p in (field(c), _TAB)]
        parts[-1] = _NL
    else:
        parts = ["'('"] + [p for c in columns for p in (sql_field(c), "','")]
        parts[-1] = "')'"
    select = f"CONCAT({', '.join(parts)}) AS runner_row"
    if watermark is not None:
        select += f", {_ref(watermark)} AS runner_wm"
    return wrapped(inner_sql, select)


def sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_field(col: SourceColumn) -> str:
    """A column as one LOAD DATA field rendered by SQLite itself (for `load_data_sql(escaped=False)`), by
    each value's storage class: NULL as the word NULL, numbers as SQLite's own text of them (quote():
    integers exactly, floats with 15 significant digits, so every decimal a SQLite number holds exactly
    reads back digit for digit), text enclosed in quotes with a quote inside doubled, a binary column
    as hex."""
    ref = "runner_q." + sqlite_quote(col.name)
    if col.kind == "binary":
        return f"CASE WHEN {ref} IS NULL THEN 'NULL' ELSE hex({ref}) END"
    return (f"CASE WHEN {ref} IS NULL THEN 'NULL' WHEN typeof({ref}) IN ('integer', 'real') THEN quote({ref}) "
            f"ELSE " + _QUOTED.format(ref=ref) + " END")


# SQL text that encloses a value in single quotes, doubling a quote inside it
_QUOTED = "'''' || replace(CAST({ref} AS TEXT), '''', '''''') || ''''"


def sqlite_lines_select(inner_sql: str, columns: Sequence[SourceColumn], watermark: str | None = None) -> str:
    """The SQLite source query returning each row as one LOAD DATA line (without its newline), plus the raw
    watermark column when the load is incremental."""
    select = " || char(9) || ".join(_sqlite_field(c) for c in columns) + " AS runner_row"
    if watermark is not None:
        select += f", runner_q.{sqlite_quote(watermark)} AS runner_wm"
    return f"SELECT {select} FROM (\n{inner_sql}\n) AS runner_q"


# ---------------------------------------------------------------------------------------- target side

def load_data_sql(table: str, columns: Sequence[SourceColumn], escaped: bool = True) -> str:
    """LOAD DATA LOCAL INFILE for lines made by `tsv_field` (backslash escapes) or, not `escaped`, by
    `sqlite_lines_select` (no escape character: a quote inside an enclosed field is doubled); binary
    columns arrive as hex."""
    targets, sets = [], []
    for i, c in enumerate(columns):
        if c.kind == "binary":
            targets.append(f"@runner_b{i}")
            sets.append(f"{mysql_quote(c.name)} = UNHEX(@runner_b{i})")
        else:
            targets.append(mysql_quote(c.name))
    sql = (f"LOAD DATA LOCAL INFILE '{STREAM_NAME}' INTO TABLE {qualified(table, mysql_quote)} "
           f"CHARACTER SET utf8mb4 FIELDS TERMINATED BY X'09' OPTIONALLY ENCLOSED BY X'27' "
           f"ESCAPED BY {_ESCAPE if escaped else _NO_ESCAPE} "
           f"LINES TERMINATED BY X'0A' "
           f"({', '.join(targets)})")
    return sql + (f" SET {', '.join(sets)}" if sets else "")


COPY_CSV = "FORMAT csv, DELIMITER E'\\t', QUOTE '''', ESCAPE E'\\\\', NULL 'NULL'"


def copy_sql(table: str, names: Sequence[str], quote: Quote, csv: bool = False) -> str:
    """COPY FROM STDIN into `table`: psycopg's own rows (text format), or the CSV a MySQL source renders."""
    sql = f"COPY {qualified(table, quote)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    return sql + (f" WITH ({COPY_CSV})" if csv else "")


def merge_sql(table: str, staging: str, names: Sequence[str], key: Sequence[str], quote: Quote) -> str:
    """The upsert of a staged load into its table on PostgreSQL."""
    cols = ", ".join(quote(n) for n in names)
    return (f"INSERT INTO {qualified(table, quote)} ({cols}) SELECT {cols} FROM {quote(staging)}"
            + upsert_tail("postgresql", names, key, quote))


def insert_head(table: str, names: Sequence[str], quote: Quote) -> str:
    return f"INSERT INTO {qualified(table, quote)} ({', '.join(quote(n) for n in names)}) VALUES "


def upsert_tail(dialect: str, names: Sequence[str], key: Sequence[str], quote: Quote) -> str:
    """What follows the VALUES of an upsert: update the non-key columns of a row whose key exists."""
    others = [n for n in names if n not in key] or [key[0]]
    if dialect in ("mysql", "mariadb"):
        return " ON DUPLICATE KEY UPDATE " + ", ".join(f"{quote(n)} = VALUES({quote(n)})" for n in others)
    conflict = ", ".join(quote(k) for k in key)
    updates = [n for n in names if n not in key]
    if not updates:
        return f" ON CONFLICT ({conflict}) DO NOTHING"
    return f" ON CONFLICT ({conflict}) DO UPDATE SET " + ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in updates)


def placeholder(paramstyle: str) -> str:
    if paramstyle == "qmark":
        return "?"
    if paramstyle in ("format", "pyformat"):
        return "%s"
    raise ValueError(f"unsupported driver parameter style {paramstyle!r} (supported: qmark, format, pyformat)")


def insert_sql(dialect: str, paramstyle: str, table: str, names: Sequence[str], mode: str, key: Sequence[str],
               quote: Quote) -> str:
    """A one-row INSERT (or upsert) with driver placeholders, for executemany."""
    mark = placeholder(paramstyle)
    sql = insert_head(table, names, quote) + "(" + ", ".join([mark] * len(names)) + ")"
    return sql + (upsert_tail(dialect, names, key, quote) if mode == "upsert" else "")


# ---------------------------------------------------------------------------------------- replace

@dataclass(frozen=True)
class WritePlan:
    """Where rows go and what happens around them, for one mode on one kind of database."""

    into: str  # the table the rows are written into
    before: tuple[str, ...]  # statements before the rows ("CREATE" stands for the table's CREATE TABLE)
    after: tuple[str, ...]  # statements after the rows committed (MySQL's swap)
    staging: str | None = None  # a table to drop when the load fails
    finish: tuple[str, ...] = ()  # statements after the rows, in their transaction (PostgreSQL swap, MERGE)


def side_names(table: str) -> tuple[str, str]:
    """Staging and retired table names beside `table` (kept under MySQL's 64-character limit)."""
    schema, name = split_name(table)
    base = name[:50]
    prefix = f"{schema}." if schema else ""
    return f"{prefix}{base}__runner_new", f"{prefix}{base}__runner_old"


CREATE = "CREATE"  # placeholder in WritePlan.before for the CREATE TABLE of the table being written
MERGE = "MERGE"  # placeholder in WritePlan.finish for the upsert of the staged rows (merge_sql)
GRANTS = "GRANTS"  # placeholder in WritePlan.finish for the old table's grants, given to the new one
PG_STAGE = "runner_stage"  # the temporary table an upsert into PostgreSQL is staged in


def write_plan(dialect: str, mode: str, table: str, exists: bool, create: bool, quote: Quote) -> WritePlan:
    """The statements of a load around its rows.

    MySQL/MariaDB replace: rows go into a staging table that RENAME TABLE swaps in atomically (DDL
    commits implicitly there, so the swap is the last step). Databases with transactional DDL
    (SQLite) replace inside the load's one transaction: DELETE, then the rows; readers see the old or
    the new table, never a half one. A missing table is created when `create` is on.
    """
    if dialect == "postgresql":
        return _pg_plan(mode, table, exists, create, quote)
    if dialect in ("mysql", "mariadb") and mode == "replace":
        new, old = side_names(table)
        q_new, q_old, q_table = (qualified(t, quote) for t in (new, old, table))
        before = (f"DROP TABLE IF EXISTS {q_new}",
                  f"CREATE TABLE {q_new} LIKE {q_table}" if exists or not create else CREATE)
        if exists:
            after = (f"DROP TABLE IF EXISTS {q_old}", f"RENAME TABLE {q_table} TO {q_old}, {q_new} TO {q_table}",
                     f"DROP TABLE {q_old}")
        else:
            after = (f"RENAME TABLE {q_new} TO {q_table}",)
        return WritePlan(new, before, after, staging=new)
    before: tuple[str, ...] = ()
    if not exists and create:
        before = (CREATE,)
    elif exists and mode == "replace":
        before = (f"DELETE FROM {qualified(table, quote)}",)
    return WritePlan(table, before, ())


def _pg_plan(mode: str, table: str, exists: bool, create: bool, quote: Quote) -> WritePlan:
    """PostgreSQL has transactional DDL: the whole load, swap or merge included, is one transaction.
    replace: the rows go into a table made LIKE the old one (columns, defaults, constraints, indexes),
    which takes its name and grants; upsert: into a temporary staging table, then INSERT ... ON CONFLICT."""
    make = (CREATE,) if not exists and create else ()
    q_table = qualified(table, quote)
    if mode == "replace" and exists:
        new, old = side_names(table)
        q_new = qualified(new, quote)
        before = (f"DROP TABLE IF EXISTS {q_new}", f"CREATE TABLE {q_new} (LIKE {q_table} INCLUDING ALL)")
        finish = (GRANTS, f"ALTER TABLE {q_table} RENAME TO {quote(split_name(old)[1])}",
                  f"ALTER TABLE {q_new} RENAME TO {quote(split_name(table)[1])}",
                  f"DROP TABLE {qualified(old, quote)}")
        return WritePlan(new, before, (), staging=None, finish=finish)
    if mode == "upsert":
        stage = (f"CREATE TEMPORARY TABLE {quote(PG_STAGE)} (LIKE {q_table} INCLUDING DEFAULTS) ON COMMIT DROP",)
        return WritePlan(PG_STAGE, make + stage, (), finish=(MERGE,))
    return WritePlan(table, make, ())


def params_as_null(sql: str) -> str:
    """The query with every `:name` parameter replaced by NULL (for a probe that only needs its columns)."""
    return substitute(sql, lambda name: "NULL")
