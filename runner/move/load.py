"""The load task: a query's rows from the `source` database into `table` of the task's database.

Modes: `append` adds the rows; `replace` switches the table atomically (MySQL/MariaDB: a staging table
swapped in with RENAME TABLE; SQLite: DELETE and INSERT in one transaction), so readers see the old
or the new table, never a half one; `upsert` inserts new keys and updates existing rows in place
(ON DUPLICATE KEY UPDATE / ON CONFLICT DO UPDATE). A missing table is created from the source's
column types unless `create: false`.

Rows stream through an unbuffered source cursor; memory does not grow with the row count. Between
two MySQL/MariaDB databases the rows pass as bytes through LOAD DATA LOCAL INFILE (see fastcopy.py),
elsewhere through executemany batches of `batch_rows` (rowcopy.py).

The rows and the task's exactly-once marker commit in one target transaction, so a COMMIT lost in
flight is never applied twice. `incremental: {column: c}` binds `:watermark` (the highest `c`
loaded so far; on the first run `initial`, else a value below every value of the column) and
advances it only when that transaction commits (see watermark.py). Result column names must be
unique: they name the target columns.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runner.config.statements import prepare
from runner.db.classify import classify_error
from runner.db.engines import abandon as abandon_connection
from runner.db.localinfile import StreamingConnection
from runner.db.watchdog import Watchdog
from runner.errors import TaskFailed
from runner.model import LoadSpec, Statement, Task
from runner.move import watermark as wm
from runner.move.coltypes import SourceColumn, table_for
from runner.move.fastcopy import SourceError
from runner.move.fastcopy import copy as fast_copy
from runner.move.loadsql import CREATE, WritePlan, insert_sql, mysql_quote, qualified, split_name, write_plan
from runner.move.probe import mysql_columns
from runner.move.progress import Progress, human_rate
from runner.move.rowcopy import Writer, abandon, adapters, batches, complete_columns, source_cursor, sqlite_declared
from runner.state import markers
from runner.tasks.base import Attempt, AttemptError, timeout_error

log = logging.getLogger("runner.load")

_NO_BACKSLASH_ESCAPES = 512  # SERVER_STATUS flag


@dataclass
class _Load:
    """One attempt of a load task, and where it is (for the failure message)."""

    ctx: Attempt
    task: Task
    attempt: int
    spec: LoadSpec
    src: Engine
    dst: Engine
    markers: bool
    phase: str = "connect"
    statement: Statement | None = None
    watchdogs: list[Watchdog] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"job {self.ctx.job.name} task {self.task.name}"

    def at(self, phase: str, sql: str | None = None) -> None:
        self.phase = phase
        q = self.spec.query
        self.statement = Statement(sql, q.file, self.task.line or q.line) if sql else None

    def params(self, watermark: Any) -> tuple[str, list[Any]]:
        values = dict(self.ctx.params)
        values["watermark"] = watermark
        sql, args = prepare(self.spec.query.sql, self.src.dialect, values)
        return sql, list(args) if not isinstance(args, dict) else args  # type: ignore[return-value]

    def watch(self, stack: ExitStack, engine: Engine, dbapi_conn: Any) -> None:
        dog = Watchdog(engine, dbapi_conn, self.ctx.timeout(), self.label)
        self.watchdogs.append(dog)
        stack.enter_context(dog)

    @property
    def timed_out(self) -> bool:
        return any(w.fired for w in self.watchdogs)


def _is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _fast_path(load: _Load) -> bool:
    return all(_is_mysql(e) and e.dialect.driver == "pymysql" for e in (load.src, load.dst))


class LoadTask:
    name = "load"
    resumable = True
    confirms_retry = False  # run_load looks for the marker itself, after settling the watermark

    def run(self, attempt: Attempt) -> tuple[int, str]:
        return run_load(attempt)


KIND = LoadTask()


def run_load(at: Attempt) -> tuple[int, str]:
    """One attempt of a load task; returns (rows, note). Database errors raise AttemptError."""
    task, attempt = at.task, at.number
    spec = task.load
    assert spec is not None
    load = _Load(at, task, attempt, spec, at.engines.get(spec.source), at.engines.get(task.database),
                 at.project.databases[task.database].markers)
    try:
        if load.markers:
            markers.ensure_table(load.dst, at.project.settings.history_days)
        state = _watermark_state(load)
        if attempt > 1 and load.markers:
            done = markers.find(load.dst, at.run_id, task.name)
            if done is not None:
                log.info("%s: attempt %d had committed (marker found); not applied again", load.label, done[0])
                return done[1], f"committed by attempt {done[0]}, confirmed by its marker"
        return (_run_fast if _fast_path(load) else _run_generic)(load, state)
    except SourceError as exc:
        raise _attempt_error(load, exc.cause, spec.query, "source") from exc.cause
    except (TaskFailed, AttemptError):
        raise
    except Exception as exc:
        raise _attempt_error(load, exc, load.statement, load.phase) from exc


def _attempt_error(load: _Load, cause: BaseException, statement: Statement | None, phase: str) -> AttemptError:
    if not load.timed_out:
        return AttemptError(cause, classify_error(cause), statement, phase)
    return timeout_error(cause, statement, phase, next(w.seconds for w in load.watchdogs if w.fired))


# ------------------------------------------------------------------------------------------ watermark

def _watermark_state(load: _Load) -> wm.State | None:
    """The committed watermark; a value left pending by a run that died is promoted when that run's
    marker shows its rows committed, dropped otherwise."""
    if load.spec.incremental is None:
        return None
    ledger, job, task = load.ctx.ledger, load.ctx.job.name, load.task.name
    state = wm.loads(ledger.watermark(job, task))
    if state.pending_run is None:
        return state
    committed = load.markers and markers.find(load.dst, state.pending_run, task) is not None
    state = state.promoted(wm.now_text()) if committed else state.dropped()
    ledger.set_watermark(job, task, wm.dumps(state))
    return state


def _bind(load: _Load, state: wm.State | None, column: SourceColumn | None) -> Any:
    if state is None or load.spec.incremental is None:
        return None
    low = wm.sentinel(column, load.src.dialect.name)
    return wm.bind_value(state, load.spec.incremental.initial, low)


def _watermark_column(load: _Load, names: Sequence[str]) -> str | None:
    inc = load.spec.incremental
    if inc is None:
        return None
    if inc.column not in names:
        raise TaskFailed(f"{load.label}: incremental column {inc.column!r} is not a column of the query's result "
                         f"(columns: {', '.join(names)}); select it so its highest value can be kept")
    return inc.column


# ------------------------------------------------------------------------------------------ target

def _plan(load: _Load, quote: Any) -> WritePlan:
    schema, name = split_name(load.spec.table)
    exists = sa.inspect(load.dst).has_table(name, schema=schema)
    return write_plan(load.dst.dialect.name, load.spec.mode, load.spec.table, exists, load.spec.create, quote)


def _run_before(load: _Load, cur: Any, plan: WritePlan, columns: Sequence[SourceColumn]) -> None:
    for sql in plan.before:
        if sql == CREATE:
            schema, name = split_name(plan.into)
            key = load.spec.key if load.spec.mode == "upsert" else ()
            sql = str(sa.schema.CreateTable(table_for(name, schema, columns, key)).compile(dialect=load.dst.dialect))
        load.at("statement", sql)
        cur.execute(sql)


def _commit(load: _Load, conn: Any, cur: Any, plan: WritePlan, rows: int, state: wm.State | None,
            high: Any) -> None:
    """Marker and rows in one transaction; a pending watermark first; the swap after (MySQL replace)."""
    advanced = wm.later(state.value, high) if state is not None else None
    if load.markers and not plan.after:
        load.at("marker")
        markers.write(cur, load.dst.dialect, load.ctx.run_id, load.task.name, load.attempt, rows)
    if state is not None and load.markers:
        load.ctx.ledger.set_watermark(load.ctx.job.name, load.task.name,
                                         wm.dumps(state.pending(load.ctx.run_id, advanced)))
    load.at("commit")
    conn.commit()
    if plan.after:
        for sql in plan.after:
            load.at("statement", sql)
            cur.execute(sql)
        if load.markers:
            load.at("marker")
            markers.write(cur, load.dst.dialect, load.ctx.run_id, load.task.name, load.attempt, rows)
            load.at("commit")
            conn.commit()
    if state is not None:
        load.ctx.ledger.set_watermark(load.ctx.job.name, load.task.name,
                                     wm.dumps(state.advanced(advanced, load.ctx.run_id, wm.now_text())))


def _drop_staging(load: _Load, cur: Any, plan: WritePlan, quote: Any) -> None:
    """After a failed replace, drop its staging table (best effort: the next run drops it anyway)."""
    if plan.staging is None:
        return
    try:
        cur.execute(f"DROP TABLE IF EXISTS {qualified(plan.staging, quote)}")
    except Exception:
        pass


def _finish(load: _Load, progress: Progress, rows: int, method: str) -> str:
    seconds = progress.finish()
    rate = rows / seconds if seconds > 0 else 0.0
    log.info("%s: loaded %d rows into %s (%s) in %.2fs, %s rows/s, by %s", load.label, rows, load.spec.table,
             load.spec.mode, seconds, human_rate(rate), method,
             extra={"job": load.ctx.job.name, "task": load.task.name, "rows": rows})
    return f"{load.spec.mode} into {load.spec.table} by {method}, {human_rate(rate)} rows/s"


# ------------------------------------------------------------------------------------------ MySQL to MySQL

def _dedicated(load: _Load) -> StreamingConnection:
    """A connection of its own for the target: the pooled ones never enable LOCAL INFILE."""
    cargs, cparams = load.dst.dialect.create_connect_args(load.dst.url)
    cparams.update(load.ctx.project.databases[load.task.database].connect_args)
    cparams.setdefault("charset", "utf8mb4")
    cparams.setdefault("connect_timeout", 10)
    cparams.pop("local_infile", None)
    conn = StreamingConnection(*cargs, **cparams)
    if conn.server_status & _NO_BACKSLASH_ESCAPES:  # the LOAD DATA and QUOTE() escapes need backslashes
        cur = conn.cursor()
        cur.execute("SELECT @@SESSION.sql_mode")
        modes = [m for m in str(cur.fetchone()[0]).split(",") if m and m != "NO_BACKSLASH_ESCAPES"]
        cur.execute("SET SESSION sql_mode = %s", (",".join(modes),))
    return conn


def _probe_mysql(dbapi_conn: Any, sql: str, args: Any) -> list[SourceColumn]:
    try:
        return mysql_columns(dbapi_conn, sql, args)
    except Exception as exc:
        raise SourceError(exc) from exc


def _estimate(dbapi_conn: Any, sql: str, args: Any) -> int | None:
    """Rows the source's query plan expects (a single-table plan only), for the progress ETA."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("EXPLAIN " + sql, args)
        rows = cur.fetchall()
        names = [d[0].lower() for d in cur.description or ()]
    except Exception:
        return None
    finally:
        cur.close()
    if len(rows) != 1 or "rows" not in names or not rows[0][names.index("rows")]:
        return None
    return int(rows[0][names.index("rows")])


