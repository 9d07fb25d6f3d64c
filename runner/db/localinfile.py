"""LOAD DATA LOCAL INFILE that can only ever send the runner's own stream, never a file.

Stock PyMySQL with `local_infile=True` answers a server's LOCAL INFILE request by opening whatever
file name the server sends, so a hostile or compromised server could read the client's files. This
connection never opens a file: it answers the request with the stream armed for the one statement
the runner is executing, ignoring the name the server asked for, and with an empty file when
nothing is armed. It is used for the target side of MySQL-to-MySQL loads only; pooled connections
keep LOCAL INFILE off.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from pymysql import connections, err
from pymysql.constants import CR

log = logging.getLogger("runner.load")

PACKET_BYTES = 256 * 1024  # well below the smallest max_allowed_packet a server accepts (1 MiB)

Feed = Callable[[], Iterable[bytes]]


class _StreamResult(connections.MySQLResult):
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn: StreamingConnection = self.connection
        feed = conn.take_feed()
        if feed is None:
            log.warning("the server asked for a local file outside a load; sent an empty file instead")
        try:
            for chunk in (feed() if feed is not None else ()):
                conn.write_packets(chunk)
        finally:
            conn.write_packet(b"")  # end of data, also after a failed feed: the server answers, the
            ok_packet = conn._read_packet()  # connection stays in step, the caller rolls back
        if not ok_packet.is_ok_packet():
            raise err.OperationalError(CR.CR_COMMANDS_OUT_OF_SYNC, "Commands Out of Sync")
        self._read_ok_packet(ok_packet)


class StreamingConnection(connections.Connection):
    """A PyMySQL connection whose LOCAL INFILE data comes only from `armed(feed)`."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["local_infile"] = True
        self._feed: Feed | None = None
        super().__init__(*args, **kwargs)

    def write_packets(self, data: bytes) -> None:
        """`data` as protocol packets in one send: a thread that gives up the GIL once per send, not
        once per packet, keeps pace with a reader thread that holds it."""
        parts: list[bytes | memoryview] = []
        view = memoryview(data)
        seq = self._next_seq_id
        for start in range(0, len(view), PACKET_BYTES):
            piece = view[start:start + PACKET_BYTES]
            parts.append(len(piece).to_bytes(3, "little") + bytes((seq,)))
            parts.append(piece)
            seq = (seq + 1) % 256
        self._write_bytes(b"".join(parts))
        self._next_seq_id = seq

    def take_feed(self) -> Feed | None:
        feed, self._feed = self._feed, None
        return feed

    @contextmanager
    def armed(self, feed: Feed) -> Iterator[None]:
        """Answer the next LOCAL INFILE request of this connection with `feed()`, for one statement."""
        self._feed = feed
        try:
            yield
        finally:
            self._feed = None

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own body, with the result class that streams `feed` instead of opening a file.
        self._result = None
        result = _StreamResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return result.affected_rows
