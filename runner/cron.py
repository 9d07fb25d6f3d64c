"""Slots of a cron schedule in a timezone. Pure: no I/O, no clock.

A schedule is read as cron reads a crontab line (cronie's crontab(5), the Vixie cron rules shared by
the cron daemons of Linux distributions):

- Five fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-7
  or sun-sat (0 and 7 are Sunday). Names are the first three letters, in any case, also as the ends
  of a range (`mon-fri`, `jan-mar`).
- A field is a list (`1,15`) of `*`, a number, or a range `a-b` (from a up to b: `3-3` is 3); `*`
  and ranges may take a step (`*/15`, `8-18/2`: every step-th value from the start of the range).
  A step after a single number (`5/15`) is refused, as cron refuses it. A day-of-week range may end
  on Sunday written as 0 (`fri-sun`, `5-0`: Friday to Sunday).
- Day of month and day of week: when either field starts with `*` (`*`, `*/2`), a day must match
  both; otherwise a day matching either one is a day of the schedule. So `30 4 1,15 * 5` runs on
  the 1st, the 15th and every Friday; `0 16 */2 * sat` only on Saturdays that fall on an odd day.
- `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` stand for
  `0 0 1 1 *`, `0 0 1 * *`, `0 0 * * 0`, `0 0 * * *` and `0 * * * *`.

Extensions that cron does not have; a schedule using one runs from the daemon and `--due` only
(`--crontab` writes no cron line for it, which cron would refuse or read differently):
- a sixth field in front, for seconds 0-59 (`*/10 * * * * *`: every ten seconds);
- `L` in the day of month: the last day of the month (`0 0 L * *`; also in a list: `1,L`);
- `D#N` in the day of week: the N-th (1-5) such weekday of the month (`0 0 * * fri#2`: the second
  Friday), and `DL` the last one (`0 0 * * 5L`: the last Friday).
These name days like any other and combine by the rule above: `0 0 11 * 4#5` runs on the 11th and on
a month's fifth Thursday, `0 0 * * 5L` only on last Fridays. Anything else (`?`, `W`, cronie's random
`~`, `@reboot`, a seventh field) is refused with a message naming the field.

Daylight saving time, so that a nightly job neither runs twice nor skips a night:

- Gap (clocks jump forward): a wall time that does not exist runs once, at the moment of the jump
  (02:30 Europe/Berlin on the last Sunday of March runs at 03:00 CEST), as cron does. A schedule
  that fires every hour (hour field `*`) keeps its pattern in real time and has no slot in the
  missing hour.
- Overlap (clocks fall back): a wall time that occurs twice runs once, at its first occurrence.
  A schedule that fires every hour runs in both passes, so it keeps its spacing in real time.

(croniter and APScheduler's CronTrigger each read some of these fields otherwise: croniter took
`3-3` for `*` and dropped the day-of-month part next to `#`, CronTrigger takes day of week 0 for
Monday and always requires both day fields; so the fields are read here.)
"""

from __future__ import annotations

import bisect
import calendar
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

UTC = timezone.utc
_EPSILON = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)
_SEARCH_MONTHS = 400 * 12  # the Gregorian calendar repeats every 400 years

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
             "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_EXAMPLE = "five fields, minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\""


