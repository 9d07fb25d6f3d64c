"""Which slots of a job are due or missed, and when a failed or abandoned slot runs again. Pure: no
I/O, no clock (`now` is always passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from runner.cron import Schedule
from runner.model import FAILED

LISTED_MISSED = 10  # missed slots recorded one by one; a longer stretch is one record with its count

_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class Missed:
    """Slots that passed with no run: `count` slots of the schedule from `first` to `last`, each
    listed in `slots` when there are at most LISTED_MISSED of them."""

    first: datetime
    last: datetime
    count: int
    slots: tuple[datetime, ...] = ()  # oldest first


@dataclass(frozen=True)
class SlotPlan:
    """What to do about a job's slots now: run one (coalesced), record the others as missed."""

    run: datetime | None = None
    missed: Missed | None = None


def plan_slots(schedule: Schedule, now: datetime, last: datetime | None, grace: float,
               listed: int = LISTED_MISSED) -> SlotPlan:
    """Slots after `last` (the latest slot already recorded) up to `now`: the latest runs when it is
    at most `grace` seconds old, every other one is missed. A job with no recorded slot has missed
    nothing: only its latest slot is considered. The cost does not grow with the number of missed
    slots beyond `listed` (they are counted, not listed)."""
    latest = schedule.latest_at_or_before(now)
    if latest is None or (last is not None and latest <= last):
        return SlotPlan()
    run = latest if (now - latest).total_seconds() <= grace else None
    if last is None:
        return SlotPlan(run=run)
    newest_missed = latest if run is None else schedule.latest_at_or_before(latest - _EPSILON)
    if newest_missed is None or newest_missed <= last:
        return SlotPlan(run=run)
    count = schedule.count(last, newest_missed)
    first = schedule.next_after(last)
    slots: tuple[datetime, ...] = ()
    if count <= listed:
        found, t = [first], first
        while t < newest_missed:
            t = schedule.next_after(t)
            found.append(t)
        slots = tuple(found)
    return SlotPlan(run=run, missed=Missed(first, newest_missed, count, slots))


def rerun_allowed(allowed: bool, slot: datetime | None, now: datetime, grace: float) -> bool:
    """An abandoned run is run again when the job allows it and its slot is still within the grace."""
    return allowed and slot is not None and (now - slot).total_seconds() <= grace


@dataclass(frozen=True)
class FailedReruns:
    """How eagerly a latest slot whose run failed is run again. `--due` runs it once per call (cron's
    catch-up line spaces the calls); the daemon, which looks every 30 seconds, waits `after` seconds
    since the failed run ended and stops once the slot has failed `limit` times."""

    after: float = 0.0
    limit: int | None = None


DUE_FAILED_RERUNS = FailedReruns()
DAEMON_FAILED_RERUNS = FailedReruns(after=300.0, limit=3)


def rerun_failed(policy: FailedReruns, status: str | None, slot: datetime | None, ended: datetime | None,
                 failures: int, now: datetime, grace: float) -> bool:
    """Whether the latest slot runs again: the run holding its claim failed or was interrupted, the
    slot is within the grace, and the policy's pause and limit allow it. (An abandoned run is run
    again by `rerun_allowed`, when the job says so.)"""
    if status not in FAILED or slot is None or (now - slot).total_seconds() > grace:
        return False
    if ended is not None and (now - ended).total_seconds() < policy.after:
        return False
    return policy.limit is None or failures < policy.limit


def grace_seconds(catch_up: str, catch_up_window: float, misfire_grace: float) -> float:
    """How late a slot may still start: the job's catch-up window with `catch_up: latest`, the
    settings' misfire_grace with `catch_up: none`."""
    return catch_up_window if catch_up == "latest" else misfire_grace
