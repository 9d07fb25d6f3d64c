"""The geometry of the charts the pages draw as SVG. Pure: records and `now` in, boxes and ticks out.

- The strip of a job's last slots: one cell per slot, oldest on the left, coloured by the outcome of
  its latest run, as tall as its duration against the longest in the strip. Slots that never ran
  (missed, abandoned, paused, or with no run recorded at all) are drawn at full height in their own
  pattern, so a gap in the schedule is never a blank.
- Durations over time (job page): one mark per run at its start time; runs that never ran sit on the
  time axis. Readable at 1,000 runs: marks, not bars.
- The Gantt chart of a run: one row per task, one bar per attempt; the waits between attempts (the
  retry backoff) are drawn as lines with their length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from runner.web.records import Attempt, Run
from runner.web.words import fmt_seconds

# Outcomes drawn at full height: there is no duration to show, and they must not look like a blank.
NO_DURATION = ("missed", "abandoned", "paused", "norecord", "due")
DUE_SECONDS = 120.0  # a slot this young without a record is due, not yet a gap


# ---------------------------------------------------------------------------------------------- strip

@dataclass(frozen=True)
class Cell:
    """One slot of the strip (or one run, for a job without a schedule)."""

    slot: datetime | None
    status: str  # the latest run's status; "norecord" or "due" for a slot with no run recorded
    run: Run | None  # the latest run of the slot, the one the cell links to
    tries: int  # runs the slot has had
    seconds: float | None

    @property
    def earlier_failed(self) -> bool:
        return self.tries > 1


def slot_cells(runs: Iterable[Run], expected: Iterable[datetime], now: datetime, limit: int = 30) -> list[Cell]:
    """The newest `limit` slots, oldest first: those the ledger has runs of (`runs`, any order) and the
    `expected` slots of the schedule that it has none of. Runs without a slot are left out."""
    by_slot: dict[datetime, list[Run]] = {}
    for r in runs:
        if r.slot is not None:
            by_slot.setdefault(r.slot, []).append(r)
    cells: dict[datetime, Cell] = {}
    for slot, slot_runs in by_slot.items():
        latest = max(slot_runs, key=lambda r: r.started)
        cells[slot] = Cell(slot, latest.status, latest, len(slot_runs), latest.seconds(now))
    for slot in expected:
        if slot not in cells and slot <= now:
            young = (now - slot).total_seconds() < DUE_SECONDS
            cells[slot] = Cell(slot, "due" if young else "norecord", None, 0, None)
    newest = sorted(cells)[-limit:]
    return [cells[s] for s in newest]


def run_cells(runs: Iterable[Run], now: datetime, limit: int = 30) -> list[Cell]:
    """The newest `limit` runs as cells, oldest first (a job without a schedule has no slots)."""
    newest = sorted(runs, key=lambda r: r.started)[-limit:]
    return [Cell(r.slot, r.status, r, 1, r.seconds(now)) for r in newest]


@dataclass(frozen=True)
class Box:
    """A cell placed in the strip."""

    cell: Cell
    x: float
    y: float
    w: float
    h: float


def strip_boxes(cells: Sequence[Cell], limit: int = 30, width: float = 300.0, height: float = 28.0,
                gap: float = 1.0, min_height: float = 3.0) -> list[Box]:
    """Cells laid out right-aligned in `limit` columns (so the newest is always at the right edge)."""
    w = width / limit
    longest = max((c.seconds for c in cells if c.seconds and c.status not in NO_DURATION), default=0.0)
    out = []
    offset = limit - len(cells)
    for i, c in enumerate(cells):
        if c.status in NO_DURATION or not longest:
            h = height
        else:
            h = max(min_height, height * (c.seconds or 0.0) / longest)
        out.append(Box(c, (offset + i) * w, height - h, max(1.0, w - gap), h))
    return out


# ---------------------------------------------------------------------------------------------- ticks

_DURATION_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
                   1800, 3600, 7200, 10800, 21600,
                   43200, 86400, 172800, 604800)
_TIME_STEPS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
               7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400)


def duration_ticks(longest: float, count: int = 4) -> tuple[float, list[tuple[float, str]]]:
    """(top of the axis, [(seconds, label)]): about `count` round steps from 0 past `longest`."""
    longest = max(longest, 0.001)
    step = next((s for s in _DURATION_STEPS if longest / s <= count), _DURATION_STEPS[-1])
    n = max(1, math.ceil(longest / step - 1e-9))
    return n * step, [(i * step, fmt_seconds(i * step) if i else "0") for i in range(n + 1)]


def time_ticks(lo: datetime, hi: datetime, tz: str, count: int = 6) -> list[tuple[datetime, str]]:
    """Round moments between lo and hi in the job's timezone, labelled as the step asks (times of day
    within a day, dates beyond)."""
    span = max(1.0, (hi - lo).total_seconds())
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    zone = ZoneInfo(tz)
    local_lo = lo.astimezone(zone)
    if step >= 86400:
        first = local_lo.replace(hour=0, minute=0, second=0, microsecond=0)
        fmt = "%m-%d" if span < 300 * 86400 else "%Y-%m-%d"
    else:
        midnight = local_lo.replace(hour=0, minute=0, second=0, microsecond=0)
        into = (local_lo - midnight).total_seconds()
        first = midnight + timedelta(seconds=math.floor(into / step) * step)
        fmt = "%H:%M:%S" if step < 60 else ("%H:%M" if span < 86400 else "%m-%d %H:%M")
    out = []
    t = first
    while t <= hi and len(out) < 4 * count:
        if t >= lo:
            out.append((t, t.strftime(fmt)))
        t = (t + timedelta(seconds=step)).astimezone(zone)
        if step >= 86400:  # whole days stay at midnight across DST changes
            t = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return out


# ---------------------------------------------------------------------------------------------- durations

@dataclass(frozen=True)
class Mark:
    run: Run
    x: float
    y: float
    seconds: float | None


@dataclass(frozen=True)
class DurationChart:
    width: float
    height: float
    left: float  # room for the duration labels
    bottom: float  # room for the time labels
    marks: list[Mark]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]

    @property
    def radius(self) -> float:
        """Smaller dots as they crowd, so a thousand runs still show their spread."""
        n = len(self.marks)
        return 3.0 if n <= 200 else 2.2 if n <= 600 else 1.6


def duration_chart(runs: Sequence[Run], tz: str, now: datetime, width: float = 960.0, height: float = 260.0,
                   left: float = 64.0, bottom: float = 24.0, top: float = 8.0, right: float = 12.0) -> DurationChart:
    """Each run's duration against its start time."""
    plot_w, plot_h = width - left - right, height - bottom - top
    if not runs:
        return DurationChart(width, height, left, bottom, [], [], [])
    lo = min(r.started for r in runs)
    hi = max(r.started for r in runs)
    if (hi - lo).total_seconds() < 60:
        lo, hi = lo - timedelta(seconds=30), hi + timedelta(seconds=30)
    span = (hi - lo).total_seconds()
    longest = max((s for r in runs if (s := r.seconds(now)) is not None), default=1.0)
    y_top, y_ticks = duration_ticks(longest)

    def x_of(t: datetime) -> float:
        return left + plot_w * (t - lo).total_seconds() / span

    def y_of(seconds: float) -> float:
        return top + plot_h * (1 - seconds / y_top)

    marks = []
    for r in runs:
        s = r.seconds(now)
        marks.append(Mark(r, x_of(r.started), y_of(s) if s is not None else top + plot_h, s))
    x_ticks = [(x_of(t), label) for t, label in time_ticks(lo, hi, tz)]
    return DurationChart(width, height, left, bottom, marks, x_ticks, [(y_of(v), label) for v, label in y_ticks])