class CronError(ValueError):
    """A schedule cron would not read, or that never matches: the message names the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_SECONDS = _Field("second", 0, 59)
_FIELDS = (_Field("minute", 0, 59), _Field("hour", 0, 23), _Field("day of month", 1, 31),
           _Field("month", 1, 12, _MONTHS), _Field("day of week", 0, 7, _DAYS))


def _number(text: str, f: _Field, item: str) -> int:
    value = f.names.get(text.lower()) if f.names else None
    if value is not None:
        return value
    if not text.isdigit():
        up = text.upper()
        if "#" in text or "L" in up:
            raise CronError(f"{f.name} field: {item!r}: # and L are read only as a whole element: L in the day "
                            f"of month (the last day of the month), D#N and DL in the day of week (fri#2: the "
                            f"second Friday, 5L: the last Friday)")
        if "W" in up and f is _FIELDS[2]:
            raise CronError(f"{f.name} field: {item!r}: W (the nearest weekday) is not supported: list the days, "
                            f"or use the day-of-week field")
        names = f" or a name ({'-'.join((next(iter(f.names)), list(f.names)[-1]))})" if f.names else ""
        raise CronError(f"{f.name} field: {item!r} is not a number from {f.low} to {f.high}{names}")
    n = int(text)
    if not f.low <= n <= f.high:
        raise CronError(f"{f.name} field: {n} in {item!r} is out of range: {f.low} to {f.high}")
    return n


def _item(item: str, f: _Field) -> range:
    """One element of a list: `*`, `n`, `a-b`, `*/s` or `a-b/s`, as the values it stands for."""
    if "~" in item:
        raise CronError(f"{f.name} field: {item!r} is cronie's random pick (~), which cron makes anew whenever it "
                        f"reads the crontab: write the value you want")
    if "?" in item:
        raise CronError(f"{f.name} field: {item!r}: '?' is not cron syntax: write * instead")
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{f.name} field: the step in {item!r} must be a whole number of at least 1")
        step = int(step_text)
    if body == "*":
        return range(f.low, f.high + 1, step)
    low_text, dash, high_text = body.partition("-")
    if not dash:
        if slash:
            raise CronError(f"{f.name} field: {item!r} has a step without a range, which cron refuses: write "
                            f"{body}-{f.high}/{step} (from {body} on) or */{step}")
        n = _number(body, f, item)
        return range(n, n + 1)
    low, high = _number(low_text, f, item), _number(high_text, f, item)
    if low > high and f is _FIELDS[4] and high == 0 and not slash:
        high = 7  # fri-sun: cron lets a day-of-week range end on Sunday written as 0
    if low > high:
        raise CronError(f"{f.name} field: the range {item!r} runs backwards, and a range does not wrap around: "
                        f"write it from low to high, or as a list of two ranges")
    return range(low, high + 1, step)


def _values(text: str, f: _Field) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{f.name} field {text!r}: an empty element in the list")
        out.update(_item(item, f))
    return frozenset(out)


@dataclass(frozen=True)
class CronSpec:
    """A cron expression read field by field; `matches` and the searches work on naive wall times."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0-6, Sunday 0
    last_dom: bool = False  # L in the day of month
    nth_dows: frozenset[tuple[int, int]] = frozenset()  # (weekday, n): n-th in the month; n = -1: the last
    both_days: bool = False  # a field of the two starts with `*`: a day must match both
    extensions: tuple[str, ...] = ()  # what in it cron does not read
    _days: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def with_seconds(self) -> bool:
        return "a seconds field" in self.extensions

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of a month the schedule runs on (cached: the daemon asks about the same months)."""
        key = (year, month)
        days = self._days.get(key)
        if days is None:
            if len(self._days) > 256:
                self._days.clear()
            days = self._days[key] = self._compute_days(year, month) if month in self.months else ()
        return days

    def _compute_days(self, year: int, month: int) -> tuple[int, ...]:
        first_dow, length = calendar.monthrange(year, month)  # Monday 0
        first_dow = (first_dow + 1) % 7  # cron's: Sunday 0
        by_dom = {d for d in self.doms if d <= length} | ({length} if self.last_dom else set())
        by_dow = {d for d in range(1, length + 1) if (first_dow + d - 1) % 7 in self.dows}
        for dow, n in self.nth_dows:
            first = 1 + (dow - first_dow) % 7
            day = first + 7 * (n - 1) if n > 0 else first + 7 * ((length - first) // 7)
            if day <= length:
                by_dow.add(day)
        return tuple(sorted(by_dom & by_dow if self.both_days else by_dom | by_dow))

    def matches(self, wall: datetime) -> bool:
        return (wall.microsecond == 0 and wall.second in self.seconds and wall.minute in self.minutes
                and wall.hour in self.hours and wall.day in self.days(wall.year, wall.month))

    # -- searches: the first matching wall time strictly after, or the last strictly before, a naive time
    def next_after(self, wall: datetime) -> datetime | None:
        t = wall.replace(microsecond=0) if self.with_seconds else wall.replace(second=0, microsecond=0)
        t += _SECOND if self.with_seconds else _MINUTE
        y, mo, d, hms = t.year, t.month, t.day, (t.hour, t.minute, t.second)
        for _ in range(_SEARCH_MONTHS + 1):
            days = self.days(y, mo)
            for day in days[bisect.bisect_left(days, d):]:
                tm = self._time_at_or_after(hms) if day == d else (self.hours[0], self.minutes[0], self.seconds[0])
                if tm is not None:
                    return datetime(y, mo, day, *tm)
            y, mo = (y, mo + 1) if mo < 12 else (y + 1, 1)
            if y > 9999:
                return None
            d, hms = 1, (0, 0, 0)
        return None

    def count(self, lo: datetime, hi: datetime) -> int:
        """How many matching wall times lie in (lo, hi] (naive): by months and days, not one by one."""
        if hi <= lo:
            return 0
        per_day = len(self.hours) * len(self.minutes) * len(self.seconds)
        total, y, mo = 0, lo.year, lo.month
        lo_key, hi_key = (lo.year, lo.month, lo.day), (hi.year, hi.month, hi.day)
        while (y, mo) <= (hi.year, hi.month):
            for day in self.days(y, mo):
                key = (y, mo, day)
                if key < lo_key or key > hi_key:
                    continue
                n = self._times_upto(hi) if key == hi_key else per_day
                if key == lo_key:
                    n -= self._times_upto(lo)
                total += n
            y, mo = (y, mo + 1) if mo < 12 else (y + 1, 1)
        return total

    def _times_upto(self, t: datetime) -> int:
        """How many times of day of the schedule are at or before the time of day of `t`."""
        h, m, s = t.hour, t.minute, t.second
        M, S = len(self.minutes), len(self.seconds)
        n = bisect.bisect_left(self.hours, h) * M * S
        if h in self.hours:
            n += bisect.bisect_left(self.minutes, m) * S
            if m in self.minutes:
                n += bisect.bisect_right(self.seconds, s)
        return n

    def prev_before(self, wall: datetime) -> datetime | None:
        t = wall.replace(microsecond=0) if self.with_seconds else wall.replace(second=0, microsecond=0)
        if t == wall:
            t -= _SECOND if self.with_seconds else _MINUTE
        y, mo, d, hms = t.year, t.month, t.day, (t.hour, t.minute, t.second)
        for _ in range(_SEARCH_MONTHS + 1):
            days = self.days(y, mo)
            for day in reversed(days[:bisect.bisect_right(days, d)]):
                tm = self._time_at_or_before(hms) if day == d else (self.hours[-1], self.minutes[-1],
                                                                    self.seconds[-1])
                if tm is not None:
                    return datetime(y, mo, day, *tm)
            y, mo = (y, mo - 1) if mo > 1 else (y - 1, 12)
            if y < 1:
                return None
            d, hms = 31, (23, 59, 59)
        return None

    def _time_at_or_after(self, hms: tuple[int, int, int]) -> tuple[int, int, int] | None:
        h, m, s = hms
        H, M, S = self.hours, self.minutes, self.seconds
        i = bisect.bisect_left(H, h)
        if i < len(H) and H[i] == h:
            j = bisect.bisect_left(M, m)
            if j < len(M) and M[j] == m:
                k = bisect.bisect_left(S, s)
                if k < len(S):
                    return h, m, S[k]
                j += 1
            if j < len(M):
                return h, M[j], S[0]
            i += 1
        return (H[i], M[0], S[0]) if i < len(H) else None

    def _time_at_or_before(self, hms: tuple[int, int, int]) -> tuple[int, int, int] | None:
        h, m, s = hms
        H, M, S = self.hours, self.minutes, self.seconds
        i = bisect.bisect_right(H, h) - 1
        if i >= 0 and H[i] == h:
            j = bisect.bisect_right(M, m) - 1
            if j >= 0 and M[j] == m:
                k = bisect.bisect_right(S, s) - 1
                if k >= 0:
                    return h, m, S[k]
                j -= 1
            if j >= 0:
                return h, M[j], S[-1]
            i -= 1
        return (H[i], M[-1], S[-1]) if i >= 0 else None


def _nth(item: str) -> tuple[str, int] | None:
    """`fri#2` -> ('fri', 2), `5L` -> ('5', -1); None for an element without # or L."""
    day, hash_, n = item.partition("#")
    if hash_:
        if not (n.isdigit() and 1 <= int(n) <= 5):
            raise CronError(f"day of week field: {item!r}: after # comes which weekday of the month it is, 1 to 5 "
                            f"(fri#2: the second Friday)")
        return day, int(n)
    if len(item) > 1 and item[-1] in "lL" and (item[:-1].isdigit() or item[:-1].lower() in _DAYS):
        return item[:-1], -1
    return None


