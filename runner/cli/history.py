"""`--history`: the latest runs of the ledger, filtered by job, status and age, as a table that fits
100 columns or as JSON (`--format json`, every field; the full error of a run is in its JSON and in
`--history --run ID`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from runner import clock
from runner.cli.output import iso, one_line, write_json, write_table
from runner.config.checks import MAX_DURATION, parse_duration
from runner.config.jobs import job_names
from runner.errors import UsageError
from runner.logs import REDACTOR
from runner.model import Project

STATUSES = ("running", "success", "failed", "interrupted", "abandoned", "missed", "paused")
DEFAULT_LIMIT = 30


@dataclass(frozen=True)
class HistoryQuery:
    job: str | None = None
    status: str | None = None
    since: str | None = None  # 7d, 12h, 30m, 90s, or a date / date and time (UTC)
    limit: int | None = None


def parse_since(text: str, now: datetime) -> datetime:
    """`--since 7d` (d, h, m, s as in durations) or `--since 2026-11-01[ 06:00]` (UTC)."""
    seconds = parse_duration(text)
    if seconds is not None and re.search(r"[dhms]$", text.strip()):
        return now - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"malformed --since {text!r}: write an age such as 7d, 12h or 30m (at most "
                         f"{MAX_DURATION / 86400:.0f}d), or a date YYYY-MM-DD (UTC)") from None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


def check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise UsageError(f"unknown --status {status!r}: one of {', '.join(STATUSES)}")


def unknown_job(project: Project, name: str, what: str = "job") -> UsageError:
    """The error for a job name that is neither a job file nor in the ledger: the known jobs, and the
    closest ones when it looks misspelt."""
    known = job_names(project)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return UsageError(f"unknown {what} '{name}'{hint} (jobs: {', '.join(known) or 'none'}); see --list")


def history(project: Project, query: HistoryQuery, out: IO[str], fmt: str = "text") -> int:
    check_status(query.status)
    since = parse_since(query.since, clock.now()) if query.since else None
    limit = query.limit or DEFAULT_LIMIT
    from runner.state.ledger import Ledger

    ledger = Ledger(project.settings.state_url)
    try:
        runs = ledger.history(query.job, limit, query.status, since)
        if query.job and not runs and query.job not in job_names(project) and not ledger.history(query.job, 1):
            raise unknown_job(project, query.job)
        attempts = ledger.last_attempts([r["run_id"] for r in runs])
        origins = ledger.origins_of([r["run_id"] for r in runs])
    finally:
        ledger.dispose()
    tasks: dict[str, list[Any]] = {}
    for a in attempts:
        tasks.setdefault(a.run_id, []).append(a)
    docs = [_doc(r, tasks.get(r["run_id"], []), origins.get(r["run_id"], {})) for r in runs]
    if fmt == "json":
        write_json(docs, out)
        return 0
    _text(docs, out, query, limit)
    undelivered(project, query.job, out)
    return 0


def _doc(run: dict[str, Any], attempts: list[Any], origin: dict[str, Any]) -> dict[str, Any]:
    """A run as JSON shows it (pinned: run_id, job, status, trigger, slot, started, ended)."""
    ended = run["ended_at"]
    failed = next((a for a in attempts if a.status == "failed"), None)
    error = run["error"]
    if failed is not None:
        error = f"{failed.task}: " + (f"{failed.errno} " if failed.errno is not None else "") + (failed.error or "")
    return {
        "run_id": run["run_id"], "job": run["job"], "status": run["status"], "trigger": run["trigger"],
        "slot": iso(run["slot"]), "started": iso(run["started_at"]), "ended": iso(ended),
        "run_date": run["run_date"], "host": run["host"], "pid": run["pid"],
        "seconds": round((ended - run["started_at"]).total_seconds(), 3) if ended else None,
        "attempts": run["attempts"], "rows": run["rows"],
        "error": REDACTOR.scrub(error) if error else None,
        "rerun_of": origin.get("rerun_of"), "rerun_as": origin.get("rerun_as", []),
        "tasks": [{"task": a.task, "status": a.status, "attempts": a.attempt, "rows": a.rows, "errno": a.errno,
                   "error": REDACTOR.scrub(a.error) if a.error else None} for a in attempts],
    }


_WHEN = "%Y-%m-%d %H:%M"


def _text(docs: list[dict[str, Any]], out: IO[str], query: HistoryQuery, limit: int) -> None:
    rows = [("RUN", "WHEN (UTC)", "JOB", "TRIGGER", "STATUS", "SECS", "NOTE")]
    for d in docs:
        when = datetime.fromisoformat((d["slot"] or d["started"]).replace("Z", "+00:00"))
        secs = d["seconds"]
        rows.append((d["run_id"][:8], when.strftime(_WHEN), d["job"], d["trigger"], d["status"],
                     "-" if secs is None else (f"{secs:.1f}" if secs < 1000 else f"{secs:.0f}"), _note(d, when)))
    write_table(rows, out, flexible=(6, 2))
    if not docs:
        out.write("no runs recorded yet\n" if query == HistoryQuery(query.job) else "no runs match\n")
    elif len(docs) == limit:
        out.write(f"(the latest {limit}; --limit N or --since shows more; --format json shows every field)\n")


def _note(d: dict[str, Any], when: datetime) -> str:
    """The short story of a run: what it re-ran or was re-run as, its date when not its slot's, how late
    it started, and why it did not succeed."""
    parts = []
    if d["rerun_of"]:
        parts.append(f"rerun of {d['rerun_of'][:8]}")
    if d["rerun_as"]:
        parts.append("re-run as " + ", ".join(r[:8] for r in d["rerun_as"]))
    if d["run_date"] != when.date().isoformat():
        parts.append(f"date {d['run_date']}")
    if d["slot"] and d["status"] not in ("missed", "paused"):
        started = datetime.fromisoformat(d["started"].replace("Z", "+00:00"))
        late = (started - when).total_seconds()
        if late >= 300:
            parts.append(f"started {started.strftime(_WHEN)}")
    if d["status"] != "success" and d["error"]:
        parts.append(one_line(d["error"]))
    elif d["status"] == "success":
        parts.append(f"{d['rows']} rows")
    return "; ".join(parts)


def undelivered(project: Project, job: str | None, out: IO[str]) -> None:
    """Alerts still in the outbox, under the history table."""
    from runner.state.ledger import Ledger
    from runner.state.outbox import Outbox

    ledger = Ledger(project.settings.state_url)
    try:
        pending = [a for a in Outbox(ledger).undelivered(200) if job is None or a.job == job]
    finally:
        ledger.dispose()
    if not pending:
        return
    out.write(f"\n{len(pending)} alert(s) not sent yet (the next runner command, or the daemon's next look, sends "
              f"them):\n")
    for a in pending[:10]:
        run = f" run {a.run_id[:8]}" if a.run_id else ""
        error = f": {' '.join((a.error or '').split())[:120]}" if a.error else ""
        out.write(f"  {a.event} of {a.job}{run} to {a.target}, {a.attempts} attempt(s){error}\n")
    if len(pending) > 10:
        out.write(f"  ... and {len(pending) - 10} more\n")
