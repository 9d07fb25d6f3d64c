"""`--notify-test`: a test message to every configured notify target, with each result."""

from __future__ import annotations

from typing import IO

from runner.config.jobs import load_job, load_jobs
from runner.errors import UsageError
from runner.model import NotifyTarget, Project
from runner.notify.courier import privacy_url, send_apprise
from runner.notify.messages import test_message
from runner.state.ledger import HOST


def configured_targets(project: Project, job: str | None = None) -> dict[str, tuple[NotifyTarget, list[str]]]:
    """Every notify target (by key), with where it is configured."""
    found: dict[str, tuple[NotifyTarget, list[str]]] = {}
    if job is None:
        for t in project.settings.notify:
            found.setdefault(t.key, (t, []))[1].append("conf/runner.yml")
        jobs = load_jobs(project)[0]
    else:
        jobs = {job: load_job(project, job)}
    for name, j in sorted(jobs.items()):
        for t in j.notify if j.notify is not None else (project.settings.notify if job else ()):
            found.setdefault(t.key, (t, []))[1].append(f"job {name}")
    return found


def notify_test(project: Project, out: IO[str], job: str | None = None) -> int:
    """0 when every target took the message, 1 when one did not."""
    targets = configured_targets(project, job)
    if not targets:
        raise UsageError("no notify targets are configured: add notify: [{url: ...}] to conf/runner.yml or a job")
    failed = 0
    for target, where in targets.values():
        ok, error = send_apprise(target, test_message(HOST, target.label))
        failed += not ok
        out.write(f"{'sent' if ok else 'FAILED':<7}{target.label}  {privacy_url(target.url)}  ({', '.join(where)})"
                  + (f"\n       {error}" if error and not ok else "") + "\n")
    out.write(f"{len(targets) - failed} of {len(targets)} target(s) took the test message\n")
    return 1 if failed else 0