def _dow_field(text: str) -> tuple[frozenset[int], frozenset[tuple[int, int]]]:
    f = _FIELDS[4]
    plain, nth = [], set()
    for item in text.split(","):
        found = _nth(item)
        if found is None:
            plain.append(item)
        else:
            nth.add((_number(found[0], f, item) % 7, found[1]))
    values = _values(",".join(plain), f) if plain else frozenset()
    return frozenset(v % 7 for v in values), frozenset(nth)


def parse(expr: str) -> CronSpec:
    """Read a cron expression (CronError names the field that cron would not read)."""
    if not isinstance(expr, str) or not expr.split():
        raise CronError(f"an empty schedule: {_EXAMPLE}")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text == "@reboot":
            raise CronError("@reboot has no time to run at: give a schedule, e.g. \"@daily\" or \"30 2 * * *\"")
        if text.lower() not in NICKNAMES:
            raise CronError(f"unknown nickname {text!r}: one of {', '.join(NICKNAMES)}, or {_EXAMPLE}")
        return _parse(NICKNAMES[text.lower()], text)
    return _parse(text, text)


def _parse(fields_text: str, text: str) -> CronSpec:
    fields = fields_text.split()
    if len(fields) == 7:
        raise CronError(f"seven fields: a year field is not supported; {_EXAMPLE}, or six with a leading seconds field")
    if len(fields) not in (5, 6):
        raise CronError(f"{len(fields)} field(s): {_EXAMPLE}, or six with a leading seconds field, e.g. "
                        "\"*/10 * * * * *\"")
    if len(fields) == 6:
        try:
            return _read(fields[1:], tuple(sorted(_values(fields[0], _SECONDS))), text, ["a seconds field"])
        except CronError as exc:
            raise CronError(f"six fields, read as second minute hour day-of-month month day-of-week: {exc}") from None
    return _read(fields, (0,), text, [])


