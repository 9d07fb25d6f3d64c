"""MySQL/MariaDB to MySQL/MariaDB at the speed of the servers.

The source server renders each row as bytes ready for the target (`loadsql.encoded_select`); a
reader thread takes them off the wire packet by packet, unbuffered, without a Python object per
value, and hands chunks of about a megabyte through a bounded queue to the writer, so reading and
writing overlap and memory stays constant whatever the row count. The writer feeds them to
`LOAD DATA LOCAL INFILE` through `StreamingConnection`, or, when the target refuses LOCAL INFILE
(MySQL 8 ships with local_infile=OFF), to multi-row INSERT statements, and says so once in the log.
Upserts always take the INSERT ... ON DUPLICATE KEY UPDATE path.

LOAD DATA LOCAL turns row errors (duplicate keys, values that do not fit) into warnings, because the
server cannot stop a client mid-file; any warning therefore fails the load, with the server's
first message, and the transaction is rolled back.
"""

from __future__ import annotations

import decimal
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from pymysql import err

from runner import stop
from runner.db.localinfile import StreamingConnection
from runner.move.coltypes import SourceColumn
from runner.move.loadsql import encoded_select, insert_head, load_data_sql, mysql_quote, upsert_tail
from runner.move.progress import Progress

log = logging.getLogger("runner.load")

CHUNK_BYTES = 1 << 20
QUEUE_CHUNKS = 8  # at most ~8 MiB of rows in flight
INSERT_BYTES = 1 << 20  # one INSERT statement (mariadb-dump uses about the same)
REFUSED = {1148, 3948, 4166}  # LOAD DATA LOCAL disabled on the server (MySQL 5.x, MySQL 8, MariaDB)

_warned: set[str] = set()
_warned_lock = threading.Lock()


class SourceError(Exception):
    """The source side of a load failed: running the query or reading its rows."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class LoadWarnings(err.OperationalError):
    """LOAD DATA LOCAL reported warnings (skipped duplicates, truncated values): the load is refused."""


_DONE = object()
_WM_KEYS: dict[str, Callable[[bytes], Any]] = {
    "int": int, "bit": lambda b: int.from_bytes(b, "big"), "decimal": lambda b: decimal.Decimal(b.decode()),
    "float": float, "temporal": bytes, "binary": bytes, "text": lambda b: b.decode("utf-8"),
}


def _lenenc(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """One length-encoded field of a text-protocol row."""
    first = data[pos]
    if first < 251:
        return data[pos + 1:pos + 1 + first], pos + 1 + first
    if first == 251:
        return None, pos + 1
    width = {252: 2, 253: 3, 254: 8}[first]
    n = int.from_bytes(data[pos + 1:pos + 1 + width], "little")
    start = pos + 1 + width
    return data[start:start + n], start + n


class RowReader(threading.Thread):
    """Runs the encoded source query unbuffered and queues its rows in chunks of joined bytes."""

    def __init__(self, conn: Any, sql: str, args: Any, sep: bytes, chunk_bytes: int, progress: Progress,
                 watermark_kind: str | None = None):
        super().__init__(name="load-reader", daemon=True)
        self.conn = conn
        self.sql = sql
        self.args = args
        self.sep = sep
        self.chunk_bytes = chunk_bytes
        self.progress = progress
        self.wm_key = _WM_KEYS[watermark_kind] if watermark_kind else None
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.stop = threading.Event()
        self.rows = 0
        self.high: bytes | None = None  # highest watermark column value seen, as the server sent it
        self.error: BaseException | None = None
        self.clean = True  # False: stopped mid-result, the connection cannot be reused

    def run(self) -> None:
        try:
            self._read()
            self._put(_DONE)
        except BaseException as exc:  # handed to the writer's thread, which raises it
            self.error = exc
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        cur = self.conn.cursor()
        sql = cur.mogrify(self.sql, self.args)
        cur.close()
        self.conn.query(sql, unbuffered=True)
        result = self.conn._result
        read = self.conn._read_packet
        parts: list[bytes] = []
        size = 0
        wm_key, high_key = self.wm_key, None
        while True:
            data = read()._data
            first = data[0]
            if first == 0xFE and len(data) < 9:  # EOF packet: the end of the rows
                break
            if wm_key is None and first < 251:
                part = data[1:]
            else:
                part, pos = _lenenc(data, 0)
                if part is None:
                    raise err.DataError(1301, "a row is larger than the source's max_allowed_packet allows "
                                              "to render; raise max_allowed_packet on the source server")
                if wm_key is not None:
                    raw, _ = _lenenc(data, pos)
                    if raw is not None:
                        key = wm_key(raw)
                        if high_key is None or key > high_key:
                            high_key, self.high = key, raw
            parts.append(part)
            size += len(part)
            if size >= self.chunk_bytes:
                if not self._flush(parts):
                    return
                parts, size = [], 0
        result.unbuffered_active = False
        if parts:
            self._flush(parts)

    def _flush(self, parts: list[bytes]) -> bool:
        if not self._put(self.sep.join(parts)):
            return False
        self.rows += len(parts)
        self.progress.add(len(parts))
        return True

    def chunks(self) -> Iterator[bytes]:
        """The chunks, in order, in the writer's thread; a source failure is raised as SourceError."""
        if self.ident is None:
            self.start()
        while True:
            stop.check()  # a stop request ends the feed here; the statement is rolled back
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                if not self.is_alive() and self.queue.empty():
                    raise SourceError(self.error or RuntimeError("the source reader stopped without a result"))
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise SourceError(item)
            yield item

    def close(self) -> None:
        """Stop reading (when the writer gave up) and wait for the thread."""
        self.stop.set()
        if self.ident is not None:
            self.join()
        result = getattr(self.conn, "_result", None)
        if result is not None and result.unbuffered_active:
            result.unbuffered_active = False  # PyMySQL would drain the rest when collected
            self.clean = False


