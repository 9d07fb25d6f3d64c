"""The schedule goes first. In the daemon's process its web pages share the interpreter (and its lock)
with the schedule's threads; while a slot's runs are being started, work that can wait holds back.

The daemon says when a slot fires (`hold`) and when its runs are handed to the pool (`release`);
the web waits for `quiet` before it reads a request or renders a page, never longer than the hold
can last. In a process that has no schedule nothing ever holds, and nothing waits.
"""

from __future__ import annotations

import threading

from runner import clock

HOLD = 1.0  # seconds a fire holds the web back at the most (the slot's runs handed over end it sooner)
TAIL = 0.15  # after the hand-over: the pool's threads reach their first task


class Gate:
    def __init__(self) -> None:
        self._until = 0.0
        self._cv = threading.Condition()

    def hold(self, seconds: float = HOLD) -> None:
        """Schedule work starts now: hold back for up to `seconds`."""
        with self._cv:
            self._until = max(self._until, clock.monotonic() + seconds)

    def release(self, tail: float = TAIL) -> None:
        """Schedule work is handed over: hold back only `tail` seconds more."""
        with self._cv:
            self._until = min(self._until, clock.monotonic() + tail)
            self._cv.notify_all()

    def quiet(self, timeout: float = HOLD) -> bool:
        """Wait until nothing holds (True), or `timeout` seconds (False)."""
        deadline = clock.monotonic() + timeout
        with self._cv:
            while True:
                now = clock.monotonic()
                if now >= self._until:
                    return True
                if now >= deadline:
                    return False
                self._cv.wait(min(self._until, deadline) - now)


SCHEDULE = Gate()
