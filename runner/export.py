"""Export a query's rows to CSV or JSON Lines (optionally gzip), streamed and written atomically.

Formats: CSV has a header row; NULL is written as an empty field. JSON Lines has one object per row
with NULL as null. Dates and datetimes are ISO 8601, DECIMAL keeps its exact digits, binary values are
base64. The file appears under its final name only when complete (temporary file, fsync, rename).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import gzip
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator

import sqlalchemy as sa

from .plan import fill_path
from .statements import prepare

if TYPE_CHECKING:
    from .executor import Runner, _RunContext
    from .model import Task

FETCH_ROWS = 5000


def text_value(value: Any) -> Any:
    """A value as it is written to a file (None stays None: each format writes NULL its own way)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def write_atomic(path: Path, write: "callable[[IO[str]], int]", compress: bool = False) -> int:
    """Write through `write(text_stream)` into a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            binary: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if compress else raw
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            count = write(text)
            text.flush()
            text.detach()
            if compress:
                binary.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return count


def write_csv(out: IO[str], columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow(["" if v is None else text_value(v) for v in row])
        n += 1
    return n


def write_jsonl(out: IO[str], columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps({c: text_value(v) for c, v in zip(columns, row)}, ensure_ascii=False))
        out.write("\n")
        n += 1
    return n


def stream_rows(conn: sa.Connection, sql: str, args: Any) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run a query with an unbuffered (server-side) cursor and yield its rows in batches."""
    args = tuple(args) if isinstance(args, list) else args
    result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).exec_driver_sql(sql, args)
    columns = list(result.keys())

    def rows() -> Iterator[tuple[Any, ...]]:
        for partition in result.partitions(FETCH_ROWS):
            yield from (tuple(r) for r in partition)

    return columns, rows()


def export_path(runner: "Runner", ctx: "_RunContext", task: "Task") -> Path:
    spec = task.export
    assert spec is not None
    rel = fill_path(spec.path, ctx.params, f"{ctx.job.file} task {task.name} export.path")
    path = Path(rel)
    return path if path.is_absolute() else runner.project.root / path


def run_export(runner: "Runner", ctx: "_RunContext", task: "Task") -> tuple[int, str]:
    spec = task.export
    assert spec is not None
    engine = runner.engines.get(task.database)
    path = export_path(runner, ctx, task)
    sql, args = prepare(spec.query.sql, engine.dialect, ctx.params)
    writer = write_csv if spec.format == "csv" else write_jsonl
    with engine.connect() as conn:
        columns, rows = stream_rows(conn, sql, args)
        count = write_atomic(path, lambda out: writer(out, columns, rows), compress=spec.compress)
    try:
        shown = path.relative_to(runner.project.root)
    except ValueError:
        shown = path
    return count, f"wrote {shown}"
