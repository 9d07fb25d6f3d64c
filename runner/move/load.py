"""The load task: a query's rows from the `source` database into `table` of the task's database.

Modes: `append` adds the rows; `replace` switches the table atomically (MySQL/MariaDB: a staging table
swapped in with RENAME TABLE; SQLite: DELETE and INSERT in one transaction), so readers see the old
or the new table, never a half one; `upsert` inserts new keys and updates existing rows in place
(ON DUPLICATE KEY UPDATE / ON CONFLICT DO UPDATE). A missing table is created from the source's
column types unless `create: false`.

Rows stream through an unbuffered source cursor; memory does not grow with the row count. From a
MySQL/MariaDB source, the source server renders the rows as bytes for the target: LOAD DATA lines
into MySQL/MariaDB (fastcopy.py), COPY CSV into PostgreSQL. From any other source, the rows are
encoded in the runner (encode.py) as LOAD DATA lines into MySQL/MariaDB, or go through psycopg's COPY
into PostgreSQL; into SQLite (and upserts into MySQL from other sources) by executemany batches of
`batch_rows` (rowcopy.py). On PostgreSQL, replace swaps in a table made LIKE the old one and upsert
merges a staging table with INSERT ... ON CONFLICT, in the load's one transaction. An upsert needs a
unique key on `key` in the target, and is refused without one.

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
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from runner import stop
from runner.config.statements import prepare
from runner.db.classify import classify_error
from runner.db.engines import abandon as abandon_connection
from runner.db.localinfile import StreamingConnection
from runner.db.watchdog import Watchdog
from runner.errors import TaskFailed
from runner.model import LoadSpec, Statement, Task
from runner.move import watermark as wm
from pymysql import err

from runner.move.coltypes import SourceColumn, pg_column, reflected_column, table_for
from runner.move.encode import csv_chunks, line_encoders, load_data_lines
from runner.move.fastcopy import CHUNK_BYTES, REFUSED, CopyResult, RowReader, SourceError, check_load_data, copy_high
from runner.move.fastcopy import copy as fast_copy
from runner.move.fastcopy import say_refused as _say_refused
from runner.move.loadsql import (CREATE, GRANTS, MERGE, PG_STAGE, WritePlan, copy_sql, encoded_select, insert_sql,
                                 load_data_sql, merge_sql, mysql_quote, qualified, split_name, sqlite_lines_select,
                                 wrapped, write_plan)
from runner.move.probe import mysql_columns
from runner.move.progress import Progress, human_rate
from runner.move.rowcopy import (NotExact, Writer, abandon, adapters, batches, complete_columns, executemany,
                                 prefetched, source_cursor, sqlite_declared, text_affinity)
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
    state: wm.State | None = None  # the watermark this attempt started from

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
    return engine.dialect.name in ("mysql", "mariadb") and engine.dialect.driver == "pymysql"


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def _fast_path(load: _Load) -> bool:
    """The source server renders the rows as bytes for the target: MySQL to MySQL (LOAD DATA) or to
    PostgreSQL (COPY CSV)."""
    return _is_mysql(load.src) and (_is_mysql(load.dst) or _is_postgres(load.dst))


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
        _refuse_one_sqlite_file(load)
        return (_run_fast if _fast_path(load) else _run_generic)(load, state)
    except SourceError as exc:
        raise _attempt_error(load, exc.cause, spec.query, "source") from exc.cause
    except NotExact as exc:
        raise TaskFailed(f"{load.label}: loading into {spec.table} of database {task.database}: {exc}") from exc
    except (TaskFailed, AttemptError):
        raise
    except Exception as exc:
        raise _attempt_error(load, exc, load.statement, load.phase) from exc


def _refuse_one_sqlite_file(load: _Load) -> None:
    """A SQLite file cannot be read and written by two connections of one load: the writer's COMMIT would
    wait for the reader, which waits for the writer."""
    if load.src.dialect.name == load.dst.dialect.name == "sqlite" and load.src.url.database == load.dst.url.database:
        raise TaskFailed(f"{load.label}: source {load.spec.source} and the target database {load.task.database} are "
                         f"the same SQLite file; copy within it with an sql task (INSERT INTO {load.spec.table} "
                         "SELECT ...) instead of a load")


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
    inspector = sa.inspect(load.dst)
    exists = inspector.has_table(name, schema=schema)
    if exists and load.spec.mode == "upsert":
        _check_unique_key(load, inspector, name, schema)
    return write_plan(load.dst.dialect.name, load.spec.mode, load.spec.table, exists, load.spec.create, quote)


def _check_unique_key(load: _Load, inspector: Any, name: str, schema: str | None) -> None:
    """An upsert needs a primary key or unique key on exactly its `key` columns: without one, MySQL's
    ON DUPLICATE KEY UPDATE inserts every row again instead of updating it."""
    key = set(load.spec.key)
    pk = set(inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or ())
    uniques = [set(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema)]
    uniques += [set(i["column_names"]) for i in inspector.get_indexes(name, schema=schema) if i.get("unique")]
    if key == pk or key in uniques:
        return
    raise TaskFailed(f"{load.label}: upsert into {load.spec.table} needs a primary key or unique key on exactly "
                     f"({', '.join(load.spec.key)}), the load's key, and the table has none (primary key: "
                     f"({', '.join(sorted(pk)) or 'none'})): rows would be added again instead of updated. Add "
                     f"one (ALTER TABLE {load.spec.table} ADD PRIMARY KEY ({', '.join(load.spec.key)})) or change "
                     "key: to the table's key")


def _created_key(load: _Load) -> tuple[str, ...]:
    """The primary key a created table gets: the load's key (given for upsert, optional otherwise)."""
    return load.spec.key


