"""LOAD DATA LOCAL INFILE that can only ever send the runner's own stream, never a file.

Stock PyMySQL with `local_infile=True` answers a server's LOCAL INFILE request by opening whatever
file name the server sends, so a hostile or compromised server could read the client's files; with it
off, a request the server sends anyway leaves the connection out of step with a RuntimeError.

Every MySQL connection the runner opens is a `GuardedConnection` (`guard(engine)` for an engine's
pool): it does not offer LOCAL INFILE to the server, and a request that comes anyway is answered with
an empty file (the connection stays in step) and fails the statement with error 2068, naming the file
the server asked for. `StreamingConnection`, the target side of MySQL-to-MySQL loads, offers it and
answers with the stream armed for the one statement the runner is executing, whatever name the server
asked for; outside that statement it refuses like the others. No setting of databases.yml can turn
LOCAL INFILE on (config/project.py refuses `local_infile` and its kin).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from pymysql import connections, err
from pymysql.constants import CR

log = logging.getLogger("runner.load")

PACKET_BYTES = 256 * 1024  # well below the smallest max_allowed_packet a server accepts (1 MiB)
REFUSED = 2068  # CR_LOAD_DATA_LOCAL_INFILE_REJECTED, the client error of libmysqlclient for the same

Feed = Callable[[], Iterable[bytes]]


class _StreamResult(connections.MySQLResult):
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn: GuardedConnection = self.connection
        feed = conn.take_feed()
        try:
            for chunk in (feed() if feed is not None else ()):
                conn.write_packets(chunk)
        finally:
            conn.write_packet(b"")  # end of data, also after a failed feed: the server answers, the
            ok_packet = conn._read_packet()  # connection stays in step, the caller rolls back
        if not ok_packet.is_ok_packet():
            raise err.OperationalError(CR.CR_COMMANDS_OUT_OF_SYNC, "Commands Out of Sync")
        self._read_ok_packet(ok_packet)
        if feed is None:
            asked = first_packet.get_all_data()[1:].decode("utf-8", "replace")
            log.warning("the server asked for the local file %r (LOAD DATA LOCAL INFILE); refused, nothing was sent",
                        asked)
            raise err.OperationalError(REFUSED, f"the server asked for the local file {asked!r} (LOAD DATA LOCAL "
                                                "INFILE) and was refused: the runner never sends a file to a "
                                                "server, so nothing was sent")


class GuardedConnection(connections.Connection):
    """A PyMySQL connection that never sends a file: LOCAL INFILE is not offered, and a request for a
    file is answered with nothing and fails the statement (error 2068)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["local_infile"] = self._offers_local_infile()
        self._feed: Feed | None = None
        super().__init__(*args, **kwargs)

    @staticmethod
    def _offers_local_infile() -> bool:
        return False

    def take_feed(self) -> Feed | None:
        feed, self._feed = self._feed, None
        return feed

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own body, with the result class that answers LOCAL INFILE requests itself.
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


def guard(engine: Any) -> None:
    """Make every connection of a PyMySQL engine a GuardedConnection (other drivers are left alone)."""
    if engine.dialect.driver != "pymysql":
        return
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> GuardedConnection:
        return GuardedConnection(*cargs, **cparams)


class StreamingConnection(GuardedConnection):
    """A PyMySQL connection whose LOCAL INFILE data comes only from `armed(feed)`."""

    @staticmethod
    def _offers_local_infile() -> bool:
        return True

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

    @contextmanager
    def armed(self, feed: Feed) -> Iterator[None]:
        """Answer the next LOCAL INFILE request of this connection with `feed()`, for one statement."""
        self._feed = feed
        try:
            yield
        finally:
            self._feed = None
