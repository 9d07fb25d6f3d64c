"""The tenacity retry policy of a task, built from the error classification (db/classify.py).

Backoff depends on the error just seen (full jitter, exponential); with a `window`, a server that is
away is waited out until the window closes, however many attempts that takes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import tenacity
from tenacity import RetryCallState

from runner import clock
from runner.db.classify import RECONNECT_CAP, Backoff, Verdict, classify_error, server_away
from runner.model import RetrySpec


class _ClassifiedWait(tenacity.wait.wait_base):
    """Full-jitter exponential backoff whose base and cap depend on the error just seen."""

    def __init__(self, spec: RetrySpec):
        cap = max(spec.max_delay, 0.0)
        base = max(spec.base_delay, 0.001)
        self._waits = {
            Backoff.SHORT: tenacity.wait_random_exponential(multiplier=min(base, 0.05), max=min(cap, 2.0)),
            Backoff.NORMAL: tenacity.wait_random_exponential(multiplier=base, max=cap),
            Backoff.LONG: tenacity.wait_random_exponential(multiplier=base * 4, max=cap),
            Backoff.RECONNECT: tenacity.wait_random_exponential(multiplier=base, max=min(cap, RECONNECT_CAP)),
            Backoff.NONE: tenacity.wait_none(),
        }

    def __call__(self, retry_state: RetryCallState) -> float:
        verdict = _verdict(retry_state)
        return self._waits[verdict.backoff if verdict is not None else Backoff.NONE](retry_state)


def _verdict(retry_state: RetryCallState) -> Verdict | None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    # The executor raises its own wrapper carrying the verdict; classifying the wrapper would find no errno.
    verdict = getattr(exc, "verdict", None) or (classify_error(exc) if exc is not None else None)
    return verdict if isinstance(verdict, Verdict) else None


class _Stop(tenacity.stop.stop_base):
    """Stop after `attempts`, or before a sleep that would end past the `window`."""

    def __init__(self, spec: RetrySpec):
        self._attempts = tenacity.stop_after_attempt(spec.attempts)
        self._window = tenacity.stop_before_delay(spec.window) if spec.window else None

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._window is None:
            return self._attempts(retry_state)
        if self._window(retry_state):
            return True
        verdict = _verdict(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        away = verdict is not None and server_away(verdict, getattr(exc, "phase", None))
        return not away and self._attempts(retry_state)


def build_retrying(spec: RetrySpec, *, should_retry: Callable[[BaseException], bool],
                   before_sleep: Callable[[RetryCallState], None] | None = None,
                   sleep: Callable[[float], Any] | None = None) -> tenacity.Retrying:
    """A fresh Retrying for one task run (shared instances mix up their statistics)."""
    return tenacity.Retrying(
        stop=_Stop(spec),
        wait=_ClassifiedWait(spec),
        retry=tenacity.retry_if_exception(should_retry),
        sleep=sleep or clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def describe_attempts(verdicts: Sequence[Verdict], seconds: float, spec: RetrySpec, retried_last: bool,
                      away: bool = False) -> list[str]:
    """Lines of a failure message: what was tried, for how long, and why retrying stopped.

    `verdicts` are the errors of the attempts in order; `retried_last` says whether the last one is an
    error the policy retries (then attempts or the window ran out), `away` whether it said the server
    was away (`server_away`: only the window limits those).
    """
    counts = Counter(f"{v.code} {v.kind.value}" if v.code is not None else v.kind.value for v in verdicts)
    errors = ", ".join(f"{text} x{n}" for text, n in counts.items())
    if not retried_last:
        stop = "the last error is not retried"
    elif spec.window and (away or len(verdicts) < spec.attempts):
        stop = f"the retry window of {spec.window:g}s closed (retry.window)"
    elif len(verdicts) >= spec.attempts:
        stop = f"all {spec.attempts} attempts were used (retry.attempts)"
    else:
        stop = "retrying stopped"
    return [f"  tried: {len(verdicts)} attempts over {seconds:.1f}s, with backoff of up to {spec.max_delay:g}s "
            f"between them; errors: {errors}",
            f"  stopped: {stop}"]