def _run_before(load: _Load, cur: Any, plan: WritePlan, columns: Sequence[SourceColumn]) -> None:
    for sql in plan.before:
        if sql == CREATE:
            schema, name = split_name(load.spec.table if plan.into == PG_STAGE else plan.into)
            sql = str(sa.schema.CreateTable(table_for(name, schema, columns, _created_key(load)))
                      .compile(dialect=load.dst.dialect))
        load.at("statement", sql)
        cur.execute(sql)


def _run_finish(load: _Load, cur: Any, plan: WritePlan, columns: Sequence[SourceColumn], quote: Any) -> None:
    """Statements after the rows, in their transaction: PostgreSQL's swap (with the old table's grants)
    and upsert merge."""
    for sql in plan.finish:
        if sql == MERGE:
            sql = merge_sql(load.spec.table, PG_STAGE, [c.name for c in columns], load.spec.key, quote)
        elif sql == GRANTS:
            for grant in _grants(load, cur, quote, plan.into):
                load.at("statement", grant)
                cur.execute(grant)
            continue
        load.at("statement", sql)
        cur.execute(sql)


def _grants(load: _Load, cur: Any, quote: Any, new: str) -> list[str]:
    """GRANT statements giving the new table of a swap what the old one granted (besides its owner)."""
    cur.execute("SELECT a.privilege_type, a.grantee, a.grantee::regrole::text, a.is_grantable FROM pg_class c, "
                "aclexplode(c.relacl) a WHERE c.oid = %s::regclass AND a.grantee <> c.relowner",
                (qualified(load.spec.table, quote),))
    out = []
    for privilege, oid, role, grantable in cur.fetchall():
        who = "PUBLIC" if oid == 0 else role
        out.append(f"GRANT {privilege} ON {qualified(new, quote)} TO {who}" + (" WITH GRANT OPTION" if grantable
                                                                                else ""))
    return out


def _commit(load: _Load, conn: Any, cur: Any, plan: WritePlan, rows: int, state: wm.State | None,
            high: Any) -> None:
    """Marker and rows in one transaction; a pending watermark first; the swap after (MySQL replace)."""
    stop.check()  # rows cut short by a stop request never commit
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
    log.info("%s: loaded %d rows into %s (%s) in %.2fs of reading and writing rows, %s rows/s, by %s", load.label,
             rows, load.spec.table, load.spec.mode, seconds, human_rate(rate), method,
             extra={"job": load.ctx.job.name, "task": load.task.name, "rows": rows})
    return f"{load.spec.mode} into {load.spec.table} by {method}, {human_rate(rate)} rows/s while copying"


