"""Schedule math from tables: slots in a timezone, DST gap and overlap, latest slot, catch-up plans.

Pure functions: no database, no clock, no sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runner.cron import Schedule, cron_spec, is_valid
from runner.schedule.slots import FailedReruns, Missed, SlotPlan, grace_seconds, plan_slots, rerun_allowed, rerun_failed

UTC = timezone.utc


def z(text: str) -> datetime:
    """'2024-03-31 01:00' or '2024-03-31 01:00:05' as a UTC instant."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def following(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(t)
    return out


# (expr, timezone, start (UTC), the next slots (UTC))
NEXT_SLOTS = [
    ("nightly, UTC", "30 2 * * *", "UTC", "2024-06-01 00:00",
     ["2024-06-01 02:30", "2024-06-02 02:30", "2024-06-03 02:30"]),
    ("nightly, Shanghai (no DST)", "30 2 * * *", "Asia/Shanghai", "2024-06-01 00:00",
     ["2024-06-01 18:30", "2024-06-02 18:30", "2024-06-03 18:30"]),
    ("nightly, Berlin: 02:30 does not exist on Mar 31 -> runs once at the jump (03:00 CEST)",
     "30 2 * * *", "Europe/Berlin", "2024-03-29 12:00",
     ["2024-03-30 01:30", "2024-03-31 01:00", "2024-04-01 00:30"]),
    ("nightly, Berlin: 02:30 happens twice on Oct 27 -> runs once, at the first",
     "30 2 * * *", "Europe/Berlin", "2024-10-25 12:00",
     ["2024-10-26 00:30", "2024-10-27 00:30", "2024-10-28 01:30"]),
    ("02:00 exactly at the start of the gap runs at the jump", "0 2 * * *", "Europe/Berlin", "2024-03-30 12:00",
     ["2024-03-31 01:00", "2024-04-01 00:00"]),
    ("03:00, the first wall time after the gap, runs once", "0 3 * * *", "Europe/Berlin", "2024-03-30 12:00",
     ["2024-03-31 01:00", "2024-04-01 01:00"]),
    ("two slots in the gap run once, at the jump", "0,30 2 * * *", "Europe/Berlin", "2024-03-30 12:00",
     ["2024-03-31 01:00", "2024-04-01 00:00", "2024-04-01 00:30"]),
    ("New York gap: 02:30 EST -> 03:00 EDT", "30 2 * * *", "America/New_York", "2024-03-09 12:00",
     ["2024-03-10 07:00", "2024-03-11 06:30"]),
    ("New York overlap: 01:30 happens twice on Nov 3 -> once", "30 1 * * *", "America/New_York", "2024-11-02 12:00",
     ["2024-11-03 05:30", "2024-11-04 06:30"]),
    ("hourly keeps real-time spacing over the gap (23 slots that day)", "0 * * * *", "Europe/Berlin",
     "2024-03-30 23:30", ["2024-03-31 00:00", "2024-03-31 01:00", "2024-03-31 02:00"]),
    ("hourly runs in both passes of the repeated hour", "0 * * * *", "Europe/Berlin", "2024-10-26 23:30",
     ["2024-10-27 00:00", "2024-10-27 01:00", "2024-10-27 02:00"]),
    ("every 30 minutes through the repeated hour", "*/30 * * * *", "Europe/Berlin", "2024-10-26 23:45",
     ["2024-10-27 00:00", "2024-10-27 00:30", "2024-10-27 01:00", "2024-10-27 01:30", "2024-10-27 02:00"]),
    ("minute 5 of every hour: nothing is invented at the jump", "5 * * * *", "Europe/Berlin", "2024-03-31 00:30",
     ["2024-03-31 01:05", "2024-03-31 02:05"]),
    ("Lord Howe moves by 30 minutes: 02:15 does not exist on Oct 6", "15 2 * * *", "Australia/Lord_Howe",
     "2024-10-04 12:00", ["2024-10-04 15:45", "2024-10-05 15:30", "2024-10-06 15:15"]),
    ("weekday 0 is Sunday, as in cron", "0 0 * * 0", "UTC", "2024-06-01 12:00",  # a Saturday
     ["2024-06-02 00:00", "2024-06-09 00:00"]),
    ("1-5 is Monday to Friday", "0 0 * * 1-5", "UTC", "2024-05-31 12:00",  # a Friday
     ["2024-06-03 00:00", "2024-06-04 00:00"]),
    ("day of month OR day of week, as in cron", "0 0 13 * 5", "UTC", "2024-06-01 12:00",
     ["2024-06-07 00:00", "2024-06-13 00:00", "2024-06-14 00:00"]),
    ("six fields: leading seconds", "*/20 * * * * *", "UTC", "2024-06-01 12:00:50",
     ["2024-06-01 12:01:00", "2024-06-01 12:01:20", "2024-06-01 12:01:40"]),
    ("seconds through the Berlin gap", "*/30 * * * * *", "Europe/Berlin", "2024-03-31 00:59:00",
     ["2024-03-31 00:59:30", "2024-03-31 01:00:00", "2024-03-31 01:00:30"]),
    ("seconds through the Berlin overlap", "0 */30 * * * *", "Europe/Berlin", "2024-10-27 00:45:00",
     ["2024-10-27 01:00:00", "2024-10-27 01:30:00", "2024-10-27 02:00:00"]),
    ("yearly, crossing two DST changes", "0 0 1 1 *", "Europe/Berlin", "2024-02-01 00:00",
     ["2024-12-31 23:00", "2025-12-31 23:00"]),
]


