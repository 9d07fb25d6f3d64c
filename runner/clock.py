"""The only place that reads the time or sleeps, so tests can replace both. A sleep ends early, raising
stop.Interrupted, when SIGTERM or SIGINT asks the process to stop."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from runner import stop


def now() -> datetime:
    """Current time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """A moment as JSON and the API show it: 2026-11-30T02:30:00Z (naive times are UTC, as stored)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def monotonic() -> float:
    return time.monotonic()


def sleep(seconds: float) -> None:
    stop.sleep(seconds)
