"""What every handler of the web gets and gives: the site (project files, state store, actions, token),
a parsed request, a response; query parameters checked the same way for pages and API."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs

from runner import clock
from runner.config.checks import MAX_DURATION, parse_duration
from runner.config.jobs import is_job_name
from runner.model import Project, WebSpec
from runner.web.actions import Actions
from runner.web.catalog import Catalog, Snapshot
from runner.web.store import Store
from runner.web.views import STATUSES

log = logging.getLogger("runner.web")

UTC = timezone.utc
MAX_LIMIT = 1000
MAX_BODY = 64 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, "application/json", dict(headers or {}))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    environ: Mapping[str, Any]

    @classmethod
    def of(cls, environ: Mapping[str, Any]) -> "Request":
        raw = environ.get("PATH_INFO", "") or "/"
        try:  # WSGI hands the path over as latin-1 text of its bytes
            path = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise HTTPError(404, "no such page") from None
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        return cls(environ.get("REQUEST_METHOD", "GET").upper(), path, query, environ)

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    @property
    def remote(self) -> str:
        return str(self.environ.get("REMOTE_ADDR", "?"))

    def one(self, name: str, blank_is_none: bool = False) -> str | None:
        """A query parameter given at most once. An empty one is refused by the API, and means "not given"
        for the pages (their forms send every field)."""
        values = self.query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise HTTPError(400, f"query parameter {name} given {len(values)} times: give it once")
        return None if blank_is_none and values[0] == "" else values[0]

    def body(self) -> bytes:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HTTPError(400, "Content-Length is not a number") from None
        if length > MAX_BODY:
            raise HTTPError(413, f"request body over {MAX_BODY} bytes")
        return self.environ["wsgi.input"].read(length) if length > 0 else b""

    def json_body(self) -> dict[str, Any]:
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeError):
            raise HTTPError(400, "the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        return doc


# ---------------------------------------------------------------------------------------------- query values

def parse_status(text: str | None) -> str | None:
    if text is None:
        return None
    if text not in STATUSES:
        raise HTTPError(400, f"unknown status {text!r}: one of {', '.join(STATUSES)}")
    return text


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """A start time from "7d", "36h", "90m" (that long ago) or an ISO date or time (UTC unless it says)."""
    if text is None:
        return None
    seconds = parse_duration(text) if text[:1].isascii() and text[:1].isdigit() and "-" not in text else None
    try:
        if seconds is not None:
            return now - timedelta(seconds=seconds)
        t = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
        return (t.replace(tzinfo=UTC) if t.tzinfo is None else t).astimezone(UTC)
    except ValueError:
        raise HTTPError(400, f"invalid since {text!r}: a duration such as 7d, 36h, 1h30m (at most "
                             f"{MAX_DURATION / 86400:.0f}d), or a date such as 2026-11-01 (UTC)") from None
    except OverflowError:  # further back than a datetime reaches: everything
        return datetime.min.replace(tzinfo=UTC)


def parse_limit(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise HTTPError(400, f"invalid limit {text!r}: a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def check_job_name(name: str) -> str:
    if not is_job_name(name):
        raise HTTPError(404, f"no job {name!r}")
    return name


def check_run_id(run_id: str) -> str:
    if len(run_id) != 32 or any(c not in "0123456789abcdef" for c in run_id):
        raise HTTPError(404, f"no run {run_id!r}")
    return run_id


# ---------------------------------------------------------------------------------------------- the site

def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Site:
    """The project (as its files are now), its state store, the actions, and who may take them."""

    def __init__(self, project: Project, actions: Actions | None = None, spec: WebSpec | None = None,
                 now: Callable[[], datetime] = clock.now):
        self.catalog = Catalog(project)
        self.spec = spec or project.settings.web or WebSpec()
        self.actions = actions or Actions()
        self.now = now
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        return self.catalog.current()

    def store(self, snap: Snapshot) -> Store:
        url = snap.project.settings.state_url
        with self._lock:
            if url not in self._stores:
                self._stores[url] = Store(url)
            return self._stores[url]

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.dispose()
            self._stores.clear()

    @property
    def actions_on(self) -> bool:
        return bool(self.spec.token)

    def check_host(self, req: Request) -> None:
        """On a loopback address only loopback names are answered, so a web page elsewhere cannot read
        the API through a name that resolves to 127.0.0.1 (DNS rebinding)."""
        if not _loopback(self.spec.host):
            return
        host = (req.header("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host and not _loopback(name.lower()):
            raise HTTPError(421, "this server answers loopback names only (it listens on a loopback address)")

    def authorize(self, req: Request) -> None:
        """Actions need `Authorization: Bearer <token>`; the token is compared in constant time, and a
        wrong one is logged without its text."""
        if not self.spec.token:
            raise HTTPError(403, "actions are off: set web.token in conf/runner.yml (e.g. \"${RUNNER_WEB_TOKEN}\")")
        given = req.header("Authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPError(401, "this action needs the token: send Authorization: Bearer <token>",
                            {"WWW-Authenticate": 'Bearer realm="runner"'})
        if not hmac.compare_digest(value.strip().encode("utf-8", "surrogateescape"),
                                   self.spec.token.encode("utf-8", "surrogateescape")):
            log.warning("web: wrong token for %s %r from %s: refused (401)", req.method, req.path[:200], req.remote)
            raise HTTPError(401, "wrong token", {"WWW-Authenticate": 'Bearer realm="runner", error="invalid_token"'})