@dataclass
class CopyResult:
    rows: int
    high: Any  # highest watermark value seen (None: no rows, or not incremental)
    method: str


def copy_high(reader: RowReader, kind: str | None) -> Any:
    """The highest watermark value the reader saw, as a Python value (dates and times as text)."""
    if reader.high is None or kind is None:
        return None
    if kind in ("int", "bit", "decimal", "float"):
        return _WM_KEYS[kind](reader.high)
    return reader.high if kind == "binary" else reader.high.decode("utf-8")


def _load_data(src: Any, dst: StreamingConnection, columns: Sequence[SourceColumn], into: str, inner_sql: str,
               args: Any, progress: Progress, watermark: SourceColumn | None) -> CopyResult | None:
    """LOAD DATA LOCAL INFILE fed by the reader; None when the target refuses LOCAL INFILE."""
    kind = watermark.kind if watermark else None
    reader = RowReader(src, encoded_select(inner_sql, columns, "tsv", watermark.name if watermark else None),
                       args, b"", CHUNK_BYTES, progress, kind)
    cur = dst.cursor()
    try:
        with dst.armed(reader.chunks):
            cur.execute(load_data_sql(into, columns))
    except SourceError:
        raise
    except err.MySQLError as exc:
        if reader.error is not None:
            raise SourceError(reader.error) from exc
        if exc.args and exc.args[0] in REFUSED and reader.ident is None:
            return None  # refused before a row was read: the INSERT path starts from the beginning
        raise
    finally:
        reader.close()
    check_load_data(cur, reader.rows)
    return CopyResult(reader.rows, copy_high(reader, kind), "LOAD DATA LOCAL INFILE")


def check_load_data(cur: Any, sent: int) -> None:
    """LOAD DATA LOCAL stored every row sent, without a warning; else the load fails (and rolls back)."""
    if cur.warning_count:
        _raise_warnings(cur, cur.warning_count)
    if cur.rowcount != sent:
        raise LoadWarnings(1261, f"LOAD DATA stored {cur.rowcount} of {sent} rows")


def _raise_warnings(cur: Any, count: int) -> None:
    cur.execute("SHOW WARNINGS LIMIT 3")
    found = cur.fetchall()
    shown = [w for w in found if w[0] != "Note"] or list(found) or [("Warning", 1261, "see SHOW WARNINGS")]
    level, code, message = shown[0]
    raise LoadWarnings(int(code), f"{message} ({count} warning(s) while loading; LOAD DATA LOCAL skips such "
                                  f"rows instead of failing, so the load was rolled back)")


def _max_packet(dst: StreamingConnection) -> int:
    cur = dst.cursor()
    cur.execute("SELECT @@SESSION.max_allowed_packet")
    value = int(cur.fetchone()[0])
    cur.close()
    return value


def _inserts(src: Any, dst: StreamingConnection, columns: Sequence[SourceColumn], into: str, inner_sql: str,
             args: Any, progress: Progress, watermark: SourceColumn | None, mode: str,
             key: Sequence[str]) -> CopyResult:
    kind = watermark.kind if watermark else None
    max_packet = _max_packet(dst)
    names = [c.name for c in columns]
    head = insert_head(into, names, mysql_quote).encode()
    tail = (upsert_tail("mysql", names, key, mysql_quote) if mode == "upsert" else "").encode()
    budget = max(4096, min(INSERT_BYTES, max_packet - len(head) - len(tail) - 1024))
    reader = RowReader(src, encoded_select(inner_sql, columns, "sql", watermark.name if watermark else None),
                       args, b",", budget, progress, kind)
    try:
        for chunk in reader.chunks():
            dst.query(head + chunk + tail)
    finally:
        reader.close()
    if reader.error is not None:
        raise SourceError(reader.error)
    return CopyResult(reader.rows, copy_high(reader, kind), "multi-row INSERT")


def copy(src: Any, dst: StreamingConnection, columns: Sequence[SourceColumn], into: str, inner_sql: str, args: Any,
         progress: Progress, *, mode: str, key: Sequence[str], watermark: SourceColumn | None,
         target_name: str) -> CopyResult:
    """Move the rows of `inner_sql` (run on `src`) into table `into` on `dst`, inside dst's transaction."""
    if mode != "upsert":
        done = _load_data(src, dst, columns, into, inner_sql, args, progress, watermark)
        if done is not None:
            return done
        say_refused(target_name)
    return _inserts(src, dst, columns, into, inner_sql, args, progress, watermark, mode, key)


def say_refused(target: str) -> None:
    with _warned_lock:
        if target in _warned:
            return
        _warned.add(target)
    log.warning("database %s refuses LOAD DATA LOCAL INFILE (local_infile is OFF on the server); loading with "
                "batched multi-row INSERT instead (SET GLOBAL local_infile=1 on the server for the faster path)",
                target)
