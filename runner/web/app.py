"""The WSGI application: routes, the token for actions, headers that keep a page from loading anything
but its own files, and errors as JSON under /api/ and as a page elsewhere.

A handler that fails answers 500 and is logged; the state store out of reach or broken answers 503 with
what is wrong. Neither
touches whatever else the process is doing (the daemon's schedule runs in other threads). An answer is
served again for a second to the same request (`Recent`), so pages are at most a second old.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable, Iterable

from runner import clock, logs
from runner.web import api, pages
from runner.web.openapi import document
from runner.web.site import HTTPError, Request, Response, Site, json_response

log = logging.getLogger("runner.web")

Handler = Callable[..., Response]

_SECURITY = [
    # Pages load their own style sheet and script and nothing else; inline scripts never run.
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 421: "Misdirected Request",
            422: "Unprocessable Entity", 500: "Internal Server Error", 503: "Service Unavailable"}

_SEGMENT = "([^/]+)"
FRESH_FOR = 1.0  # seconds an answer is served again to the same request


def _openapi(site: Site, req: Request) -> Response:
    return json_response(document())


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile("^" + pattern.replace("{}", _SEGMENT) + "$"), handler)
    for method, pattern, handler in [
        ("GET", "/", pages.overview_page),
        ("GET", "/jobs/{}", pages.job_page),
        ("GET", "/runs/{}", pages.run_page),
        ("GET", "/static/{}", pages.static),
        ("GET", "/api/openapi.json", _openapi),
        ("GET", "/api/jobs", api.jobs),
        ("GET", "/api/jobs/{}", api.job),
        ("GET", "/api/jobs/{}/runs", api.job_runs),
        ("GET", "/api/jobs/{}/watermarks", api.watermarks),
        ("POST", "/api/jobs/{}/run", api.run_now),
        ("POST", "/api/jobs/{}/pause", api.pause),
        ("POST", "/api/jobs/{}/resume", api.resume),
        ("POST", "/api/runs/{}/rerun", api.rerun),
        ("GET", "/api/runs", api.all_runs),
        ("GET", "/api/runs/{}", api.run),
        ("GET", "/api/watermarks", api.watermarks),
    ]
]


def route(method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
    """The handler of a request and its path values; HTTPError 404 or 405 (with the methods allowed)."""
    allowed = []
    for m, pattern, handler in ROUTES:
        found = pattern.match(path)
        if found:
            if m == method or (method == "HEAD" and m == "GET"):
                return handler, found.groups()
            allowed.append(m)
    if allowed:
        raise HTTPError(405, f"{method} is not allowed here: {', '.join(allowed)}",
                        {"Allow": ", ".join(sorted(set(allowed)))})
    raise HTTPError(404, "no such page" if not path.startswith("/api/") else f"no such API path: {path[:200]}")


class Recent:
    """Answers of the last second, by path and query: a page polled in a loop (a wall screen, a monitor,
    several people at once) is rendered once a second, not once per request, so polling it costs the
    process, and the daemon's schedule beside it, next to nothing. An action clears it."""

    def __init__(self, seconds: float = FRESH_FOR, size: int = 256):
        self.seconds = seconds
        self.size = size
        self._answers: dict[tuple[str, str], tuple[float, Response]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Response | None:
        with self._lock:
            found = self._answers.get(key)
        return found[1] if found is not None and clock.monotonic() - found[0] < self.seconds else None

    def put(self, key: tuple[str, str], response: Response) -> None:
        with self._lock:
            if len(self._answers) >= self.size:
                now = clock.monotonic()
                self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self.seconds}
                while len(self._answers) >= self.size:
                    self._answers.pop(next(iter(self._answers)))
            self._answers[key] = (clock.monotonic(), response)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()


class App:
    """WSGI callable over one Site."""

    def __init__(self, site: Site, fresh_for: float = FRESH_FOR):
        self.site = site
        self.recent = Recent(fresh_for)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.respond(environ)
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   *_SECURITY, *response.headers.items()]
        if "Cache-Control" not in response.headers:
            headers.append(("Cache-Control", "no-store"))
        start_response(f"{response.status} {_REASONS.get(response.status, 'Unknown')}", headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    def respond(self, environ: dict[str, Any]) -> Response:
        is_api = str(environ.get("PATH_INFO", "")).startswith("/api/")
        try:
            req = Request.of(environ)
            self.site.check_host(req)
            handler, values = route(req.method, req.path)
            if req.method not in ("GET", "HEAD"):
                response = handler(self.site, req, *values)
                if response.status < 300:
                    self.recent.clear()
                return response
            key = (req.path, str(environ.get("QUERY_STRING", "")))
            response = self.recent.get(key)
            if response is None:
                response = handler(self.site, req, *values)
                if response.status == 200 and handler is not pages.static:
                    self.recent.put(key, response)
            return response
        except HTTPError as exc:
            return self.error(is_api, exc.status, exc.message, exc.headers)
        except Exception as exc:
            text = _store_failure(exc)
            if text is not None:
                verb = "read" if environ.get("REQUEST_METHOD") in ("GET", "HEAD") else "used"
                log.warning("web: the state store cannot be %s: %s", verb, text)
                return self.error(is_api, 503, f"the state store cannot be {verb} now: {text}")
            log.exception("web: %s %r failed", environ.get("REQUEST_METHOD"), str(environ.get("PATH_INFO"))[:200])
            return self.error(is_api, 500, f"internal error ({type(exc).__name__}); the server log has the details")

    def error(self, is_api: bool, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        message = logs.REDACTOR.scrub(message)
        if is_api:
            return json_response({"error": message}, status, headers)
        try:
            page = pages.error_page(self.site, status, message)
        except Exception:  # the error page itself failed (state store, templates): plain text still says it
            log.exception("web: the error page failed")
            page = Response(status, message.encode(), "text/plain; charset=utf-8")
        page.headers.update(headers or {})
        return page


def _store_failure(exc: Exception) -> str | None:
    """What is wrong with the state store when `exc` is its failure (a file that is not a database, a
    server down or refusing the user), password hidden; None for any other error."""
    import sqlalchemy.exc

    from runner.errors import StateStoreError
    from runner.state.failures import failure_of

    found = failure_of(exc)
    if found is None and isinstance(exc, StateStoreError):
        found = str(exc)
    if found is None and isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        found = str(exc.orig or exc)
    return None if found is None else logs.REDACTOR.scrub(" ".join(found.split()))[:400]

