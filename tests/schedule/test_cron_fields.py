"""Cron fields read as cron reads them (cronie's crontab(5) and its entry.c, the Vixie cron rules).

Every expected value here is written out by hand from those rules and a calendar (June 2024 begins on
a Saturday, May 2024 on a Wednesday); no other cron library is asked. Pure: no I/O, no clock.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from runner.cron import CronError, cron_reads_it, parse, problem

# (id, expression, field, the values cron sets for it)
FIELD_VALUES = [
    ("a-a in the minute is that minute", "5-5 * * * *", "minutes", {5}),
    ("a-a in the hour is that hour", "0 3-3 * * *", "hours", {3}),
    ("a-a in the month is that month", "0 2 * 3-3 *", "months", {3}),
    ("a-a in the day of month", "0 0 9-9 * *", "doms", {9}),
    ("a-a in the day of week", "0 0 * * 2-2", "dows", {2}),
    ("star step", "*/15 * * * *", "minutes", {0, 15, 30, 45}),
    ("a step counts from the start of the range", "10-50/20 * * * *", "minutes", {10, 30, 50}),
    ("a step that does not divide 60", "*/7 * * * *", "minutes", {0, 7, 14, 21, 28, 35, 42, 49, 56}),
    ("a step larger than the range: its first value", "*/90 * * * *", "minutes", {0}),
    ("hours step", "0 */23 * * *", "hours", {0, 23}),
    ("lists of ranges", "0-4,8-12 * * * *", "minutes", {0, 1, 2, 3, 4, 8, 9, 10, 11, 12}),
    ("leading zeros", "07 08 * * *", "minutes", {7}),
    ("day of month step from 1", "0 0 */2 * *", "doms", set(range(1, 32, 2))),
    ("month names, any case", "0 0 * jan-MAR,Dec *", "months", {1, 2, 3, 12}),
    ("month names mixed with numbers", "0 0 * feb-4 *", "months", {2, 3, 4}),
    ("7 is Sunday", "0 0 * * 7", "dows", {0}),
    ("0 and 7 are one day", "0 0 * * 0,7", "dows", {0}),
    ("1-7 is Monday to Sunday", "0 0 * * 1-7", "dows", {0, 1, 2, 3, 4, 5, 6}),
    ("day names", "0 0 * * mon,WED,Fri", "dows", {1, 3, 5}),
    ("a name range", "0 0 * * mon-fri", "dows", {1, 2, 3, 4, 5}),
    ("a range may end on Sunday written 0", "0 0 * * 5-0", "dows", {5, 6, 0}),
    ("fri-sun: Friday to Sunday", "0 0 * * fri-sun", "dows", {5, 6, 0}),
    ("day of week star steps over 0-7", "0 0 * * */2", "dows", {0, 2, 4, 6}),
    ("*/3 in the day of week", "0 0 * * */3", "dows", {0, 3, 6}),
    ("*/7 in the day of week: Sunday (0 and 7)", "0 0 * * */7", "dows", {0}),
    ("seconds field first", "*/20 0 * * * *", "seconds", {0, 20, 40}),
    ("five fields run at second 0", "* * * * *", "seconds", {0}),
]


@pytest.mark.parametrize("expr,name,expected", [r[1:] for r in FIELD_VALUES], ids=[r[0] for r in FIELD_VALUES])
def test_field_values(expr: str, name: str, expected: set[int]) -> None:
    assert set(getattr(parse(expr), name)) == expected


# (id, expression, (year, month), the days of that month it runs on)
JUNE, MAY = (2024, 6), (2024, 5)
DAYS = [
    ("both day fields restricted: either matches", "30 4 1,15 * 5", JUNE, [1, 7, 14, 15, 21, 28]),
    ("day of month starts with *: both must match (odd Saturdays)", "0 16 */2 * sat", JUNE, [1, 15, 29]),
    ("day of week *: the day of month alone", "0 0 13 * *", JUNE, [13]),
    ("day of month *: the day of week alone", "0 0 * * sat", JUNE, [1, 8, 15, 22, 29]),
    ("1-31 is no star: OR with Friday is every day", "0 0 1-31 * 5", JUNE, list(range(1, 31))),
    ("*,15 starts with *: AND", "0 0 *,15 * 1", JUNE, [3, 10, 17, 24]),
    ("*,1 in the day of week starts with *: AND", "0 0 15 * *,1", JUNE, [15]),
    ("day of month OR day of week", "0 0 1 * mon", JUNE, [1, 3, 10, 17, 24]),
    ("7 is Sunday in a match", "0 0 * * 7", JUNE, [2, 9, 16, 23, 30]),
    ("a day that the month lacks", "0 0 31 * *", JUNE, []),
    ("a stepped range of days", "0 0 2-30/7 * *", JUNE, [2, 9, 16, 23, 30]),
    ("@weekly is Sundays", "@weekly", JUNE, [2, 9, 16, 23, 30]),
    ("@monthly is the 1st", "@monthly", JUNE, [1]),
    ("L: the last day of June", "0 0 L * *", JUNE, [30]),
    ("L: the last day of a leap February", "0 0 L * *", (2024, 2), [29]),
    ("L: the last day of February", "0 0 L * *", (2023, 2), [28]),
    ("L in a list", "0 0 1,L * *", JUNE, [1, 30]),
    ("L beside a weekday: either (cron's rule)", "0 0 L * 1", JUNE, [3, 10, 17, 24, 30]),
    ("#: the second Friday", "0 0 * * fri#2", JUNE, [14]),
    ("# with the day of month: either, nothing dropped", "0 0 1-10 * 5#2", JUNE, list(range(1, 11)) + [14]),
    ("a fifth Thursday where there is none: the 11th only", "0 0 11 * 4#5", JUNE, [11]),
    ("a fifth Thursday where there is one", "0 0 11 * 4#5", MAY, [11, 30]),
    ("two # in a list", "0 0 * * mon#1,fri#3", JUNE, [3, 21]),
    ("5L: the last Friday", "0 0 * * 5L", JUNE, [28]),
    ("7L and 0L: the last Sunday", "0 0 * * 7L", JUNE, [30]),
    ("# with a day of month starting with *: both", "0 0 */2 * sat#3", JUNE, [15]),
    ("a month outside the month field: no days", "0 0 * 3-3 *", JUNE, []),
]


@pytest.mark.parametrize("expr,month,expected", [r[1:] for r in DAYS], ids=[r[0] for r in DAYS])
def test_days_of_a_month(expr: str, month: tuple[int, int], expected: list[int]) -> None:
    assert list(parse(expr).days(*month)) == expected


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# (id, expression, naive wall time, the next matching wall times after it)
NEXT = [
    ("March only: one month a year", "0 2 * 3-3 *", "2024-03-30 12:00",
     ["2024-03-31 02:00", "2025-03-01 02:00", "2025-03-02 02:00"]),
    ("03:00 every day, not every hour", "0 3-3 * * *", "2024-06-01 03:00", ["2024-06-02 03:00", "2024-06-03 03:00"]),
    ("minute 5 of each hour, not each minute", "5-5 * * * *", "2024-06-01 10:05",
     ["2024-06-01 11:05", "2024-06-01 12:05"]),
    ("odd Saturdays at 16:00", "0 16 */2 * sat", "2024-06-01 16:00",
     ["2024-06-15 16:00", "2024-06-29 16:00", "2024-07-13 16:00"]),
    ("29 February: leap years", "0 0 29 2 *", "2024-03-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00"]),
    ("weekdays at noon", "0 12 * * 1-5", "2024-06-07 12:00", ["2024-06-10 12:00", "2024-06-11 12:00"]),
    ("@yearly", "@yearly", "2024-06-01 00:00", ["2025-01-01 00:00", "2026-01-01 00:00"]),
    ("@hourly", "@hourly", "2024-06-01 23:30", ["2024-06-02 00:00", "2024-06-02 01:00"]),
    ("between whole minutes", "*/5 * * * *", "2024-06-01 10:04:59.5", ["2024-06-01 10:05", "2024-06-01 10:10"]),
    ("seconds: into the next day", "*/30 59 23 * * *", "2024-06-30 23:59:30",
     ["2024-07-01 23:59:00", "2024-07-01 23:59:30"]),
    ("the last Friday over a year end", "0 9 * * 5L", "2024-12-27 09:00", ["2025-01-31 09:00", "2025-02-28 09:00"]),
]


@pytest.mark.parametrize("expr,start,expected", [r[1:] for r in NEXT], ids=[r[0] for r in NEXT])
def test_next_and_previous_wall_times(expr: str, start: str, expected: list[str]) -> None:
    spec, got, t = parse(expr), [], at(start)
    for _ in expected:
        t = spec.next_after(t)
        got.append(t)
    assert got == [at(e) for e in expected]
    back = [spec.prev_before(x) for x in got[1:]]
    assert back == got[:-1]


# (expression, words the refusal must contain: the field and what to do)
REFUSED = [
    ("5/15 * * * *", ["minute field", "step without a range", "5-59/15"]),
    ("0 0 * * 8", ["day of week field", "out of range"]),
    ("60 * * * *", ["minute field", "out of range"]),
    ("0 24 * * *", ["hour field"]),
    ("0 0 0 * *", ["day of month field"]),
    ("0 0 * 13 *", ["month field"]),
    ("22-2 * * * *", ["minute field", "runs backwards"]),
    ("0 0 * * 5-0/2", ["day of week field", "runs backwards"]),
    ("*/0 * * * *", ["minute field", "step"]),
    ("0 0 15W * *", ["day of month field", "W (the nearest weekday)"]),
    ("0 0 LW * *", ["day of month field"]),
    ("0 0 ? * *", ["day of month field", "write * instead"]),
    ("~ * * * *", ["minute field", "random"]),
    ("0 L * * *", ["hour field", "L"]),
    ("0 0 * * L", ["day of week field", "5L"]),
    ("0 0 * * 5#6", ["day of week field", "1 to 5"]),
    ("0 0 * * 1-5#2", ["day of week field"]),
    ("0 0 * * monday", ["day of week field", "sun-sat"]),
    ("0 0 * january *", ["month field", "jan-dec"]),
    ("0 0 1,,2 * *", ["day of month field", "empty"]),
    ("0 0 30 2 *", ["never matches"]),
    ("0 0 31 4,6,9,11 *", ["never matches"]),
    ("* * * *", ["4 field(s)", "five fields"]),
    ("0 0 0 1 1 * 2030", ["seven fields", "year"]),
    ("0 0 1 1 * 2030", ["six fields, read as second minute hour", "day of week field"]),
    ("@reboot", ["@reboot has no time"]),
    ("@fortnightly", ["unknown nickname", "@daily"]),
    ("", ["empty schedule"]),
]


@pytest.mark.parametrize("expr,words", REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_what_cron_would_not_read_is_refused_naming_the_field(expr: str, words: list[str]) -> None:
    with pytest.raises(CronError) as caught:
        parse(expr)
    for word in words:
        assert word in str(caught.value)
    assert problem(expr) == str(caught.value)


@pytest.mark.parametrize("expr,lacking", [
    ("30 2 * * *", None), ("0 16 */2 * sat", None), ("@daily", None), ("0 0 * * fri-sun", None),
    ("0 9-17/2 1,15 jan-jun 1-5", None),
    ("*/10 * * * * *", "a seconds field"),
    ("0 0 L * *", "L (the last day of the month)"),
    ("0 0 * * 5#2", "# or L in the day of week"),
    ("0 0 * * 5L", "# or L in the day of week"),
])
def test_which_schedules_cron_reads_the_same(expr: str, lacking: str | None) -> None:
    assert cron_reads_it(expr) == lacking


def random_expression(rnd: random.Random) -> str:
    def part(low: int, high: int, names: list[str] | None = None) -> str:
        kind = rnd.choice("*nrsRl")
        a, b = sorted(rnd.sample(range(low, high + 1), 2))
        if kind == "*":
            return "*"
        if kind == "n":
            return names[a - low] if names and rnd.random() < 0.3 else str(a)
        if kind == "r":
            return f"{a}-{b}"
        if kind == "s":
            return f"*/{rnd.randint(1, high - low)}"
        if kind == "R":
            return f"{a}-{b}/{rnd.randint(1, 5)}"
        return ",".join(str(x) for x in sorted(rnd.sample(range(low, high + 1), 3)))

    days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    while True:
        dow = part(0, 7, days + ["sun"]) if rnd.random() < 0.8 else f"{rnd.randint(0, 6)}#{rnd.randint(1, 5)}"
        dom = part(1, 31) if rnd.random() < 0.9 else "L"
        expr = f"{part(0, 59)} {part(0, 23)} {dom} {part(1, 12)} {dow}"
        if problem(expr) is None:
            return expr


@pytest.mark.parametrize("seed", range(4))
def test_searches_agree_with_matching_every_minute(seed: int) -> None:
    """The next and previous matching wall times (which skip whole months, days and hours) are the
    ones a minute-by-minute scan of `matches` finds, for random expressions of every field kind."""
    rnd = random.Random(seed)
    for _ in range(20):
        spec = parse(random_expression(rnd))
        start = datetime(2024, rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59))
        end = start + timedelta(days=3)
        scan, t = [], start + timedelta(minutes=1)
        while t < end:
            if spec.matches(t):
                scan.append(t)
            t += timedelta(minutes=1)
        found, t = [], start
        while (t := spec.next_after(t)) < end:  # type: ignore[operator]
            found.append(t)
        assert found == scan, spec.text
        if found:
            assert spec.prev_before(found[0]) is None or spec.prev_before(found[0]) <= start, spec.text
            assert [spec.prev_before(x) for x in found[1:]] == found[:-1], spec.text
