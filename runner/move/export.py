"""Export a query's rows to CSV or JSON Lines (optionally gzip), streamed and written atomically.

CSV (RFC 4180, UTF-8, "\n" line ends): a header row of column names, then one line per row. NULL is
an empty unquoted field; an empty string is a quoted empty field (""), so the two never mix (the
convention of PostgreSQL's CSV COPY). Fields holding a comma, a quote or a line break are quoted,
quotes doubled.

JSON Lines: one object per row, keys in column order, NULL as null; numbers that JSON holds exactly
(integers, floats) as numbers; DECIMAL as a string of its exact digits.

Both formats: dates and datetimes in ISO 8601 ("2024-05-01 13:45:00.250000"), TIME as [-]HH:MM:SS,
binary values in base64, booleans as true/false.

Rows stream from an unbuffered cursor; the file appears under its final name only when complete
(temporary file beside it, fsync, rename); after a failure no partial file is visible and an
earlier file of that name is left as it was. The row count goes to the ledger.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import gzip
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import sqlalchemy as sa

from runner import stop
from runner.config.plan import fill_path
from runner.config.statements import prepare
from runner.db.classify import classify_error
from runner.db.watchdog import Watchdog
from runner.errors import TaskFailed, UsageError
from runner.move.progress import Progress
from runner.move.values import temporal_text
from runner.tasks.base import Attempt, AttemptError, timeout_error

FETCH_ROWS = 5000


def text_value(value: Any) -> Any:
    """A value as it is written to a file (None stays None: each format writes NULL its own way)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return temporal_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()  # read once, at import, while no other thread can be creating files


def _file_mode(path: Path) -> int:
    """The permission bits of the file being replaced (never its setuid, setgid or sticky bit), or what
    the umask gives a new file (mkstemp makes 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def write_atomic(path: Path, write: Callable[[IO[str]], int], compress: bool = False) -> int:
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
        stop.check()  # rows cut short by a stop request never replace the file
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return count


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def csv_field(value: Any) -> str:
    """One CSV field: NULL empty, the empty string quoted, quotes doubled where needed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(text_value(value))
    if not text or _CSV_SPECIAL.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(out: IO[str], columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
    out.write(",".join(csv_field(c) for c in columns) + "\n")
    n = 0
    for row in rows:
        out.write(",".join([csv_field(v) for v in row]))
        out.write("\n")
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
    """Run a query with an unbuffered (server-side) cursor and yield its rows in batches; the cursor is
    closed when the rows end or the generator is closed (a statement left pending on SQLite would make
    the connection's ROLLBACK fail after an interrupt)."""
    args = tuple(args) if isinstance(args, list) else args
    result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).exec_driver_sql(sql, args)
    columns = list(result.keys())

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            for partition in result.partitions(FETCH_ROWS):
                yield from (tuple(r) for r in partition)
        finally:
            result.close()

    return columns, rows()


def export_path(at: Attempt) -> Path:
    spec = at.task.export
    assert spec is not None
    try:
        return fill_path(spec.path, at.params, f"{at.job.file} task {at.task.name} export.path", at.project.root,
                         spec.outside_project)
    except UsageError as exc:
        raise TaskFailed(str(exc)) from None


def counted(rows: Iterator[tuple[Any, ...]], progress: Progress, every: int = 1000) -> Iterator[tuple[Any, ...]]:
    """The rows, reporting them to `progress` every `every` rows."""
    n = 0
    for row in rows:
        yield row
        n += 1
        if n == every:
            progress.add(n)
            n = 0
            stop.check()  # a stop request ends the export here; the earlier file stays as it was
    progress.add(n)


class ExportTask:
    name = "export"
    resumable = False  # a file has no marker: an export runs again
    confirms_retry = False

    def run(self, attempt: Attempt) -> tuple[int, str]:
        try:
            return run_export(attempt)
        except AttemptError:
            raise
        except (TaskFailed, OSError) as exc:  # the file, not the database: no retry would change it
            raise TaskFailed(f"{attempt.label}: {exc}") from exc
        except Exception as exc:
            spec = attempt.task.export
            raise AttemptError(exc, classify_error(exc), spec.query if spec else None, "statement") from exc


KIND = ExportTask()


def run_export(at: Attempt) -> tuple[int, str]:
    task = at.task
    spec = task.export
    assert spec is not None
    engine = at.engines.get(task.database)
    path = export_path(at)
    sql, args = prepare(spec.query.sql, engine.dialect, at.params)
    writer = write_csv if spec.format == "csv" else write_jsonl
    label = at.label
    progress = Progress(label)
    try:
        with engine.connect() as conn:
            watchdog = Watchdog(engine, conn.connection.dbapi_connection, at.timeout(), label)
            try:
                with watchdog:
                    columns, rows = stream_rows(conn, sql, args)
                    try:
                        count = write_atomic(path, lambda out: writer(out, columns, counted(rows, progress)),
                                             compress=spec.compress)
                    finally:
                        with contextlib.suppress(Exception):  # a connection left mid-result is thrown away
                            rows.close()  # type: ignore[attr-defined]
            except Exception as exc:
                if watchdog.fired:
                    raise timeout_error(exc, spec.query, "statement", watchdog.seconds) from exc
                raise
    finally:
        progress.finish()
    try:
        shown = path.relative_to(at.project.root)
    except ValueError:
        shown = path
    return count, f"wrote {shown}"
