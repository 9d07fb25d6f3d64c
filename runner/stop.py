"""A request to stop (SIGTERM or SIGINT), seen by everything that runs or waits.

The signal handler only calls `request()`; nothing is raised inside whatever the main thread happens
to be doing (an exception injected into a driver in the middle of a packet leaves the connection out
of step, one injected into a `finally` or a generator being closed is lost or printed as "Exception
ignored"). Instead:

- what can stop a running statement registers itself with `on_stop` while the statement runs (the
  watchdog sends KILL QUERY from another connection, or interrupts SQLite), and `request()` calls
  them all from a thread of its own, so the statement ends on the server and its caller gets the
  server's error back;
- loops that move rows call `check()` between batches, and `sleep()` (retry backoffs) returns at
  once; both raise `Interrupted`;
- the executor turns whatever error a stopped statement ended with into `Interrupted`, so the run is
  recorded `interrupted` and the process exits 130.

`Interrupted` is a KeyboardInterrupt: no `except Exception` swallows it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

log = logging.getLogger("runner.stop")

_requested = threading.Event()
_why: list[str] = []
_lock = threading.Lock()
_cancels: dict[int, Callable[[], None]] = {}
_ids = itertools.count()


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM, SIGINT): what was running was stopped, nothing new starts."""

    def __init__(self, why: str | None = None):
        super().__init__(why or reason())


def request(why: str) -> None:
    """Ask everything to stop: each registered cancel runs once, in a thread of its own."""
    with _lock:
        if _requested.is_set():
            return
        _why.append(why)
        _requested.set()
        cancels = list(_cancels.values())
    for cancel in cancels:
        _start(cancel)


def requested() -> bool:
    return _requested.is_set()


def reason() -> str:
    return f"interrupted by {_why[0]}" if _why else "interrupted"


def check() -> None:
    """Raise Interrupted when a stop was requested."""
    if _requested.is_set():
        raise Interrupted()


def sleep(seconds: float) -> None:
    """Sleep, or raise Interrupted as soon as a stop is requested."""
    if _requested.wait(seconds) if seconds > 0 else _requested.is_set():
        raise Interrupted()


@contextmanager
def on_stop(cancel: Callable[[], None]) -> Iterator[None]:
    """Call `cancel` (from another thread) if a stop is requested while the block runs; at once when one
    already was."""
    key = next(_ids)
    with _lock:
        _cancels[key] = cancel
        already = _requested.is_set()
    if already:
        _start(cancel)
    try:
        yield
    finally:
        with _lock:
            _cancels.pop(key, None)


def _start(cancel: Callable[[], None]) -> None:
    def run() -> None:
        try:
            cancel()
        except Exception as exc:  # a cancel that fails leaves its statement to end on its own
            log.error("stopping a running statement failed: %s: %s", type(exc).__name__, exc)

    threading.Thread(target=run, name="runner-stop", daemon=True).start()


def reset() -> None:
    """Forget a stop request (tests, and a process that goes on after an interrupted run)."""
    with _lock:
        _requested.clear()
        _why.clear()
