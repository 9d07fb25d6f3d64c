"""Progress of a long load or export: a bar on a terminal, a log line every few seconds otherwise.

On a terminal (stderr is a TTY): `label [#########.........] 52% 523,000/1,000,000 rows 251k rows/s ETA 0:02`,
redrawn in place a few times a second. Without one (cron, the daemon): a log line every LOG_EVERY
seconds. The total is an estimate (the source's query plan) or unknown; without it there is no ETA.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import IO, Callable

from runner import clock

log = logging.getLogger("runner.progress")

LOG_EVERY = 5.0
DRAW_EVERY = 0.2
BAR_WIDTH = 24


def human_rate(rate: float) -> str:
    if rate >= 1_000_000:
        return f"{rate / 1_000_000:.1f}M"
    if rate >= 10_000:
        return f"{rate / 1000:.0f}k"
    return f"{rate:.0f}"


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def eta(rows: int, total: int | None, rate: float) -> float | None:
    """Seconds left, or None when the total is unknown, already passed (a low estimate) or nothing moves."""
    if not total or rows >= total or rate <= 0:
        return None
    return (total - rows) / rate


def bar_line(label: str, rows: int, total: int | None, rate: float, width: int = BAR_WIDTH) -> str:
    counts = f"{rows:,}/{total:,} rows" if total and rows <= total else f"{rows:,} rows"
    text = f"{counts} {human_rate(rate)} rows/s"
    left = eta(rows, total, rate)
    if total and rows <= total:
        filled = int(width * rows / total) if total else 0
        bar = "#" * filled + "." * (width - filled)
        text = f"[{bar}] {100 * rows // total:3d}% {text}"
    if left is not None:
        text += f" ETA {clock_text(left)}"
    return f"{label} {text}"


def log_line(label: str, rows: int, total: int | None, rate: float) -> str:
    left = eta(rows, total, rate)
    text = f"{label}: {rows:,} rows so far, {human_rate(rate)} rows/s"
    if left is not None:
        text += f", about {clock_text(left)} left (of ~{total:,})"
    return text


def due(now: float, last: float, every: float) -> bool:
    return now - last >= every


class Progress:
    """Counts rows from any thread and reports them; `finish()` clears the bar."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None,
                 now: Callable[[], float] = clock.monotonic):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.now = now
        self.rows = 0
        self.started = now()
        self._last = self.started
        self._drawn = False
        self._lock = threading.Lock()

    def rate(self, at: float) -> float:
        elapsed = at - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def add(self, rows: int) -> None:
        with self._lock:
            self.rows += rows
            at = self.now()
            if not due(at, self._last, DRAW_EVERY if self.tty else LOG_EVERY):
                return
            self._last = at
            if self.tty:
                self.stream.write("\r" + bar_line(self.label, self.rows, self.total, self.rate(at)) + "\x1b[K")
                self.stream.flush()
                self._drawn = True
            else:
                log.info("%s", log_line(self.label, self.rows, self.total, self.rate(at)))

    def finish(self) -> float:
        """Clear the bar; returns the seconds taken."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False
            return self.now() - self.started
