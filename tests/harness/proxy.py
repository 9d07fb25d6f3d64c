"""A fault-injecting TCP proxy for network-failure tests.

`TcpProxy` listens on 127.0.0.1 (on a free port) and forwards every client
connection to a fixed upstream on 127.0.0.1, typically the private MariaDB
server.  While running, tests can switch faults on and off from any thread:

* ``cut_all()``            - abort every open connection (both sides);
* ``stall()`` / ``resume()`` - hold all bytes in both directions / release them;
* ``delay(seconds)``        - add latency before each forwarded chunk;
* ``cut_after_client_sends(pattern)`` - when the client sends ``pattern``
  (e.g. b"COMMIT"), forward it, swallow the server's reply and abort the
  connection: the client never learns whether the statement succeeded;
* ``refuse_new(True)``      - accept new connections and reset them at once;
* ``normal()``              - switch every fault off.

Each connection is served by two daemon threads (one per direction).  Sockets
are only ever closed by those threads; other threads wake them with
``shutdown()``, which avoids closing a descriptor another thread is blocked on.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

HOST = "127.0.0.1"
CHUNK_SIZE = 65536
UPSTREAM_CONNECT_TIMEOUT = 5.0
JOIN_TIMEOUT = 5.0
_LOCAL_NAMES = {"127.0.0.1", "localhost"}
_P = TypeVar("_P", bound="TcpProxy")


def _set_reset_on_close(sock: socket.socket) -> None:
    """Make close() send a TCP RST instead of a graceful FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock`` without closing the descriptor."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Link:
    """One proxied connection: client socket, upstream socket and fault state."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self.discard_replies = False
        self.reply_seen = threading.Event()
        self._lock = threading.Lock()
        self._pumps_left = 2

    def shut(self, abrupt: bool) -> None:
        """Mark the link closed and wake both pumps; ``abrupt`` means RST."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            for sock in (self.client, self.upstream):
                if abrupt:
                    _set_reset_on_close(sock)
                _shutdown(sock)

    def pump_finished(self) -> None:
        """Called by each pump on exit; the last one closes both sockets."""
        with self._lock:
            self._pumps_left -= 1
            if self._pumps_left:
                return
        self.client.close()
        self.upstream.close()