# ------------------------------------------------------------------------------------------ MySQL targets

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


def _into_mysql(load: _Load, columns: Sequence[SourceColumn], progress: Progress,
                write: Callable[[StreamingConnection, Any, str], CopyResult | None]) -> CopyResult | None:
    """Rows into a MySQL target on a dedicated connection, in one transaction with the marker; `write`
    moves them (None: the server refused LOCAL INFILE before a row was read)."""
    load.at("connect")
    dst = _dedicated(load)
    plan: WritePlan | None = None
    try:
        cur = dst.cursor()
        plan = _plan(load, mysql_quote)
        with ExitStack() as stack:
            load.watch(stack, load.dst, dst)
            _run_before(load, cur, plan, columns)
            load.at("statement", f"(rows of the query on {load.spec.source}) into {plan.into}")
            result = write(dst, cur, plan.into)
            if result is None:
                _rollback_dedicated(dst)
                _drop_staging(load, dst.cursor(), plan, mysql_quote)
                return None
            _commit(load, dst, cur, plan, result.rows, load.state, result.high)
        return result
    except BaseException:
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


# ------------------------------------------------------------------------------------------ PostgreSQL targets

def _into_postgres(load: _Load, columns: Sequence[SourceColumn], write: Callable[[Any, str], CopyResult]) -> CopyResult:
    """Rows into a PostgreSQL target through COPY FROM STDIN on a pooled connection, in one transaction
    with the marker; replace swaps in the new table and upsert merges the staged rows, in that same
    transaction (PostgreSQL's DDL is transactional)."""
    quote = load.dst.dialect.identifier_preparer.quote_identifier
    load.at("connect")
    plan = _plan(load, quote)
    raw = load.dst.raw_connection()
    cur = raw.cursor()
    try:
        with ExitStack() as stack:
            load.watch(stack, load.dst, raw.dbapi_connection)
            _run_before(load, cur, plan, columns)
            load.at("statement", copy_sql(plan.into, [c.name for c in columns], quote))
            result = write(cur, plan.into)
            _run_finish(load, cur, plan, columns, quote)
            _commit(load, raw, cur, plan, result.rows, load.state, result.high)
        return result
    except BaseException as exc:
        if load.phase != "commit":
            abandon_connection(load.dst, raw, exc)
        else:
            raw.invalidate()
        raise
    finally:
        raw.close()


def _copy_chunks(cur: Any, sql: str, chunks: Iterable[bytes]) -> None:
    with cur.copy(sql) as copy:
        for chunk in chunks:
            copy.write(chunk)


# ------------------------------------------------------------------------------------------ MySQL sources

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


def _source_raw(load: _Load) -> Any:
    try:
        return load.src.raw_connection()
    except Exception as exc:
        raise SourceError(exc) from exc


def _run_fast(load: _Load, state: wm.State | None) -> tuple[int, str]:
    src_raw = _source_raw(load)
    try:
        src = src_raw.dbapi_connection
        sql, args = load.params(None)
        columns = _probe_mysql(src, sql, args)
        inc = _watermark_column(load, [c.name for c in columns])
        wm_col = next((c for c in columns if c.name == inc), None)
        if state is not None:
            sql, args = load.params(_bind(load, state, wm_col))
        progress = Progress(load.label, _estimate(src, sql, args))
        load.state = state
        try:
            with ExitStack() as stack:
                load.watch(stack, load.src, src)
                if _is_postgres(load.dst):
                    result = _fast_into_postgres(load, src, columns, sql, args, progress, wm_col)
                else:
                    result = _fast_into_mysql(load, src, columns, sql, args, progress, wm_col)
        except BaseException:
            progress.finish()
            raise
        note = _finish(load, progress, result.rows, result.method)
    except BaseException as exc:
        _throw_away(load.src, src_raw, exc)
        raise
    src_raw.close()
    return result.rows, note