def _run_fast(load: _Load, state: wm.State | None) -> tuple[int, str]:
    src_raw = load.src.raw_connection()
    try:
        src = src_raw.dbapi_connection
        sql, args = load.params(None)
        columns = _probe_mysql(src, sql, args)
        inc = _watermark_column(load, [c.name for c in columns])
        wm_col = next((c for c in columns if c.name == inc), None)
        if state is not None:
            sql, args = load.params(_bind(load, state, wm_col))
        progress = Progress(load.label, _estimate(src, sql, args))
        rows, note = _fast_into_target(load, src, columns, sql, args, progress, wm_col, state)
    except BaseException as exc:
        _throw_away(load.src, src_raw, exc)
        raise
    src_raw.close()
    return rows, note


def _fast_into_target(load: _Load, src: Any, columns: list[SourceColumn], sql: str, args: Any,
                      progress: Progress, wm_col: SourceColumn | None, state: wm.State | None) -> tuple[int, str]:
    load.at("connect")
    dst = _dedicated(load)
    plan: WritePlan | None = None
    try:
        cur = dst.cursor()
        plan = _plan(load, mysql_quote)
        with ExitStack() as stack:
            load.watch(stack, load.dst, dst)
            load.watch(stack, load.src, src)
            _run_before(load, cur, plan, columns)
            load.at("statement", f"(rows of the query on {load.spec.source}) into {plan.into}")
            result = fast_copy(src, dst, columns, plan.into, sql, args, progress, mode=load.spec.mode,
                               key=load.spec.key, watermark=wm_col,
                               target_name=load.ctx.engines.display(load.task.database))
            _commit(load, dst, cur, plan, result.rows, state, result.high)
        return result.rows, _finish(load, progress, result.rows, result.method)
    except BaseException:
        progress.finish()
        if load.phase != "commit" and dst.open:
            _rollback_dedicated(dst)
            if plan is not None and dst.open:
                _drop_staging(load, dst.cursor(), plan, mysql_quote)
        raise
    finally:
        if dst.open:
            dst.close()


