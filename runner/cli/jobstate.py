"""`--pause NAME [--reason TEXT]` and `--resume NAME`: kept in the state store, so every host sharing
it (cron lines, daemons, runs by hand) sees the pause from its next look at the job."""

from __future__ import annotations

from typing import IO

from runner.cli.history import unknown_job
from runner.config.jobs import job_names
from runner.errors import UsageError
from runner.model import Project


def _state(project: Project):  # noqa: ANN202 - (Ledger, JobState)
    from runner.state.jobstate import JobState
    from runner.state.ledger import Ledger

    ledger = Ledger(project.settings.state_url)
    return ledger, JobState(ledger)


def pause(project: Project, name: str, reason: str, out: IO[str]) -> int:
    if name not in job_names(project):
        raise unknown_job(project, name)
    from runner.state.jobstate import reason_problem

    problem = reason_problem(reason)
    if problem is not None:
        raise UsageError(f"--reason: {problem}")
    ledger, state = _state(project)
    try:
        current, made = state.pause(name, " ".join(reason.split()))
    finally:
        ledger.dispose()
    if made:
        out.write(f"{name}: {current.text()}; its slots are recorded as paused and a run by hand needs --force "
                  f"(resume with --resume {name})\n")
    else:
        out.write(f"{name} was already {current.text()}; left as it was\n")
    return 0


def resume(project: Project, name: str, out: IO[str]) -> int:
    if name not in job_names(project):
        raise unknown_job(project, name)
    ledger, state = _state(project)
    try:
        closed = state.resume(name)
    finally:
        ledger.dispose()
    if closed is None:
        out.write(f"{name} was not paused; nothing changed\n")
    else:
        out.write(f"{name}: resumed (it was {closed.text()}); the slots that fell in the pause are not caught "
                  f"up: --due --job {name} runs its latest slot now\n")
    if _disabled_in_file(project, name):
        out.write(f"note: jobs/{name} says enabled: false, so it stays paused until that line is removed\n")
    return 0


def _disabled_in_file(project: Project, name: str) -> bool:
    from runner.config.jobs import load_job
    from runner.errors import ConfigError

    try:
        return not load_job(project, name).enabled
    except ConfigError:
        return False
