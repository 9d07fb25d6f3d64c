"""The text of an alert, from the run's record in the ledger: job, slot, host, status, the failing
task, its statement's file:line, error number and text, attempts, duration, and the command that
shows the whole record. Passwords and notify credentials are masked (logs.REDACTOR)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from runner import logs

MAX_BODY = 6000
KIND = {"failure": "failure", "missed": "warning", "late": "warning", "abandoned": "warning", "recovery": "success",
        "success": "success", "test": "info"}


@dataclass(frozen=True)
class Message:
    """An alert as a notification target receives it."""
    title: str
    body: str
    kind: str  # Apprise notify type: info | success | warning | failure


def slot_text(slot: datetime | None, tz: str) -> str:
    if slot is None:
        return "-"
    utc = slot.replace(tzinfo=timezone.utc) if slot.tzinfo is None else slot.astimezone(timezone.utc)
    local = utc.astimezone(ZoneInfo(tz))
    return f"{local:%Y-%m-%d %H:%M} {tz} ({utc:%Y-%m-%d %H:%M}Z)"


def _more(run_id: str | None, job: str) -> str:
    return f"python -m runner --history --run {run_id}" if run_id else f"python -m runner --history --job {job}"


def run_message(event: str, run: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]], tz: str) -> Message:
    """failure, recovery, success or abandoned: one run."""
    job, status, host = run["job"], run["status"], run["host"]
    failed = [a for a in attempts if a["status"] in ("failed",)] or [a for a in attempts if a["status"] == "running"]
    task = failed[-1] if failed else None
    secs = (run["ended_at"] - run["started_at"]).total_seconds() if run.get("ended_at") else None
    lines = [f"job: {job}", f"status: {status}", f"slot: {slot_text(run.get('slot'), tz)}",
             f"run date: {run['run_date']}", f"host: {host} (pid {run['pid']}, trigger {run['trigger']})"]
    head = f"{job} {event.upper()}" if event != "success" else f"{job} succeeded"
    if event == "recovery":
        head = f"{job} RECOVERED: succeeded after a failure"
    if task is not None and event in ("failure", "abandoned"):
        lines.append(f"task: {task['task']}")
        if task.get("statement"):
            lines.append(f"statement: {task['statement']}: {(task.get('first_line') or '')[:160]}")
        if task.get("errno") is not None or task.get("error"):
            code = f"{task['errno']} " if task.get("errno") is not None else ""
            lines.append(f"error: {code}{task.get('error') or ''}")
        lines.append(f"attempts: {task['attempt']} of task {task['task']}")
        head += f": task {task['task']}" + (f", error {task['errno']}" if task.get("errno") is not None else "")
    lines.append(f"attempts in the run: {run['attempts']}, rows: {run['rows']}")
    if secs is not None:
        lines.append(f"duration: {secs:.1f}s")
    lines.append(f"run: {run['run_id']}")
    lines.append(f"more: {_more(run['run_id'], job)}")
    if run.get("error") and event in ("failure", "abandoned"):
        lines += ["", run["error"]]
    return _message(f"runner: {head} on {host}", lines, event)


def missed_message(job: str, slots: Sequence[datetime | None], reasons: Sequence[str], host: str,
                   tz: str, total: int | None = None) -> Message:
    """Every missed slot of one job waiting to be told, in one message. `total`: how many slots they
    stand for, when some of them are stretches recorded as one row (their reason names first and last)."""
    total = len(slots) if total is None else total
    listed = [slot_text(s, tz) for s in slots if s is not None][:20]
    lines = [f"job: {job}", "status: missed", f"host: {host}", f"slots missed: {total}"]
    lines += [f"  {s}" for s in listed]
    if len(slots) > len(listed):
        lines.append(f"  ... and {len(slots) - len(listed)} more")
    lines += [f"why: {r}" for r in dict.fromkeys(reasons)][:3]
    lines.append(f"more: {_more(None, job)}")
    return _message(f"runner: {job} MISSED {total} slot(s)", lines, "missed")


def late_message(job: str, slot: datetime, late_after: float, runs: Sequence[Mapping[str, Any]], host: str,
                 tz: str) -> Message:
    """A slot with no successful run `late_after` past its time."""
    hours = f"{late_after / 3600:g}h" if late_after >= 3600 else f"{late_after / 60:g}m"
    lines = [f"job: {job}", "status: late", f"slot: {slot_text(slot, tz)}",
             f"no successful run {hours} after the slot's time (late_after)", f"noticed by: {host}"]
    if not runs:
        lines.append("runs of the slot: none (nothing started it: is cron or the daemon running?)")
    for r in runs:
        since = r["started_at"].strftime("%Y-%m-%d %H:%M:%S") + "Z"
        lines.append(f"run {r['run_id']}: {r['status']} (started {since} on {r['host']})")
    last = runs[-1]["run_id"] if runs else None
    lines.append(f"more: {_more(last, job)}")
    return _message(f"runner: {job} LATE: slot {slot_text(slot, tz)} has no successful run", lines, "late")


def test_message(host: str, target: str) -> Message:
    return _message("runner: test message", [f"A test message from runner on {host} to {target}.",
                                             "If you can read this, alerts will reach you here."], "test")


def _message(title: str, lines: Sequence[str], event: str) -> Message:
    body = logs.REDACTOR.scrub("\n".join(lines))
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY] + "\n..."
    return Message(logs.REDACTOR.scrub(title), body, KIND.get(event, "info"))