def _read(fields: list[str], seconds: tuple[int, ...], text: str, extensions: list[str]) -> CronSpec:
    minute, hour, dom, month, dow = fields
    minutes = tuple(sorted(_values(minute, _FIELDS[0])))
    hours = tuple(sorted(_values(hour, _FIELDS[1])))
    dom_items = dom.split(",")
    last_dom = any(i.upper() == "L" for i in dom_items)
    plain_dom = [i for i in dom_items if i.upper() != "L"]
    doms = _values(",".join(plain_dom), _FIELDS[2]) if plain_dom else frozenset()
    if last_dom:
        extensions.append("L (the last day of the month)")
    months = _values(month, _FIELDS[3])
    dows, nth = _dow_field(dow)
    if nth:
        extensions.append("# or L in the day of week")
    spec = CronSpec(text, seconds, minutes, hours, doms, months, dows, last_dom, nth,
                    dom.startswith("*") or dow.startswith("*"), tuple(extensions))
    if spec.next_after(datetime(2000, 1, 1)) is None:
        raise CronError(f"{text!r} never matches: no month in the month field {month!r} has a day that the day "
                        f"fields ({dom!r}, {dow!r}) allow")
    return spec


_specs: dict[str, CronSpec] = {}


def cron_spec(expr: str) -> CronSpec:
    """`parse`, remembered: every job sharing a schedule shares its reading."""
    spec = _specs.get(expr)
    if spec is None:
        spec = _specs[expr] = parse(expr)
    return spec


def problem(expr: str) -> str | None:
    """What is wrong with a schedule, or None when it is valid."""
    try:
        cron_spec(expr)
    except CronError as exc:
        return str(exc)
    return None


