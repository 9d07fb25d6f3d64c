"""Which events a run raises, who is told, and when a slot is late: pure decisions from tables,
the clock passed in."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from runner.config.notify import default_label
from runner.cron import Schedule
from runner.model import NotifyTarget
from runner.notify.events import is_late, late_slot, routed, run_events


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("status, trigger, previous, events", [
    ("failed", "cron", None, ["failure"]),
    ("failed", "manual", "success", ["failure"]),
    ("interrupted", "daemon", "success", ["failure"]),  # SIGTERM of an unattended run: the slot did not succeed
    ("interrupted", "manual", None, []),  # Ctrl-C by the person at the terminal
    ("success", "cron", None, ["success"]),
    ("success", "cron", "success", ["success"]),
    ("success", "due", "failed", ["success", "recovery"]),
    ("success", "daemon", "interrupted", ["success", "recovery"]),
    ("success", "rerun", "abandoned", ["success", "recovery"]),
    ("missed", "daemon", None, []),
])
def test_run_events(status: str, trigger: str, previous: str | None, events: list[str]) -> None:
    assert run_events(status, trigger, previous) == events


def _target(*on: str) -> NotifyTarget:
    url = f"json://h/{'-'.join(on)}"
    return NotifyTarget(url, default_label(url), tuple(on))


@pytest.mark.parametrize("events, on, sent", [
    (["failure"], ("failure", "missed"), ["failure"]),
    (["failure"], ("success",), []),
    (["success"], ("failure", "recovery"), []),
    (["success", "recovery"], ("failure", "recovery"), ["recovery"]),
    (["success", "recovery"], ("success", "recovery"), ["recovery"]),  # one message, not two, for one run
    (["success", "recovery"], ("success",), ["success"]),
])
def test_routed(events: list[str], on: tuple[str, ...], sent: list[str]) -> None:
    assert [e for e, _ in routed(events, [_target(*on)])] == sent


DAILY = Schedule("30 2 * * *", "Asia/Shanghai")  # 18:30 UTC the day before


@pytest.mark.parametrize("now, late_after, slot", [
    ("2026-11-29T21:30:00", 3 * 3600, "2026-11-29T18:30:00"),  # exactly 3h after the slot
    ("2026-11-29T21:29:59", 3 * 3600, "2026-11-28T18:30:00"),  # a second short: the day before's slot
    ("2026-11-30T21:29:00", 3 * 3600, "2026-11-29T18:30:00"),
    ("2026-11-29T18:45:00", 600, "2026-11-29T18:30:00"),
    ("2026-11-29T18:39:00", 600, "2026-11-28T18:30:00"),
])
def test_late_slot_is_the_latest_slot_late_after_ago(now: str, late_after: float, slot: str) -> None:
    assert late_slot(DAILY, utc(now), late_after) == utc(slot)


def test_late_slot_of_a_job_before_its_first_slot() -> None:
    assert late_slot(Schedule("0 0 1 1 *", "UTC"), utc("2026-01-01T00:30:00"), 3600) == utc("2025-01-01T00:00:00")


SLOT = utc("2026-11-20T02:00:00")


@pytest.mark.parametrize("statuses, first, late", [
    (["success"], "2026-11-01T02:00:00", False),
    (["failed", "success"], "2026-11-01T02:00:00", False),  # failed, then re-run and succeeded
    (["failed"], "2026-11-01T02:00:00", True),
    (["running"], "2026-11-20T02:00:00", True),  # stuck
    (["abandoned"], "2026-11-01T02:00:00", True),
    (["interrupted", "failed"], "2026-11-01T02:00:00", True),
    (["missed"], "2026-11-01T02:00:00", False),  # told as missed already
    ([], "2026-11-01T02:00:00", True),  # nothing ran and nothing noticed: cron or the daemon is stuck
    ([], "2026-11-20T02:00:00", True),
    ([], "2026-11-21T02:00:00", False),  # before the job's first slot: a new job
    ([], None, False),  # a job that never ran has no slots yet
])
def test_is_late(statuses: list[str], first: str | None, late: bool) -> None:
    assert is_late(statuses, SLOT, utc(first) if first else None) is late


def test_a_missed_stretch_is_told_with_every_slot_it_stands_for() -> None:
    """A day of a per-minute job recorded as one stretch is one alert; its message counts 1,439 slots,
    not one, and says which (the stretch's reason names the first and the last)."""
    from runner.notify.messages import missed_message

    last = datetime(2024, 6, 2, 11, 59, tzinfo=timezone.utc)
    reason = "1439 slots missed, 2024-06-01 12:01:00Z to 2024-06-02 11:59:00Z (every slot of \"* * * * *\" UTC ...)"
    message = missed_message("minutely", [last], [reason], "host1", "UTC", total=1439)
    assert "MISSED 1439 slot(s)" in message.title and "slots missed: 1439" in message.body
    assert "2024-06-01 12:01:00Z to 2024-06-02 11:59:00Z" in message.body