def _fast_into_mysql(load: _Load, src: Any, columns: list[SourceColumn], sql: str, args: Any, progress: Progress,
                     wm_col: SourceColumn | None) -> CopyResult:
    def write(dst: StreamingConnection, cur: Any, into: str) -> CopyResult:
        return fast_copy(src, dst, columns, into, sql, args, progress, mode=load.spec.mode, key=load.spec.key,
                         watermark=wm_col, target_name=load.ctx.engines.display(load.task.database))

    result = _into_mysql(load, columns, progress, write)
    assert result is not None
    return result


def _fast_into_postgres(load: _Load, src: Any, columns: list[SourceColumn], sql: str, args: Any, progress: Progress,
                        wm_col: SourceColumn | None) -> CopyResult:
    """The source server renders COPY CSV lines; their bytes go to COPY FROM STDIN as they arrive."""
    kind = wm_col.kind if wm_col else None
    quote = load.dst.dialect.identifier_preparer.quote_identifier

    def write(cur: Any, into: str) -> CopyResult:
        reader = RowReader(src, encoded_select(sql, columns, "csv", wm_col.name if wm_col else None), args, b"",
                           CHUNK_BYTES, progress, kind)
        try:
            _copy_chunks(cur, copy_sql(into, [c.name for c in columns], quote, csv=True), csv_chunks(reader.chunks()))
        finally:
            reader.close()
        if reader.error is not None:
            raise SourceError(reader.error)
        return CopyResult(reader.rows, copy_high(reader, kind), "COPY FROM STDIN")

    return _into_postgres(load, columns, write)


def _throw_away(engine: Engine, raw: Any, exc: BaseException) -> None:
    """A source connection (pooled raw connection or sa.Connection) after a failure: it may be
    mid-result, so it is not reused."""
    raw.invalidate(exc if isinstance(exc, Exception) else None)
    cause = getattr(exc, "cause", exc)
    if isinstance(cause, Exception) and classify_error(cause).invalidate_pool:
        engine.dispose()


# ------------------------------------------------------------------------------------------ any to any

def _run_generic(load: _Load, state: wm.State | None) -> tuple[int, str]:
    try:
        src_conn = load.src.connect()
    except Exception as exc:
        raise SourceError(exc) from exc
    try:
        rows, note = _generic_stream(load, src_conn, state)
    except BaseException as exc:
        _throw_away(load.src, src_conn, exc)
        src_conn.close()
        raise
    src_conn.close()
    return rows, note


def _probe_postgres(dbapi_conn: Any, sql: str, args: Any) -> list[SourceColumn]:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(wrapped(sql, limit0=True), args)
        cols = cur.description
    except Exception as exc:
        raise SourceError(exc) from exc
    finally:
        cur.close()
    return [pg_column(c.name, c.type_code, c.precision, c.scale, c.display_size) for c in cols]


def _generic_stream(load: _Load, src_conn: sa.Connection, state: wm.State | None) -> tuple[int, str]:
    dialect = load.src.dialect.name
    dbapi = src_conn.connection.dbapi_connection
    if dialect == "sqlite" and _is_mysql(load.dst) and load.spec.mode != "upsert":
        done = _sqlite_into_mysql(load, src_conn, state)
        if done is None:
            _say_refused(load.ctx.engines.display(load.task.database))  # the rows go by INSERT instead
        elif done is not _NOT_HERE:
            return done
    sql, args = load.params(None)
    probed = None
    if _is_mysql(load.src):
        probed = _probe_mysql(dbapi, sql, args)
    elif _is_postgres(load.src):
        probed = _probe_postgres(dbapi, sql, args)
    declared = sqlite_declared(src_conn, load.spec.query.sql) if dialect == "sqlite" else {}
    if state is not None:
        wm_col = next((c for c in probed or () if c.name == load.spec.incremental.column), None)  # type: ignore[union-attr]
        sql, args = load.params(_bind(load, state, wm_col))
    total = _estimate(dbapi, sql, args) if _is_mysql(load.src) else None
    cursor = source_cursor(dbapi, dialect)
    progress = Progress(load.label, total)
    load.state = state
    try:
        with ExitStack() as stack:
            load.watch(stack, load.src, dbapi)
            try:
                cursor.execute(sql, args)
            except Exception as exc:
                raise SourceError(exc) from exc
            stream = batches(cursor, load.spec.batch_rows)
            first = next(stream, [])
            names = [d[0] for d in cursor.description]
            inc = _watermark_column(load, names)
            columns = probed or complete_columns(names, declared, first)
            result = _generic_into_target(load, columns, first, stream, progress,
                                          names.index(inc) if inc is not None else None)
    except BaseException:
        progress.finish()
        abandon(cursor)
        raise
    cursor.close()
    return result.rows, _finish(load, progress, result.rows, result.method)