def is_valid(expr: str) -> bool:
    return problem(expr) is None


def cron_reads_it(expr: str) -> str | None:
    """None when a crontab line with this schedule runs at exactly its slots; otherwise which extension
    cron lacks (the job then runs from the daemon and --due only)."""
    spec = cron_spec(expr)
    return ", ".join(spec.extensions) if spec.extensions else None


class _NoMatch(Exception):
    """No matching wall time within the years a search looks at."""


class _Offsets:
    """The UTC offset changes of one timezone (zoneinfo does not list them): found by sampling every
    six hours, refined to the second, once per span of years, shared by every schedule in the zone."""

    STEP = timedelta(hours=6)
    REACH = timedelta(days=400)

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self.changes: list[datetime] = []
        self.lo: datetime | None = None
        self.hi: datetime | None = None
        self._lock = threading.Lock()

    def offset(self, t: datetime) -> timedelta:
        return t.astimezone(self.tz).utcoffset()  # type: ignore[return-value]

    def _scan(self, lo: datetime, hi: datetime) -> list[datetime]:
        found, t, off = [], lo, self.offset(lo)
        while t < hi:
            nxt = min(t + self.STEP, hi)
            if self.offset(nxt) != off:
                a, b = int(t.timestamp()), int(nxt.timestamp())
                while a + 1 < b:  # the first whole second with the new offset
                    mid = (a + b) // 2
                    if self.offset(datetime.fromtimestamp(mid, UTC)) == off:
                        a = mid
                    else:
                        b = mid
                found.append(datetime.fromtimestamp(b, UTC))
                off = self.offset(nxt)
            t = nxt
        return found

    def segment(self, t: datetime) -> tuple[datetime, datetime, timedelta, timedelta]:
        """(start, end, offset, offset before start) of the stretch of constant offset holding `t`. The
        edges of the scanned span count as starts and ends too (with no change of offset there)."""
        with self._lock:
            if self.lo is None or self.hi is None:
                self.lo, self.hi = t - self.REACH, t + self.REACH
                self.changes = self._scan(self.lo, self.hi)
            elif t - self.REACH < self.lo:
                lo = min(t, self.lo) - self.REACH
                self.changes = self._scan(lo, self.lo) + self.changes
                self.lo = lo
            elif t + self.REACH > self.hi:
                hi = max(t, self.hi) + self.REACH
                self.changes = self.changes + self._scan(self.hi, hi)
                self.hi = hi
            i = bisect.bisect_right(self.changes, t)
            start = self.changes[i - 1] if i > 0 else self.lo
            end = self.changes[i] if i < len(self.changes) else self.hi
        return start, end, self.offset(t), self.offset(start - _EPSILON)


_zones: dict[str, _Offsets] = {}
_zones_lock = threading.Lock()


def _offsets(tz: str) -> _Offsets:
    with _zones_lock:
        if tz not in _zones:
            _zones[tz] = _Offsets(ZoneInfo(tz))
        return _zones[tz]


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