@pytest.mark.parametrize("expr,tz,start,expected", [r[1:] for r in NEXT_SLOTS], ids=[r[0] for r in NEXT_SLOTS])
def test_next_slots(expr: str, tz: str, start: str, expected: list[str]) -> None:
    assert following(Schedule(expr, tz), z(start), len(expected)) == [z(e) for e in expected]


# (expr, timezone, now (UTC), the latest slot at or before now)
LATEST = [
    ("exactly at a slot", "30 2 * * *", "UTC", "2024-06-01 02:30", "2024-06-01 02:30"),
    ("just before it: yesterday's", "30 2 * * *", "UTC", "2024-06-01 02:29:59", "2024-05-31 02:30"),
    ("after the Berlin jump", "30 2 * * *", "Europe/Berlin", "2024-03-31 01:00:01", "2024-03-31 01:00"),
    ("inside the second pass of the repeated hour", "30 2 * * *", "Europe/Berlin", "2024-10-27 01:45",
     "2024-10-27 00:30"),
    ("hourly, second pass", "0 * * * *", "Europe/Berlin", "2024-10-27 01:10", "2024-10-27 01:00"),
    ("seconds field", "*/5 * * * * *", "UTC", "2024-06-01 12:00:04", "2024-06-01 12:00:00"),
    ("Sunday job on a Tuesday", "0 6 * * 0", "Asia/Shanghai", "2024-06-04 00:00", "2024-06-01 22:00"),
]


@pytest.mark.parametrize("expr,tz,now,expected", [r[1:] for r in LATEST], ids=[r[0] for r in LATEST])
def test_latest_slot_at_or_before(expr: str, tz: str, now: str, expected: str) -> None:
    assert Schedule(expr, tz).latest_at_or_before(z(now)) == z(expected)