# ---------------------------------------------------------------------------------------------- Gantt

@dataclass(frozen=True)
class Span:
    attempt: Attempt
    x: float
    w: float
    seconds: float | None


@dataclass(frozen=True)
class Wait:
    x1: float
    x2: float
    seconds: float


@dataclass(frozen=True)
class GanttRow:
    task: str
    y: float
    spans: list[Span]
    waits: list[Wait]
    status: str  # of the task's last attempt


@dataclass(frozen=True)
class Gantt:
    width: float
    height: float
    label_width: float
    row_height: float
    top: float
    rows: list[GanttRow]
    ticks: list[tuple[float, str]]
    seconds: float


def gantt(attempts: Sequence[Attempt], started: datetime, ended: datetime | None, now: datetime,
          width: float = 960.0, label_width: float = 200.0, row_height: float = 16.0, top: float = 22.0) -> Gantt:
    """Rows in the order the tasks first started; time runs from the run's start to its end (or now)."""
    end = ended or now
    for a in attempts:
        end = max(end, a.ended or now)
    total = max(0.001, (end - started).total_seconds())
    plot_w = width - label_width - 8.0

    def x_of(t: datetime) -> float:
        return label_width + plot_w * max(0.0, (t - started).total_seconds()) / total

    by_task: dict[str, list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: (a.started, a.attempt)):
        by_task.setdefault(a.task, []).append(a)
    rows = []
    for i, (task, tries) in enumerate(by_task.items()):
        spans, waits = [], []
        for j, a in enumerate(tries):
            x1, x2 = x_of(a.started), x_of(a.ended or now)
            spans.append(Span(a, x1, max(1.0, x2 - x1), a.seconds(now)))
            if j + 1 < len(tries) and a.ended is not None:
                nxt = tries[j + 1]
                gap = (nxt.started - a.ended).total_seconds()
                if gap > 0:
                    waits.append(Wait(x2, x_of(nxt.started), gap))
        rows.append(GanttRow(task, top + i * row_height, spans, waits, tries[-1].status))
    _, steps = duration_ticks(total, count=6)
    ticks = [(label_width + plot_w * v / total, "+" + label) for v, label in steps if v <= total * 1.0001]
    return Gantt(width, top + len(rows) * row_height + 4, label_width, row_height, top, rows, ticks, total)