def _generic_into_target(load: _Load, columns: list[SourceColumn], first: Sequence[Any], stream: Any,
                         progress: Progress, wm_index: int | None) -> CopyResult:
    def all_batches() -> Iterator[Sequence[Sequence[Any]]]:
        if first:
            yield first
        yield from stream

    if _is_postgres(load.dst):
        return _rows_into_postgres(load, columns, all_batches(), progress, wm_index)
    if _is_mysql(load.dst) and load.spec.mode != "upsert":
        batches_ = all_batches()
        done = _rows_into_mysql(load, columns, batches_, progress, wm_index)
        if done is not None:
            return done
        _say_refused(load.ctx.engines.display(load.task.database))
        return _executemany_into_target(load, columns, batches_, progress, wm_index)
    return _executemany_into_target(load, columns, all_batches(), progress, wm_index)


_NOT_HERE = (-1, "")  # _sqlite_into_mysql: this result is for the runner's own encoding


def _sqlite_into_mysql(load: _Load, src_conn: sa.Connection, state: wm.State | None) -> tuple[int, str] | None:
    """SQLite renders each row as a LOAD DATA line itself (loadsql.sqlite_lines_select); the runner joins
    them and feeds LOAD DATA LOCAL INFILE, read ahead by a thread of its own. None: the target refused
    LOCAL INFILE before a row was read; _NOT_HERE: the rows have a floating-point column."""
    dbapi = src_conn.connection.dbapi_connection
    sql, args = load.params(None)
    cur = dbapi.cursor()
    try:
        cur.execute(wrapped(sql, limit0=True), args)
        names = [d[0] for d in cur.description]
        declared = sqlite_declared(src_conn, load.spec.query.sql)
        probe: list[Any] = []
        if any(reflected_column(n, declared.get(n)) is None for n in names):  # an expression: typed by its values
            probe = cur.execute(wrapped(sql, select="*") + " LIMIT 100", args).fetchall()
    except Exception as exc:
        raise SourceError(exc) from exc
    finally:
        cur.close()
    columns = complete_columns(names, declared, probe)
    if any(c.kind == "float" for c in columns):
        return _NOT_HERE  # SQLite's printf is not exact to 17 digits: the runner encodes such rows itself
    inc = _watermark_column(load, names)
    if state is not None:
        sql, args = load.params(_bind(load, state, None))
    progress = Progress(load.label)
    load.state = state
    reader = dbapi.cursor()
    tally = {"rows": 0, "high": None}

    def lines() -> Iterator[bytes]:
        try:
            reader.execute(sqlite_lines_select(sql, columns, inc), args)
            while True:
                batch = reader.fetchmany(load.spec.batch_rows)
                if not batch:
                    return
                if inc is not None:
                    seen = [r[1] for r in batch if r[1] is not None]
                    top = max(seen) if seen else None
                    if top is not None and (tally["high"] is None or top > tally["high"]):
                        tally["high"] = top
                tally["rows"] += len(batch)
                progress.add(len(batch))
                yield ("\n".join([r[0] for r in batch]) + "\n").encode("utf-8")
        except Exception as exc:
            raise SourceError(exc) from exc

    started = []

    def feed() -> Iterator[bytes]:
        started.append(True)
        yield from prefetched(lines())

    def write(dst: StreamingConnection, cur: Any, into: str) -> CopyResult | None:
        try:
            with dst.armed(feed):
                cur.execute(load_data_sql(into, columns, escaped=False))
        except err.MySQLError as exc:
            if exc.args and exc.args[0] in REFUSED and not started:
                return None
            raise
        check_load_data(cur, tally["rows"])
        return CopyResult(tally["rows"], tally["high"], "LOAD DATA LOCAL INFILE")

    try:
        with ExitStack() as stack:
            load.watch(stack, load.src, dbapi)
            result = _into_mysql(load, columns, progress, write)
    except BaseException:
        progress.finish()
        raise
    finally:
        reader.close()
    if result is None:
        progress.finish()
        return None
    return result.rows, _finish(load, progress, result.rows, result.method)


