"""The HTML pages: overview, job, run. Jinja templates with autoescape on, so every job name, task
name, error text and parameter is shown as text; texts pass the log redactor first, so a password that
slipped into an error text is not shown either. The charts are inline SVG drawn from `charts.py`."""

from __future__ import annotations

import re
import socket
from collections import Counter
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner import logs
from runner.schedule.byhand import RERUNNABLE
from runner.web import svg
from runner.web.site import (
    HTTPError,
    Request,
    Response,
    Site,
    check_job_name,
    check_run_id,
    parse_limit,
    parse_since,
    parse_status,
)
from runner.web.views import STATUSES, STRIP, job_view, overview, run_view
from runner.web.words import ago, fmt_seconds, fmt_time, iso

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}

_env: Any = None
_env_lock = threading.Lock()


def _scrub(value: Any) -> str:
    return logs.REDACTOR.scrub(str(value)) if value is not None else ""


def _first_line(value: Any, width: int = 120) -> str:
    text = " ".join(_scrub(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: Any, width: int = 28) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def environment() -> Any:
    """The template environment, built once (jinja2 is imported only when a page is served)."""
    global _env
    with _env_lock:
        if _env is None:
            import jinja2

            env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True, auto_reload=False,
                                     undefined=jinja2.StrictUndefined)
            env.filters.update(secs=fmt_seconds, time=fmt_time, ago=ago, iso=iso, scrub=_scrub, line=_first_line,
                               short=_short, part=lambda v: quote(str(v), safe=""), num=lambda v: f"{v:,}")
            env.globals.update(strip_svg=svg.strip, duration_marks=svg.duration_marks, STRIP=STRIP, STATUSES=STATUSES,
                               RERUNNABLE=RERUNNABLE, host=socket.gethostname())
            _env = env
        return _env


def render(site: Site, name: str, code: int = 200, **values: Any) -> Response:
    snap = site.snapshot()
    body = environment().get_template(name).render(now=site.now(), actions_on=site.actions_on,
                                                   root=str(snap.project.root), **values)
    return Response(code, body.encode())


def error_page(site: Site, status: int, message: str) -> Response:
    return render(site, "error.html", status, status=status, message=message)


def overview_page(site: Site, req: Request) -> Response:
    snap = site.snapshot()
    now = site.now()
    with site.store(snap).reading() as reader:
        rows = overview(snap, reader, now)
    last = Counter(r.last.status if r.last else "never run" for r in rows if r.job is not None)
    invalid = sum(1 for r in rows if r.job is None)
    return render(site, "overview.html", rows=rows, conf_problems=snap.conf_problems,
                  counts=sorted(last.items(), key=lambda kv: (kv[0] == "success", -kv[1], kv[0])), invalid=invalid)


def job_page(site: Site, req: Request, name: str) -> Response:
    check_job_name(name)
    snap = site.snapshot()
    now = site.now()
    status, since_text = parse_status(req.one("status", True)), req.one("since", True)
    since = parse_since(since_text, now)
    limit = parse_limit(req.one("limit", True), 100)
    with site.store(snap).reading() as reader:
        view = job_view(snap, reader, name, now, status, since, limit)
    if view is None:
        raise HTTPError(404, f"no job {name!r}: no file jobs/{name}.yml and no runs in the ledger")
    return render(site, "job.html", view=view, row=view.row, since_text=since_text or "", limit=limit)


def run_page(site: Site, req: Request, run_id: str) -> Response:
    check_run_id(run_id)
    snap = site.snapshot()
    now = site.now()
    with site.store(snap).reading() as reader:
        view = run_view(snap, reader, run_id, now)
    if view is None:
        raise HTTPError(404, f"no run {run_id}")
    return render(site, "run.html", view=view, run=view.run, tz=view.job.timezone if view.job else "UTC")


def static(site: Site, req: Request, name: str) -> Response:
    if not re.fullmatch(r"[a-z0-9_-]+\.[a-z]+", name):
        raise HTTPError(404, "no such file")
    path = STATIC / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or path.parent != STATIC or not path.is_file():
        raise HTTPError(404, "no such file")
    return Response(200, path.read_bytes(), kind, {"Cache-Control": "max-age=300"})

