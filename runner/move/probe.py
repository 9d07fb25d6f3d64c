"""The columns of a load's query, read from its source without moving a row: by the MySQL/MariaDB
field descriptors of the query wrapped as `SELECT * FROM (query) LIMIT 0`, or on SQLite by the
declared types of a temporary view of it. A load reads them before it starts; `--watermark --set`
reads the incremental column's type to check the value it is given.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from runner.config.plan import resolve_params
from runner.config.statements import prepare
from runner.db.engines import Engines
from runner.model import Job, Task
from runner.move.coltypes import SourceColumn, mysql_column, reflected_column
from runner.move.loadsql import wrapped
from runner.move.rowcopy import sqlite_declared


def mysql_columns(dbapi_conn: Any, sql: str, args: Any) -> list[SourceColumn]:
    """The result columns of a query on a PyMySQL connection (no row is read)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(wrapped(sql, limit0=True), args)
        fields = cur._result.fields
        cur.fetchall()
    finally:
        cur.close()
    return [mysql_column(f.name, f.type_code, f.length, f.scale, f.flags, f.charsetnr) for f in fields]


def incremental_column(engines: Engines, job: Job, task: Task, today: date) -> SourceColumn | None:
    """The incremental column of a load as its source types it; None when the source cannot tell (an
    expression on SQLite, another kind of database)."""
    spec = task.load
    assert spec is not None and spec.incremental is not None
    engine = engines.get(spec.source)
    values = {**resolve_params(job, today, {}), "watermark": None}
    name = spec.incremental.column
    if engine.dialect.name in ("mysql", "mariadb") and engine.dialect.driver == "pymysql":
        raw = engine.raw_connection()
        try:
            sql, args = prepare(spec.query.sql, engine.dialect, values)
            columns = mysql_columns(raw.dbapi_connection, sql, args)
        finally:
            raw.close()
        return next((c for c in columns if c.name == name), None)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            return reflected_column(name, sqlite_declared(conn, spec.query.sql).get(name))
    return None
