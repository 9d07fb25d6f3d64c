"""Helpers of the web tests: a project with runs made by the runner itself, its web server on a free
loopback port (waitress, in a thread of the test process), and plain HTTP requests to it."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runner.config.project import load_project
from runner.model import WebSpec
from runner.web.server import Background, WebServer

TOKEN = "t0ken-for-the-tests-" + "x" * 8


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


@dataclass
class Served:
    url: str
    port: int
    server: WebServer

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, token: str | None = None, body: bytes = b"{}",
             headers: dict[str, str] | None = None) -> Reply:
        h = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return self.request("POST", path, body=body, headers=h)


@contextlib.contextmanager
def serving(root: Path, token: str = "") -> Iterator[Served]:
    """The project's web app on 127.0.0.1 (a free port), with `token` for actions ("" = read-only)."""
    project = load_project(root / "conf", root / "jobs")
    server = WebServer(project, WebSpec("127.0.0.1", 0, token))
    bg = Background(server)
    bg.thread.start()
    try:
        yield Served(server.url, server.port, server)
    finally:
        bg.stop(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CHROMIUM = "/usr/bin/chromium"
# The browser stays off the network: every name but 127.0.0.1 fails to resolve, any proxy use goes
# nowhere, and nothing is fetched in the background.
CHROMIUM_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
                 "--disable-background-networking", "--disable-component-update"]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (no browser of Playwright's own is used)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium); "
                             "scripts/test does so when run as root")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
