"""The short summary of a run written to stdout: status, duration, and one line per task."""

from __future__ import annotations

from typing import IO

from runner import logs
from runner.run.executor import RunResult


def print_summary(result: RunResult, out: IO[str]) -> None:
    out.write(f"{result.job} {result.run_date}: {result.status} in {result.seconds:.2f}s (run {result.run_id[:8]})\n")
    width = max((len(t.name) for t in result.tasks), default=4)
    for t in result.tasks:
        attempts = f"{t.attempts} attempt" + ("s" if t.attempts != 1 else "")
        extra = f"  {t.note}" if t.note else ""
        out.write(f"  {t.name:<{width}}  {t.status:<8} {attempts:<11} {t.rows:>9} rows  {t.seconds:6.2f}s{extra}\n")
    if result.error:
        out.write("\n" + logs.REDACTOR.scrub(result.error) + "\n")
    out.flush()
