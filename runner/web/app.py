"""The WSGI application: routes, the token for actions, headers that keep a page from loading anything
but its own files, and errors as JSON under /api/ and as a page elsewhere.

A handler that fails answers 500 and is logged; the state store out of reach answers 503. Neither
touches whatever else the process is doing (the daemon's schedule runs in other threads).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable

from runner import logs
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


class App:
    """WSGI callable over one Site."""

    def __init__(self, site: Site):
        self.site = site

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
            return handler(self.site, req, *values)
        except HTTPError as exc:
            return self.error(is_api, exc.status, exc.message, exc.headers)
        except Exception as exc:
            import sqlalchemy.exc

            if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
                text = logs.REDACTOR.scrub(" ".join(str(exc.orig or exc).split()))[:300]
                log.warning("web: the state store cannot be read: %s", text)
                return self.error(is_api, 503, f"the state store cannot be read now: {text}")
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


def make_app(site: Site) -> App:
    return App(site)