def _rollback_dedicated(conn: StreamingConnection) -> None:
    try:
        conn.rollback()
    except Exception:
        conn._force_close()


def _throw_away(engine: Engine, raw: Any, exc: BaseException) -> None:
    """A source connection (pooled raw connection or sa.Connection) after a failure: it may be
    mid-result, so it is not reused."""
    raw.invalidate(exc if isinstance(exc, Exception) else None)
    cause = getattr(exc, "cause", exc)
    if isinstance(cause, Exception) and classify_error(cause).invalidate_pool:
        engine.dispose()


# ------------------------------------------------------------------------------------------ any to any

def _run_generic(load: _Load, state: wm.State | None) -> tuple[int, str]:
    src_conn = load.src.connect()
    try:
        rows, note = _generic_stream(load, src_conn, state)
    except BaseException as exc:
        _throw_away(load.src, src_conn, exc)
        src_conn.close()
        raise
    src_conn.close()
    return rows, note


def _generic_stream(load: _Load, src_conn: sa.Connection, state: wm.State | None) -> tuple[int, str]:
    dialect = load.src.dialect.name
    dbapi = src_conn.connection.dbapi_connection
    sql, args = load.params(None)
    probed = _probe_mysql(dbapi, sql, args) if _is_mysql(load.src) else None
    declared = sqlite_declared(src_conn, load.spec.query.sql) if dialect == "sqlite" else {}
    if state is not None:
        wm_col = next((c for c in probed or () if c.name == load.spec.incremental.column), None)  # type: ignore[union-attr]
        sql, args = load.params(_bind(load, state, wm_col))
    total = _estimate(dbapi, sql, args) if _is_mysql(load.src) else None
    cursor = source_cursor(dbapi, dialect)
    progress = Progress(load.label, total)
    try:
        with ExitStack() as stack:
            load.watch(stack, load.src, dbapi)
            try:
                cursor.execute(sql, args)
            except Exception as exc:
                raise SourceError(exc) from exc
            names = [d[0] for d in cursor.description]
            inc = _watermark_column(load, names)
            stream = batches(cursor, load.spec.batch_rows)
            first = next(stream, [])
            columns = probed or complete_columns(names, declared, first)
            rows = _generic_into_target(load, columns, first, stream, progress,
                                        names.index(inc) if inc is not None else None, state)
    except BaseException:
        progress.finish()
        abandon(cursor)
        raise
    cursor.close()
    return rows, _finish(load, progress, rows, "batched INSERT")


