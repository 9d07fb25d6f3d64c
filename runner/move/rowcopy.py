"""Rows between any two databases through their drivers: a streamed source cursor, executemany in batches.

The source cursor is unbuffered (PyMySQL's SSCursor; SQLite steps through its rows), read `batch_rows`
at a time; each batch is written with the target driver's executemany (PyMySQL turns it into one
multi-row INSERT per megabyte, sqlite3 runs it in C). Memory holds one batch, whatever the row count.
"""

from __future__ import annotations

import decimal
import queue
import threading
import uuid
from typing import Any, Callable, Iterator, Sequence, TypeVar

import sqlalchemy as sa

from runner import stop
from runner.config.exact import float_exact
from runner.move.coltypes import SourceColumn, reflected_column, value_column
from runner.move.fastcopy import SourceError
from runner.move.loadsql import params_as_null
from runner.move.progress import Progress
from runner.move.values import temporal_text

Adapter = Callable[[Any], Any]


class NotExact(ValueError):
    """A value the target cannot store exactly (a decimal with more digits than a SQLite number holds)."""


def _digits(value: Any) -> Any:
    return format(value, "f") if isinstance(value, decimal.Decimal) else value


def _number(column: str) -> Adapter:
    """A decimal as the SQLite number that holds it exactly; refused (naming column and value) when none does."""
    def adapt(value: Any) -> Any:
        if not isinstance(value, decimal.Decimal):
            return value
        if value == value.to_integral_value() and -2 ** 63 <= value < 2 ** 63:
            return int(value)
        f = float_exact(value)
        if f is None:
            raise NotExact(f"column {column}: the value {value} cannot be stored exactly in SQLite, whose numbers "
                           f"are 64-bit integers or floats (about 15 significant digits); round it in the query, "
                           f"or create the target column as TEXT to keep every digit as text")
        return f
    return adapt


def _bit(value: Any) -> Any:
    return int.from_bytes(value, "big") if isinstance(value, (bytes, bytearray)) else value


def adapters(dialect: str, columns: Sequence[SourceColumn], text_columns: set[str] = frozenset()) -> list[Adapter | None]:
    """Per column, how a driver value becomes a value the target driver stores faithfully (None: as is).

    SQLite has no DECIMAL or date types: decimals are stored as numbers (exactly, or refused), or as their
    exact digits in a column of TEXT affinity (`text_columns`); dates and times as ISO 8601 text. A BIT
    value becomes its integer everywhere.
    """
    out: list[Adapter | None] = []
    for c in columns:
        if c.kind == "bit":
            out.append(_bit)
        elif dialect == "sqlite" and c.kind == "decimal":
            out.append(_digits if c.name in text_columns else _number(c.name))
        elif dialect == "sqlite" and c.kind == "temporal":
            out.append(temporal_text)
        else:
            out.append(None)
    return out


def text_affinity(declared: str | None) -> bool:
    """Whether SQLite gives a column of this declared type TEXT affinity (its rules, section 3.1)."""
    t = (declared or "").upper()
    return "INT" not in t and any(s in t for s in ("CHAR", "CLOB", "TEXT"))


def adapt_rows(rows: Sequence[Sequence[Any]], adapt: Sequence[Adapter | None]) -> list[Sequence[Any]]:
    if not any(adapt):
        return list(rows)
    pairs = [(i, f) for i, f in enumerate(adapt) if f is not None]
    out = []
    for row in rows:
        values = list(row)
        for i, f in pairs:
            if values[i] is not None:
                values[i] = f(values[i])
        out.append(values)
    return out


def source_cursor(dbapi_conn: Any, dialect: str) -> Any:
    """A cursor that streams: PyMySQL's SSCursor, a server-side (named) cursor on PostgreSQL."""
    if dialect in ("mysql", "mariadb") and type(dbapi_conn).__module__.startswith("pymysql"):
        import pymysql.cursors

        return dbapi_conn.cursor(pymysql.cursors.SSCursor)
    if dialect == "postgresql" and type(dbapi_conn).__module__.startswith("psycopg"):
        return dbapi_conn.cursor(name=f"runner_load_{uuid.uuid4().hex[:12]}")
    return dbapi_conn.cursor()


def abandon(cursor: Any) -> None:
    """Leave an unbuffered cursor mid-result without reading the rest (PyMySQL's close() would read
    every remaining row); its connection is then thrown away, not reused."""
    result = getattr(cursor, "_result", None)
    if result is not None and getattr(result, "unbuffered_active", False):
        result.unbuffered_active = False
        return
    try:
        cursor.close()
    except Exception:  # the connection is thrown away next; a close that fails changes nothing
        pass


def batches(cursor: Any, size: int) -> Iterator[Sequence[Sequence[Any]]]:
    """The source rows, `size` at a time; a failure is raised as SourceError."""
    while True:
        try:
            rows = cursor.fetchmany(size)
        except Exception as exc:
            raise SourceError(exc) from exc
        if not rows:
            return
        yield rows


def sqlite_declared(conn: sa.Connection, sql: str) -> dict[str, Any]:
    """Declared types of a SQLite query's columns, reflected by SQLAlchemy from a temporary view of it
    (parameters replaced by NULL); {} when SQLite cannot keep the query as a view."""
    view = f"runner_probe_{uuid.uuid4().hex[:12]}"
    try:
        conn.exec_driver_sql(f'CREATE TEMP VIEW "{view}" AS {params_as_null(sql)}')
    except sa.exc.DBAPIError:
        return {}
    try:  # SQLite accepts a view on a missing table, and fails when it is read: the query itself says so later
        return {c["name"]: c["type"] for c in sa.inspect(conn).get_columns(view, schema="temp")}
    except sa.exc.DBAPIError:
        return {}
    finally:
        conn.exec_driver_sql(f'DROP VIEW temp."{view}"')


def complete_columns(names: Sequence[str], declared: dict[str, Any],
                     first_rows: Sequence[Sequence[Any]]) -> list[SourceColumn]:
    """Each column by its declared type, else by its first values (an expression has no declared type)."""
    out = []
    for i, name in enumerate(names):
        col = reflected_column(name, declared.get(name))
        out.append(col or value_column(name, [r[i] for r in first_rows]))
    return out


class Writer:
    """Hands batches of rows to a sink (executemany, COPY, a LOAD DATA stream), adapted for the target,
    counting rows and the highest watermark value."""

    def __init__(self, sink: Callable[[list[Sequence[Any]]], Any], adapt: Sequence[Adapter | None],
                 progress: Progress, watermark_index: int | None):
        self.sink = sink
        self.adapt = adapt
        self.progress = progress
        self.wm = watermark_index
        self.rows = 0
        self.high: Any = None

    def take(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The batch adapted for the target, counted."""
        stop.check()  # between batches: a stop request ends the load here, rolled back
        if self.wm is not None:
            self._track(rows)
        adapted = adapt_rows(rows, self.adapt)
        self.rows += len(rows)
        self.progress.add(len(rows))
        return adapted

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        self.sink(self.take(rows))

    def _track(self, rows: Sequence[Sequence[Any]]) -> None:
        i, high = self.wm, self.high
        for row in rows:
            v = row[i]
            if v is not None and (high is None or v > high):
                high = v
        self.high = high


def executemany(cursor: Any, sql: str) -> Callable[[list[Sequence[Any]]], Any]:
    return lambda rows: cursor.executemany(sql, rows)


T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetched(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """The items, produced ahead by a thread of their own (at most `depth` waiting), so that reading the
    source overlaps with writing the target; the producer's failure is raised in the consumer."""
    waiting: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name="load-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = waiting.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