class TcpProxy:
    """Threaded TCP proxy from 127.0.0.1:``port`` to ``upstream`` with fault injection.

    Counters: ``accepted`` (connections forwarded), ``refused`` (connections
    reset because of ``refuse_new``) and ``cuts`` (times the
    ``cut_after_client_sends`` trigger fired).
    """

    def __init__(self, upstream_host: str, upstream_port: int,
                 reply_timeout: float = 0.5) -> None:
        if upstream_host not in _LOCAL_NAMES:
            raise ValueError(f"TcpProxy only forwards to 127.0.0.1, not {upstream_host!r}")
        self.upstream = (HOST, upstream_port)
        self.reply_timeout = reply_timeout
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self._cond = threading.Condition()
        self._links: set[_Link] = set()
        self._stalled = False
        self._delay = 0.0
        self._refusing = False
        self._trigger: tuple[bytes, bool] | None = None
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._port: int | None = None

    # ------------------------------------------------------------- properties
    @property
    def address(self) -> tuple[str, int]:
        """(host, port) clients should connect to."""
        return (HOST, self.port)

    @property
    def port(self) -> int:
        """Listening port (assigned by start(), kept after stop())."""
        if self._port is None:
            raise RuntimeError("proxy not started")
        return self._port

    @property
    def active(self) -> int:
        """Number of connections currently open through the proxy."""
        with self._cond:
            return len(self._links)

    # -------------------------------------------------------------- lifecycle
    def start(self: _P) -> _P:
        """Bind a free port on 127.0.0.1 and start accepting connections."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(128)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept",
                                          daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop listening, abort all connections and join every thread."""
        if self._listener is None:
            return
        self._stopping = True
        _shutdown(self._listener)
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
        self._listener.close()
        self._abort_links()
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(JOIN_TIMEOUT)
        self._listener = None

    def __enter__(self: _P) -> _P:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- faults
    def normal(self) -> None:
        """Switch off every fault: forward bytes promptly, accept connections."""
        with self._cond:
            self._stalled = False
            self._delay = 0.0
            self._refusing = False
            self._trigger = None
            self._cond.notify_all()

    def cut_all(self) -> None:
        """Abruptly close every current connection, client and server side."""
        self._abort_links()

    def stall(self) -> None:
        """Stop forwarding in both directions; sockets stay open, bytes are held."""
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        """Undo stall(): held bytes are forwarded, in order."""
        with self._cond:
            self._stalled = False
            self._cond.notify_all()

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before forwarding each chunk (0 disables)."""
        with self._cond:
            self._delay = max(0.0, seconds)

    def refuse_new(self, refuse: bool = True) -> None:
        """Reset new connections immediately (True) or serve them again (False)."""
        with self._cond:
            self._refusing = refuse

    def cut_after_client_sends(self, pattern: bytes, once: bool = True) -> None:
        """Arm a trigger: when a client sends ``pattern``, cut before the reply.

        The pattern must occur within one chunk read from the client (true for
        a MySQL statement packet).  The chunk is forwarded, the server's reply
        is awaited (at most ``reply_timeout`` seconds) and discarded, then the
        connection is aborted.  With ``once`` the trigger disarms after firing.
        """
        if not pattern:
            raise ValueError("pattern must not be empty")
        with self._cond:
            self._trigger = (pattern, once)

    # -------------------------------------------------------------- internals
    def _abort_links(self) -> list[_Link]:
        """Abort every link, wake waiting pumps and return the aborted links."""
        with self._cond:
            links = list(self._links)
            for link in links:
                link.shut(abrupt=True)
            self._cond.notify_all()
        return links

    def _close_link(self, link: _Link, abrupt: bool) -> None:
        """Shut one link and wake its pumps if they are held by stall()."""
        with self._cond:
            link.shut(abrupt)
            self._cond.notify_all()

    def _accept_loop(self) -> None:
        """Accept clients until stop(); each gets an upstream connection."""
        assert self._listener is not None
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._stopping:
                client.close()
                return
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        """Refuse ``client`` or connect it upstream and start its two pumps."""
        with self._cond:
            refusing = self._refusing
            if refusing:
                self.refused += 1
        if refusing:
            _set_reset_on_close(client)
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, UPSTREAM_CONNECT_TIMEOUT)
        except OSError:
            _set_reset_on_close(client)
            client.close()
            return
        upstream.settimeout(None)
        self._register(_Link(client, upstream))

    def _register(self, link: _Link) -> None:
        """Track ``link`` and start its pump threads."""
        pumps = [
            threading.Thread(target=self._pump, args=(link, link.client, link.upstream,
                                                      self._to_server), daemon=True,
                             name="proxy-c2s"),
            threading.Thread(target=self._pump, args=(link, link.upstream, link.client,
                                                      self._to_client), daemon=True,
                             name="proxy-s2c"),
        ]
        with self._cond:
            self._links.add(link)
            self.accepted += 1
            self._threads = [t for t in self._threads if t.is_alive()] + pumps
        for thread in pumps:
            thread.start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket,
              forward: Callable[[_Link, socket.socket, bytes], bool]) -> None:
        """Copy chunks from ``src`` to ``dst`` via ``forward`` until either side ends."""
        abrupt = False
        try:
            while not link.closed.is_set():
                chunk = src.recv(CHUNK_SIZE)
                if not chunk or not self._hold(link):
                    break
                if not forward(link, dst, chunk):
                    abrupt = True
                    break
        except OSError:
            abrupt = True
        finally:
            self._close_link(link, abrupt)
            with self._cond:
                self._links.discard(link)
            link.pump_finished()

    def _hold(self, link: _Link) -> bool:
        """Block while stalled, then apply the delay; False if the link closed."""
        with self._cond:
            self._cond.wait_for(lambda: not self._stalled or link.closed.is_set())
            delay = self._delay
        if delay and link.closed.wait(delay):
            return False
        return not link.closed.is_set()

    def _to_server(self, link: _Link, dst: socket.socket, chunk: bytes) -> bool:
        """Forward a client chunk; fire the cut trigger if it matches."""
        if not self._trigger_matches(chunk):
            dst.sendall(chunk)
            return True
        link.discard_replies = True
        dst.sendall(chunk)
        link.reply_seen.wait(self.reply_timeout)
        return False

    def _to_client(self, link: _Link, dst: socket.socket, chunk: bytes) -> bool:
        """Forward a server chunk unless a cut trigger says to swallow it."""
        if link.discard_replies:
            link.reply_seen.set()
            return True
        dst.sendall(chunk)
        return True

    def _trigger_matches(self, chunk: bytes) -> bool:
        """True (and disarm if once) when the armed pattern occurs in ``chunk``."""
        with self._cond:
            if self._trigger is None or self._trigger[0] not in chunk:
                return False
            if self._trigger[1]:
                self._trigger = None
            self.cuts += 1
            return True
