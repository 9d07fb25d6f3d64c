"""Text for people: schedules in words, durations and times. Pure."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from runner import clock

UTC = timezone.utc


@functools.lru_cache(maxsize=1024)
def schedule_words(expr: str | None) -> str:
    """"At 02:30" for "30 2 * * *" (cron-descriptor, 24-hour clock; day of week 0 is Sunday, as in cron)."""
    if not expr:
        return "manual only"
    from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, Options

    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    options.day_of_week_start_index_zero = True
    try:
        text = ExpressionDescriptor(expr, options).get_description()
    except Exception:  # the runner's own check accepted it; a describer that cannot say it in words is no error
        return expr
    fields = expr.split()
    restricted = [f for f in (fields[-3], fields[-1]) if f not in ("*", "?")]
    if len(restricted) == 2:
        text += " (either day matches, as in cron)"
    return text


def fmt_seconds(seconds: float | None) -> str:
    """A duration the way an operator says it: 0.42s, 12.3s, 3m 05s, 2h 01m, 1d 03h."""
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 9.995:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600):02d}h"


def fmt_time(t: datetime | None, tz: str = "UTC", seconds: bool = True) -> str:
    """A moment in the job's timezone, with the zone's abbreviation: 2026-11-02 02:30:00 CST."""
    if t is None:
        return "-"
    local = t.astimezone(ZoneInfo(tz))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


iso = clock.iso  # ISO 8601 in UTC with a Z, as the API gives every moment


def ago(t: datetime | None, now: datetime) -> str:
    """"3h 05m ago", "in 12m 00s"."""
    if t is None:
        return ""
    delta = (now - t).total_seconds()
    return f"{fmt_seconds(delta)} ago" if delta >= 0 else f"in {fmt_seconds(-delta)}"
