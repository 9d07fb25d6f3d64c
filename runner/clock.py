"""The only place that reads the time or sleeps, so tests can replace both."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def now() -> datetime:
    """Current time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


def monotonic() -> float:
    return time.monotonic()


def sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
