"""Values as text where a format or a database has no type for them: ISO 8601 dates and times."""

from __future__ import annotations

import datetime as dt
from typing import Any


def time_text(td: dt.timedelta) -> str:
    """A MySQL TIME (PyMySQL gives a timedelta) as [-]HH:MM:SS[.ffffff]."""
    sign = "-" if td < dt.timedelta(0) else ""
    us = abs(td) // dt.timedelta(microseconds=1)
    seconds, micro = divmod(us, 1_000_000)
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + (f".{micro:06d}" if micro else "")


def temporal_text(value: Any) -> Any:
    """Dates, datetimes and times as ISO 8601 text ("2024-05-01 13:45:00.250000"); other values unchanged."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return time_text(value)
    return value
