"""The only place that reads the time or sleeps, so tests can replace both. A sleep ends early, raising
stop.Interrupted, when SIGTERM or SIGINT asks the process to stop."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from runner import stop


def now() -> datetime:
    """Current time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


def monotonic() -> float:
    return time.monotonic()


def sleep(seconds: float) -> None:
    stop.sleep(seconds)