def _rows_into_mysql(load: _Load, columns: list[SourceColumn], stream: Iterator[Sequence[Sequence[Any]]],
                     progress: Progress, wm_index: int | None) -> CopyResult | None:
    """Rows of any source, encoded in the runner as LOAD DATA lines, fed to LOAD DATA LOCAL INFILE."""
    writer = Writer(lambda rows: None, [None] * len(columns), progress, wm_index)
    encoders = line_encoders(columns)
    started = []

    def feed() -> Iterator[bytes]:
        started.append(True)
        for batch in stream:
            yield load_data_lines(writer.take(batch), encoders)

    def write(dst: StreamingConnection, cur: Any, into: str) -> CopyResult | None:
        try:
            with dst.armed(feed):
                cur.execute(load_data_sql(into, columns))
        except err.MySQLError as exc:
            if exc.args and exc.args[0] in REFUSED and not started:
                return None  # refused before a row was read: the rows go by INSERT instead
            raise
        check_load_data(cur, writer.rows)
        return CopyResult(writer.rows, writer.high, "LOAD DATA LOCAL INFILE")

    return _into_mysql(load, columns, progress, write)


def _rows_into_postgres(load: _Load, columns: list[SourceColumn], stream: Iterable[Sequence[Sequence[Any]]],
                        progress: Progress, wm_index: int | None) -> CopyResult:
    """Rows of any source into COPY FROM STDIN, adapted by psycopg (its C row formatter)."""
    quote = load.dst.dialect.identifier_preparer.quote_identifier
    adapt = adapters("postgresql", columns)

    def write(cur: Any, into: str) -> CopyResult:
        with cur.copy(copy_sql(into, [c.name for c in columns], quote)) as copy:
            writer = Writer(lambda rows: [copy.write_row(r) for r in rows], adapt, progress, wm_index)
            for batch in stream:
                writer.write(batch)
        return CopyResult(writer.rows, writer.high, "COPY FROM STDIN")

    return _into_postgres(load, columns, write)


def _text_columns(load: _Load) -> set[str]:
    """Columns of an existing SQLite target with TEXT affinity: decimals go there as their exact digits."""
    if load.dst.dialect.name != "sqlite":
        return set()
    schema, name = split_name(load.spec.table)
    inspector = sa.inspect(load.dst)
    if not inspector.has_table(name, schema=schema):
        return set()
    return {c["name"] for c in inspector.get_columns(name, schema=schema)
            if not isinstance(c["type"], sa.types.NullType) and text_affinity(str(c["type"]))}


def _executemany_into_target(load: _Load, columns: list[SourceColumn], stream: Iterable[Sequence[Sequence[Any]]],
                             progress: Progress, wm_index: int | None) -> CopyResult:
    load.at("connect")
    quote = load.dst.dialect.identifier_preparer.quote_identifier
    plan = _plan(load, quote)
    text_columns = _text_columns(load)
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
            writer = Writer(executemany(cur, sql), adapters(load.dst.dialect.name, columns, text_columns), progress,
                            wm_index)
            for batch in stream:
                writer.write(batch)
            _commit(load, raw, cur, plan, writer.rows, load.state, writer.high)
        return CopyResult(writer.rows, writer.high, "batched INSERT")
    except BaseException as exc:
        if load.phase != "commit":
            abandon_connection(load.dst, raw, exc)
            _drop_staging(load, cur, plan, quote)
        else:
            raw.invalidate()
        raise
    finally:
        raw.close()