class Schedule:
    """The slots of one cron expression in one timezone. Thread-safe.

    Time is cut into stretches of constant UTC offset; within one, a slot is a matching wall time
    minus the offset. At a jump forward the wall times skipped run at the jump (or not at all for a
    schedule that fires every hour); after a fall back, wall times of the first pass are not slots
    again (unless the schedule fires every hour)."""

    def __init__(self, expr: str, tz: str = "UTC"):
        self.expr = " ".join(expr.split())
        self.timezone = tz
        self.tz = ZoneInfo(tz)
        self.spec = cron_spec(self.expr)
        self.with_seconds = self.spec.with_seconds
        self.every_hour = self.spec.every_hour
        self._offsets = _offsets(tz)
        # A few stretches (slot, next slot) found lately: the jobs sharing a schedule ask about the same
        # moment, and each asks twice (the latest slot, and whether another came after the last run).
        self._known: tuple[tuple[datetime, datetime], ...] = ()

    def __repr__(self) -> str:
        return f"Schedule({self.expr!r}, {self.timezone!r})"

    def _cron(self, wall: datetime, forward: bool) -> datetime:
        """The first matching wall time strictly after (or before) the naive `wall`."""
        found = self.spec.next_after(wall) if forward else self.spec.prev_before(wall)
        if found is None:
            raise _NoMatch
        return found

    def _stretch(self, t: datetime) -> tuple[datetime, datetime] | None:
        for a, b in self._known:
            if a <= t < b:
                return a, b
        return None

    def _learn(self, a: datetime, b: datetime) -> None:
        self._known = ((a, b),) + self._known[:3]

    def next_after(self, t: datetime) -> datetime:
        """The first slot strictly after the instant `t`."""
        t = t.astimezone(UTC)
        known = self._stretch(t)
        if known is None:
            self.latest_at_or_before(t)  # learns the stretch holding t, for the next asker
            known = self._stretch(t)
        return known[1] if known is not None else self._next_after(t)

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last slot at or before the instant `t` (None when the expression never matched)."""
        t = t.astimezone(UTC)
        known = self._stretch(t)
        if known is not None:
            return known[0]
        latest = self._latest_at_or_before(t)
        if latest is not None:
            self._learn(latest, self._next_after(latest))
        return latest

    def _next_after(self, t: datetime) -> datetime:
        lo, strict = t, True
        while True:
            start, end, off, before = self._offsets.segment(lo)
            wall_lo = _naive(lo) + off
            w = self._cron(wall_lo if strict else wall_lo - _EPSILON, True)
            if before > off and not self.every_hour:  # second pass after a fall back
                w = max(w, self._cron(_naive(start) + before - _EPSILON, True))
            if w - off < _naive(end):
                return (w - off).replace(tzinfo=UTC)
            after = self._offsets.offset(end)
            if after > off and not self.every_hour and w < _naive(end) + after:
                return end  # a wall time skipped by the jump forward runs at the jump
            lo, strict = end, False

    def _latest_at_or_before(self, t: datetime) -> datetime | None:
        hi = t
        try:
            while True:
                start, _end, off, before = self._offsets.segment(hi)
                w = self._cron(_naive(hi) + off + _EPSILON, False)
                second_pass = before > off and not self.every_hour
                if not (second_pass and w < _naive(start) + before):
                    if w - off >= _naive(start):
                        return (w - off).replace(tzinfo=UTC)
                    if before < off and not self.every_hour and w >= _naive(start) + before:
                        return start  # skipped by the jump forward at the start of this stretch
                hi = start - _EPSILON
        except _NoMatch:
            return None

    def count(self, after: datetime, until: datetime) -> int:
        """How many slots lie in (after, until], counted stretch by stretch of constant UTC offset
        rather than slot by slot (a day of a per-second schedule is 86,400 slots)."""
        after, until = after.astimezone(UTC), until.astimezone(UTC)
        total, t = 0, after + _EPSILON
        while t <= until:
            start, end, off, before = self._offsets.segment(t)
            hi = min(until, end - _EPSILON)
            wall_lo = _naive(t) + off - _EPSILON  # exclusive: the instants [t, hi]
            if before > off and not self.every_hour:  # second pass: the first pass ran these wall times
                wall_lo = max(wall_lo, _naive(start) + before - _EPSILON)
            total += self.spec.count(wall_lo, _naive(hi) + off)
            if before < off and not self.every_hour and after < start <= until:
                gap, first_wall = _naive(start) + before, _naive(start) + off
                if self.spec.count(gap - _EPSILON, first_wall - _EPSILON) and not self.spec.matches(first_wall):
                    total += 1  # wall times skipped by the jump run once, at the jump
            t = end
        return total

    def recent(self, after: datetime | None, until: datetime, limit: int) -> tuple[list[datetime], bool]:
        """Slots in (after, until], newest first, at most `limit`; and whether older ones were left out."""
        out: list[datetime] = []
        x = self.latest_at_or_before(until)
        while x is not None and (after is None or x > after):
            if len(out) == limit:
                return out, True
            out.append(x)
            x = self.latest_at_or_before(x - _EPSILON)
        return out, False

    def local_date(self, slot: datetime) -> str:
        """The date of a slot in the schedule's timezone: the run date of that slot."""
        return slot.astimezone(self.tz).date().isoformat()
