"""The JSON API under /api/: the same data as the pages (jobs, runs, run detail, watermarks) and the
actions, described by the OpenAPI document at /api/openapi.json (`openapi.py`).

Moments are ISO 8601 in UTC (`2026-11-02T02:30:00Z`); durations are seconds. Run objects carry the
fields `--history --format json` gives (`run_id`, `job`, `status`, `trigger`, `slot`, `started`,
`ended`), watermarks those of `--watermarks` (`job`, `task`, `value`, `updated`). Every text is
passed through the log redactor, so a password that slipped into an error text is not given out.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

from runner import logs
from runner.state.jobstate import Pause
from runner.state.outbox import Alert
from runner.web.catalog import Snapshot
from runner.web.charts import Cell
from runner.web.records import Attempt, Run
from runner.web.site import (
    HTTPError,
    Request,
    Response,
    Site,
    check_job_name,
    check_run_id,
    json_response,
    parse_limit,
    parse_since,
    parse_status,
)
from runner.web.store import Reader
from runner.web.views import JobRow, job_row, job_view, overview, run_view
from runner.web.words import iso, schedule_words


def _utc(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _text(value: str | None) -> str | None:
    return logs.REDACTOR.scrub(value) if value else value


def run_json(r: Run, now: datetime) -> dict[str, Any]:
    return {
        "run_id": r.run_id, "job": r.job, "status": r.status, "trigger": r.trigger, "slot": iso(r.slot),
        "started": iso(r.started), "ended": iso(r.ended), "run_date": r.run_date, "seconds": r.seconds(now),
        "attempts": r.attempts, "rows": r.rows, "host": r.host, "pid": r.pid, "error": _text(r.error),
        "statement": r.statement, "page": f"/runs/{r.run_id}",
    }


def attempt_json(a: Attempt, now: datetime) -> dict[str, Any]:
    return {"task": a.task, "attempt": a.attempt, "status": a.status, "started": iso(a.started),
            "ended": iso(a.ended), "seconds": a.seconds(now), "rows": a.rows, "errno": a.errno,
            "error": _text(a.error), "statement": a.statement}


def notification_json(n: Alert) -> dict[str, Any]:
    return {"event": n.event, "target": n.target, "status": n.status, "created": iso(_utc(n.created_at)),
            "sent": iso(_utc(n.sent_at)), "attempts": n.attempts, "error": _text(n.error)}


def watermark_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "value": _text(doc["value"]), "pending_value": _text(doc["pending_value"])}


def cell_json(c: Cell) -> dict[str, Any]:
    return {"slot": iso(c.slot), "status": c.status, "run_id": c.run.run_id if c.run else None,
            "seconds": c.seconds, "runs": c.tries}


def job_json(row: JobRow, now: datetime) -> dict[str, Any]:
    job = row.job
    return {
        "job": row.name, "valid": job is not None,
        "problems": [_text(str(p)) for p in row.problems],
        "description": job.description if job else "",
        "schedule": row.schedule, "schedule_text": schedule_words(row.schedule) if job else None,
        "timezone": row.timezone if job else None, "next_run": iso(row.next_run),
        "last_run": run_json(row.last, now) if row.last else None,
        "enabled": job.enabled if job else None, "paused": pause_json(row.pause),
        "slots": [cell_json(c) for c in row.cells],
        "page": f"/jobs/{quote(row.name)}",
    }


def _reader(site: Site) -> tuple[Snapshot, AbstractContextManager[Reader]]:
    snap = site.snapshot()
    return snap, site.store(snap).reading()


def jobs(site: Site, req: Request) -> Response:
    snap, reading = _reader(site)
    now = site.now()
    with reading as reader:
        rows = overview(snap, reader, now)
    return json_response({"now": iso(now), "jobs": [job_json(r, now) for r in rows]})


def job(site: Site, req: Request, name: str) -> Response:
    check_job_name(name)
    snap, reading = _reader(site)
    now = site.now()
    with reading as reader:
        if name not in snap.jobs and name not in snap.invalid and not reader.has_runs(name):
            raise HTTPError(404, f"no job {name!r}")
        row = job_row(snap, reader, name, now, reader.paused([name]).get(name), reader.first_seen([name]).get(name))
    doc = job_json(row, now)
    j = row.job
    doc["tasks"] = [{"task": t.name, "kind": t.kind, "database": t.database, "depends_on": list(t.depends_on)}
                    for t in (j.tasks if j else ())]
    doc["params"] = {k: _text(str(v)) for k, v in (j.params.items() if j else ())}
    return json_response(doc)


def job_runs(site: Site, req: Request, name: str) -> Response:
    check_job_name(name)
    snap, reading = _reader(site)
    now = site.now()
    status, since = parse_status(req.one("status")), parse_since(req.one("since"), now)
    limit = parse_limit(req.one("limit"), 100)
    with reading as reader:
        view = job_view(snap, reader, name, now, status, since, limit)
    if view is None:
        raise HTTPError(404, f"no job {name!r}")
    return json_response({"job": name, "total": view.total, "runs": [run_json(r, now) for r in view.runs]})


def all_runs(site: Site, req: Request) -> Response:
    snap, reading = _reader(site)
    now = site.now()
    name = req.one("job")
    if name is not None:
        check_job_name(name)
    status, since = parse_status(req.one("status")), parse_since(req.one("since"), now)
    limit = parse_limit(req.one("limit"), 100)
    with reading as reader:
        found = reader.runs(job=name, status=status, since=since, limit=limit)
    return json_response({"runs": [run_json(r, now) for r in found]})


def run(site: Site, req: Request, run_id: str) -> Response:
    check_run_id(run_id)
    snap, reading = _reader(site)
    now = site.now()
    with reading as reader:
        view = run_view(snap, reader, run_id, now)
    if view is None:
        raise HTTPError(404, f"no run {run_id!r}")
    doc = run_json(view.run, now)
    doc["tasks"] = [{"task": t.name, "status": t.status, "attempts": len(t.attempts), "rows": t.rows,
                     "seconds": t.seconds(now), "errno": t.last.errno if t.last else None,
                     "error": _text(t.last.error) if t.last and t.status != "success" else None}
                    for t in view.tasks]
    doc["task_attempts"] = [attempt_json(a, now) for a in view.attempts]
    doc["slot_runs"] = [{"run_id": r.run_id, "status": r.status, "trigger": r.trigger, "started": iso(r.started)}
                        for r in view.chain]
    doc["notifications"] = [notification_json(n) for n in view.notifications]
    return json_response(doc)


def watermarks(site: Site, req: Request, name: str | None = None) -> Response:
    if name is None:
        name = req.one("job")
    if name is not None:
        check_job_name(name)
    snap, reading = _reader(site)
    with reading as reader:
        found = reader.watermarks(snap.jobs, [name] if name is not None else None)
    return json_response({"watermarks": [watermark_json(w) for w in found]})


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise HTTPError(400, f"{key} must be true or false")
    return value


def _known_job(site: Site, name: str) -> None:
    snap = site.snapshot()
    if name not in snap.jobs and name not in snap.invalid:
        raise HTTPError(404, f"no job {name!r}")


def pause_json(p: Pause | None) -> dict[str, Any] | None:
    return None if p is None else {"by": _text(p.by), "at": iso(p.at), "reason": _text(p.reason)}


def run_now(site: Site, req: Request, name: str) -> Response:
    site.authorize(req)
    check_job_name(name)
    force = _flag(req.json_body(), "force")
    snap = site.snapshot()
    found = snap.jobs.get(name)
    if found is None:
        if name in snap.invalid:
            raise HTTPError(409, f"job {name}: its file is invalid, so it cannot run: "
                                 + "; ".join(str(p) for p in snap.invalid[name]))
        raise HTTPError(404, f"no job {name!r}")
    return _started(lambda: site.actions.run_now(snap.project, found, force), job=name)


def _started(start: Callable[[], str], **more: str) -> Response:
    """202 with the run an action started (its page, its API answer), or what refused it."""
    from runner.web.actions import Refused

    try:
        run_id = start()
    except Refused as exc:
        raise HTTPError(exc.status, _text(str(exc)) or "refused") from None
    return json_response({"run_id": run_id, **more, "page": f"/runs/{run_id}", "api": f"/api/runs/{run_id}"},
                         202, {"Location": f"/api/runs/{run_id}"})


def rerun(site: Site, req: Request, run_id: str) -> Response:
    site.authorize(req)
    check_run_id(run_id)
    force = _flag(req.json_body(), "force")
    return _started(lambda: site.actions.rerun(site.snapshot().project, run_id, force), rerun_of=run_id)


def pause(site: Site, req: Request, name: str) -> Response:
    site.authorize(req)
    check_job_name(name)
    reason = req.json_body().get("reason", "")
    if not isinstance(reason, str):
        raise HTTPError(400, "reason must be a text of at most 500 characters")
    from runner.state.jobstate import reason_problem

    problem = reason_problem(reason)
    if problem is not None:
        raise HTTPError(400, f"reason: {problem}")
    _known_job(site, name)
    current, made = site.actions.pause(site.snapshot().project, name, reason, f"web ({req.remote})")
    return json_response({"job": name, "paused": pause_json(current), "changed": made})


def resume(site: Site, req: Request, name: str) -> Response:
    site.authorize(req)
    check_job_name(name)
    req.json_body()
    _known_job(site, name)
    closed = site.actions.resume(site.snapshot().project, name, f"web ({req.remote})")
    return json_response({"job": name, "paused": None, "resumed": pause_json(closed), "changed": closed is not None})
