"""Slots of a cron schedule in a timezone. Pure: no I/O, no clock.

A slot is the instant (UTC) at which one scheduled run of a job is due. A schedule is a cron
expression read in the job's timezone by croniter: five fields (minute hour day month weekday), or
six with a leading seconds field (`*/2 * * * * *`: every two seconds). Day of month and day of week
combine as in cron: when both are restricted, a day matching either one is a slot.

Daylight saving time, so that a nightly job neither runs twice nor skips a night:

- Gap (clocks jump forward): a wall time that does not exist runs once, at the moment of the jump
  (02:30 Europe/Berlin on the last Sunday of March runs at 03:00 CEST), as cron does. A schedule
  that fires every hour (hour field `*`) keeps its pattern in real time and has no slot in the
  missing hour.
- Overlap (clocks fall back): a wall time that occurs twice runs once, at its first occurrence.
  A schedule that fires every hour runs in both passes, so it keeps its spacing in real time.
"""

from __future__ import annotations

import bisect
import threading
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

UTC = timezone.utc
_EPSILON = timedelta(microseconds=1)


@lru_cache(maxsize=4096)
def is_valid(expr: str) -> bool:
    """Five or six fields that croniter accepts and that match at least once."""
    fields = expr.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expr, second_at_beginning=len(fields) == 6):
        return False
    day, _, weekday = fields[-3:]
    if day in ("*", "?") or weekday not in ("*", "?"):  # every month has such a day, or every week
        return True
    try:  # a day of the month that may not exist in the months given (31 February)
        Schedule(expr, "UTC").next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except CroniterBadDateError:
        return False
    return True


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
        self.with_seconds = len(self.expr.split()) == 6
        hours = croniter(self.expr, datetime(2000, 1, 1), second_at_beginning=self.with_seconds).expanded[1]
        self.every_hour = hours == ["*"] or len(hours) == 24
        self._offsets = _offsets(tz)
        self._local = threading.local()  # one croniter per thread: building one costs ~7x reusing it
        # A few stretches (slot, next slot) found lately: the jobs sharing a schedule ask about the same
        # moment, and each asks twice (the latest slot, and whether another came after the last run).
        self._known: tuple[tuple[datetime, datetime], ...] = ()

    def __repr__(self) -> str:
        return f"Schedule({self.expr!r}, {self.timezone!r})"

    def _cron(self, wall: datetime, forward: bool) -> datetime:
        """The first matching wall time strictly after (or before) the naive `wall`."""
        it = getattr(self._local, "it", None)
        if it is None:
            it = self._local.it = croniter(self.expr, wall, second_at_beginning=self.with_seconds)
        else:
            it.set_current(wall, force=True)
        return it.get_next(datetime) if forward else it.get_prev(datetime)

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
        except CroniterBadDateError:
            return None

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
