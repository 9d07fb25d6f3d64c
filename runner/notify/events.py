"""Which events a run's outcome raises, and when a slot is late. Pure: no I/O, `now` is passed in."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Sequence

from runner.model import NotifyTarget

if TYPE_CHECKING:  # runner.cron is imported only by jobs with a schedule
    from runner.cron import Schedule

UNSUCCESSFUL = ("failed", "interrupted", "abandoned")


def run_events(status: str, trigger: str, previous: str | None) -> list[str]:
    """Events of a finished run. `previous`: how the job's run before it ended. An interrupted run is
    a failure unless someone stopped it by hand (trigger manual)."""
    if status == "failed" or (status == "interrupted" and trigger != "manual"):
        return ["failure"]
    if status == "success":
        return ["success", "recovery"] if previous in UNSUCCESSFUL else ["success"]
    return []


def routed(events: Sequence[str], targets: Sequence[NotifyTarget]) -> list[tuple[str, NotifyTarget]]:
    """(event, target) pairs to send: a target that wants `recovery` is not also sent the `success`
    of the same run."""
    out = []
    for t in targets:
        wanted = [e for e in events if e in t.on]
        if "recovery" in wanted and "success" in wanted:
            wanted.remove("success")
        out.extend((e, t) for e in wanted)
    return out


def late_slot(schedule: "Schedule", now: datetime, late_after: float) -> datetime | None:
    """The slot to look at: the latest one whose time is at least `late_after` seconds ago."""
    return schedule.latest_at_or_before(now - timedelta(seconds=late_after))


def is_late(statuses: Sequence[str], slot: datetime, first: datetime | None) -> bool:
    """Whether a slot past its `late_after` is late, from the statuses of its runs: no success, and
    not only recorded as missed (that was told as `missed`). A slot with no run at all is late when
    the job's first recorded slot (`first`) is at or before it: nothing ran and nothing noticed, so
    cron or the daemon is stuck. Before a job's first slot (a new job) it has none to be late for."""
    if "success" in statuses:
        return False
    if statuses:
        return not all(s == "missed" for s in statuses)
    return first is not None and first <= slot
