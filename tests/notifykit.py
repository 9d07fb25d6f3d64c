"""Real receivers for the alert tests, all on 127.0.0.1: an SMTP server (aiosmtpd), an HTTP receiver
(stdlib http.server) that records every request, and a TCP server that accepts and never answers."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    method: str
    path: str
    body: str
    headers: dict[str, str]


class HttpReceiver:
    """Records every request; answers 200."""

    def __init__(self, port: int | None = None):
        self.requests: list[Request] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                receiver.requests.append(Request(self.command, self.path, body, dict(self.headers)))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_POST = do_GET = do_HEAD = _record

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def json_posts(self, path: str = "/hook") -> list[dict[str, Any]]:
        import json

        return [json.loads(r.body) for r in self.requests if r.path == path]


class SmtpReceiver:
    """aiosmtpd on a free port; `messages` are parsed emails."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                receiver.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=runner@example.com&to={to}"

    def texts(self) -> list[str]:
        out = []
        for m in self.messages:
            part = m.get_body(preferencelist=("plain", "html"))
            out.append(f"{m['subject']}\n{part.get_content() if part is not None else ''}")
        return out

    def close(self) -> None:
        self.controller.stop()


class Stall:
    """Accepts connections and never answers (a receiver that hangs)."""

    def __init__(self, port: int | None = None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        for c in self.accepted:
            c.close()
        self.sock.close()