@pytest.mark.parametrize("expr,tz,start,end", [
    ("*/30 * * * *", "Europe/Berlin", "2024-10-26 20:00", "2024-10-27 06:00"),
    ("30 2 * * *", "Europe/Berlin", "2024-03-25 00:00", "2024-04-05 00:00"),
    ("*/7 * * * * *", "America/New_York", "2024-11-03 04:50", "2024-11-03 06:10"),
    ("15 2 * * *", "Australia/Lord_Howe", "2024-10-01 00:00", "2024-10-10 00:00"),
])
def test_walking_back_finds_the_slots_walking_forward_found(expr: str, tz: str, start: str, end: str) -> None:
    s = Schedule(expr, tz)
    forward, t = [], z(start)
    while (t := s.next_after(t)) <= z(end):
        forward.append(t)
    back, more = s.recent(z(start), z(end), 100000)
    assert not more and back[::-1] == forward


@pytest.mark.parametrize("expr,valid", [
    ("30 2 * * *", True), ("*/5 * * * * *", True), ("0 0 * * 0", True), ("0 0 L * *", True),
    ("61 2 * * *", False), ("* * * *", False), ("* * * * * * *", False), ("every night", False),
    ("0 0 31 2 *", False),  # never matches
])
def test_valid_expressions(expr: str, valid: bool) -> None:
    assert is_valid(expr) is valid


EVERY_MINUTE = Schedule("* * * * *", "UTC")


def listed(*slots: str) -> Missed:
    return Missed(z(slots[0]), z(slots[-1]), len(slots), tuple(z(s) for s in slots))


NIGHTLY_BERLIN = Schedule("30 2 * * *", "Europe/Berlin")

# (id, schedule, now, last recorded slot, grace seconds, expected plan)
PLANS = [
    ("on time: the slot that just came runs", EVERY_MINUTE, "2024-06-01 12:00:00.2", "2024-06-01 11:59", 60,
     SlotPlan(run=z("2024-06-01 12:00"))),
    ("already recorded: nothing to do", EVERY_MINUTE, "2024-06-01 12:00:30", "2024-06-01 12:00", 60, SlotPlan()),
    ("outage: the latest runs once, the others are missed", EVERY_MINUTE, "2024-06-01 12:03:10", "2024-06-01 11:59",
     3600, SlotPlan(run=z("2024-06-01 12:03"), missed=listed("2024-06-01 12:00", "2024-06-01 12:01",
                                                             "2024-06-01 12:02"))),
    ("latest too old for the grace: everything missed", EVERY_MINUTE, "2024-06-01 12:03:10", "2024-06-01 12:01",
     5, SlotPlan(missed=listed("2024-06-01 12:02", "2024-06-01 12:03"))),
    ("no history: only the latest slot, if within the grace", EVERY_MINUTE, "2024-06-01 12:03:10", None, 60,
     SlotPlan(run=z("2024-06-01 12:03"))),
    ("no history, latest outside the grace: nothing", NIGHTLY_BERLIN, "2024-06-01 12:00", None, 3600, SlotPlan()),
    ("server down at 02:30: the nightly still runs at 08:00", NIGHTLY_BERLIN, "2024-06-01 06:00", "2024-05-31 00:30",
     86400, SlotPlan(run=z("2024-06-01 00:30"))),
    ("down for three nights, 24h window: last night runs, two missed", NIGHTLY_BERLIN, "2024-06-03 06:00",
     "2024-05-31 00:30", 86400,
     SlotPlan(run=z("2024-06-03 00:30"), missed=listed("2024-06-01 00:30", "2024-06-02 00:30"))),
    ("catch-up window over DST: the jump slot counts once", NIGHTLY_BERLIN, "2024-03-31 05:00", "2024-03-30 01:30",
     86400, SlotPlan(run=z("2024-03-31 01:00"))),
    ("fall-back night: the second 02:30 is no slot", NIGHTLY_BERLIN, "2024-10-27 01:31", "2024-10-27 00:30",
     86400, SlotPlan()),
    ("more missed than are listed: counted, with the first and the last", EVERY_MINUTE, "2024-06-01 12:10:00",
     "2024-06-01 12:00", 30, SlotPlan(run=z("2024-06-01 12:10"),
                                      missed=Missed(z("2024-06-01 12:01"), z("2024-06-01 12:09"), 9))),
    ("a day's outage of a per-minute job", EVERY_MINUTE, "2024-06-02 12:00:20", "2024-06-01 12:00", 3600,
     SlotPlan(run=z("2024-06-02 12:00"), missed=Missed(z("2024-06-01 12:01"), z("2024-06-02 11:59"), 1439))),
    ("a nightly job down over the Berlin jump", NIGHTLY_BERLIN, "2024-04-02 06:00", "2024-03-27 01:30", 3600,
     SlotPlan(missed=Missed(z("2024-03-28 01:30"), z("2024-04-02 00:30"), 6))),
]