def _generic_into_target(load: _Load, columns: list[SourceColumn], first: Sequence[Any], stream: Any,
                         progress: Progress, wm_index: int | None, state: wm.State | None) -> int:
    load.at("connect")
    quote = load.dst.dialect.identifier_preparer.quote_identifier
    plan = _plan(load, quote)
    raw = load.dst.raw_connection()
    cur = raw.cursor()
    try:
        with ExitStack() as stack:
            load.watch(stack, load.dst, raw.dbapi_connection)
            if load.dst.dialect.name == "sqlite":
                cur.execute("BEGIN")
            _run_before(load, cur, plan, columns)
            sql = insert_sql(load.dst.dialect.name, load.dst.dialect.paramstyle, plan.into, [c.name for c in columns],
                             load.spec.mode, load.spec.key, quote)
            load.at("statement", sql)
            writer = Writer(cur, sql, adapters(load.dst.dialect.name, columns), progress, wm_index)
            if first:
                writer.write(first)
            for batch in stream:
                writer.write(batch)
            _commit(load, raw, cur, plan, writer.rows, state, writer.high)
        return writer.rows
    except BaseException as exc:
        if load.phase != "commit":
            abandon_connection(load.dst, raw, exc)
            _drop_staging(load, cur, plan, quote)
        else:
            raw.invalidate()
        raise
    finally:
        raw.close()
