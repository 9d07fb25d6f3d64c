"""The schedule goes first: a fire holds the web back until its runs are handed over (and a short tail),
never longer than the hold; with nothing held nothing waits."""

from __future__ import annotations

import threading
import time

from runner.priority import Gate


def timed(fn) -> tuple[object, float]:  # noqa: ANN001
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def test_nothing_held_nothing_waits() -> None:
    ok, took = timed(lambda: Gate().quiet(timeout=5))
    assert ok and took < 0.05


def test_a_hold_keeps_the_web_waiting_until_it_runs_out() -> None:
    gate = Gate()
    gate.hold(0.2)
    ok, took = timed(lambda: gate.quiet(timeout=0.05))
    assert not ok and 0.04 <= took < 0.15  # gave up at its own timeout
    ok, took = timed(lambda: gate.quiet(timeout=5))
    assert ok and took < 0.25  # the hold ran out


def test_a_release_ends_the_hold_after_its_tail() -> None:
    gate = Gate()
    gate.hold(10)
    threading.Timer(0.05, gate.release, kwargs={"tail": 0.05}).start()
    ok, took = timed(lambda: gate.quiet(timeout=5))
    assert ok and 0.08 <= took < 0.5


def test_a_release_never_lengthens_a_hold() -> None:
    gate = Gate()
    gate.release(tail=10)
    ok, took = timed(lambda: gate.quiet(timeout=5))
    assert ok and took < 0.05