@pytest.mark.parametrize("schedule,now,last,grace,expected", [r[1:] for r in PLANS], ids=[r[0] for r in PLANS])
def test_plan_slots(schedule: Schedule, now: str, last: str | None, grace: float, expected: SlotPlan) -> None:
    now_t = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert plan_slots(schedule, now_t, z(last) if last else None, grace, listed=3) == expected


@pytest.mark.parametrize("allowed,slot,age,grace,expected", [
    (True, True, 5, 60, True),
    (False, True, 5, 60, False),
    (True, False, 5, 60, False),  # a manual run has no slot to run again
    (True, True, 61, 60, False),
])
def test_rerun_abandoned(allowed: bool, slot: bool, age: float, grace: float, expected: bool) -> None:
    now = z("2024-06-01 12:00")
    assert rerun_allowed(allowed, now - timedelta(seconds=age) if slot else None, now, grace) is expected


DUE = FailedReruns()  # --due: once per call, as long as the slot is within the grace
DAEMON = FailedReruns(after=300, limit=3)
FAILED_RERUNS = [  # id, policy, status of the run holding the latest claim, slot age, ended age, failures, grace
    ("failed", DUE, "failed", 600, 0, 1, 86400, True),
    ("interrupted", DUE, "interrupted", 600, 0, 1, 86400, True),
    ("failed-many-times", DUE, "failed", 600, 0, 40, 86400, True),
    ("succeeded", DUE, "success", 600, 0, 0, 86400, False),
    ("still-running", DUE, "running", 600, 0, 0, 86400, False),
    ("abandoned: rerun_abandoned decides", DUE, "abandoned", 600, 0, 0, 86400, False),
    ("missed", DUE, "missed", 600, 0, 0, 86400, False),
    ("no-claim-yet", DUE, None, 600, 0, 0, 86400, False),
    ("past-the-grace", DUE, "failed", 86401, 0, 1, 86400, False),
    ("daemon-too-soon", DAEMON, "failed", 600, 299, 1, 86400, False),
    ("daemon-after-the-pause", DAEMON, "failed", 600, 300, 1, 86400, True),
    ("daemon-third-failure-left-alone", DAEMON, "failed", 3600, 600, 3, 86400, False),
    ("daemon-second-failure", DAEMON, "interrupted", 3600, 600, 2, 86400, True),
    ("daemon-past-the-grace", DAEMON, "failed", 86401, 600, 1, 86400, False),
]


@pytest.mark.parametrize("policy,status,slot_age,ended_age,failures,grace,expected", [r[1:] for r in FAILED_RERUNS],
                         ids=[r[0] for r in FAILED_RERUNS])
def test_rerun_failed(policy: FailedReruns, status: str | None, slot_age: float, ended_age: float, failures: int,
                      grace: float, expected: bool) -> None:
    now = z("2024-06-01 12:00")
    assert rerun_failed(policy, status, now - timedelta(seconds=slot_age), now - timedelta(seconds=ended_age),
                        failures, now, grace) is expected


@pytest.mark.parametrize("catch_up,window,misfire,expected", [
    ("latest", 86400.0, 3600.0, 86400.0),
    ("none", 86400.0, 3600.0, 3600.0),
    ("none", 86400.0, 0.0, 0.0),
])
def test_grace(catch_up: str, window: float, misfire: float, expected: float) -> None:
    assert grace_seconds(catch_up, window, misfire) == expected


def test_local_date_of_a_slot_is_the_run_date() -> None:
    assert Schedule("30 2 * * *", "Asia/Shanghai").local_date(z("2024-05-31 18:30")) == "2024-06-01"


def brute_force_slots(expr: str, tz_name: str, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The slots by the rules in plain words, step by step: a wall time that matches is a slot in
    the first pass (both passes for an every-hour schedule); wall times skipped by a jump forward run at
    the jump (not at all for an every-hour schedule)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    spec = cron_spec(expr)  # the fields' reading is pinned by tests/schedule/test_cron_fields.py
    every_hour = Schedule(expr, tz_name).every_hour
    out, t, prev_wall = [], start, None
    while t < end:
        local = t.astimezone(tz)
        wall = local.replace(tzinfo=None, fold=0)
        slot = spec.matches(wall) and (every_hour or local.fold == 0)
        if prev_wall is not None and wall - prev_wall > step and not every_hour:
            skipped = prev_wall + step
            while skipped < wall:
                slot = slot or spec.matches(skipped)
                skipped += step
        if slot:
            out.append(t)
        prev_wall = wall
        t += step
    return out


@pytest.mark.parametrize("tz,day", [("Europe/Berlin", "2024-03-30"), ("Europe/Berlin", "2024-10-26"),
                                    ("America/New_York", "2024-03-09"), ("America/New_York", "2024-11-02"),
                                    ("Australia/Lord_Howe", "2024-10-05"), ("Australia/Lord_Howe", "2024-04-06")])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 * * * *", "*/15 * * * *", "0,30 2 * * *", "15 1-3 * * *",
                                  "45 1 * * 0", "*/20 2 * * *"])
def test_slots_agree_with_the_rules_step_by_step(expr: str, tz: str, day: str) -> None:
    start = z(f"{day} 12:00")  # the change of offset is within the next 30 hours
    end = start + timedelta(hours=30)
    expected = brute_force_slots(expr, tz, start, end, timedelta(minutes=5))  # every minute field is a multiple of 5
    schedule = Schedule(expr, tz)
    got, t = [], start - timedelta(microseconds=1)
    while (t := schedule.next_after(t)) < end:
        got.append(t)
    assert got == expected
    back, _ = schedule.recent(start - timedelta(microseconds=1), end - timedelta(microseconds=1), 10000)
    assert back[::-1] == expected


@pytest.mark.parametrize("tz,day", [("Europe/Berlin", "2024-03-30"), ("Europe/Berlin", "2024-10-26"),
                                    ("America/New_York", "2024-11-02"), ("Australia/Lord_Howe", "2024-10-05"),
                                    ("UTC", "2024-02-28")])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 * * * *", "*/15 * * * *", "0,30 2 * * *", "0 2,3 * * *",
                                  "15 1-3 * * *", "*/20 2 * * *", "*/30 * * * * *", "0 0 L * *", "* * * * *"])
def test_counting_slots_agrees_with_walking_them(expr: str, tz: str, day: str) -> None:
    """The count of a catch-up (arithmetic over days and stretches of constant offset) is the number of
    slots a walk finds, across a change of offset and from any starting point."""
    schedule = Schedule(expr, tz)
    start = z(f"{day} 12:00")
    walked, t = [], start
    while (t := schedule.next_after(t)) <= start + timedelta(hours=40):
        walked.append(t)
    for i in range(0, len(walked), max(1, len(walked) // 7)):
        for j in range(i, len(walked), max(1, len(walked) // 5)):
            assert schedule.count(walked[i], walked[j]) == j - i
            assert schedule.count(walked[i] - timedelta(microseconds=1), walked[j]) == j - i + 1
    assert schedule.count(start, start + timedelta(hours=40)) == len(walked)
