"""`--rerun RUN_ID`: a new run of the same job, slot and run date, with the run's --param values and
--from-task, trigger `rerun`. The tasks the run recorded as done are not run again (`done in run X`),
nor are those whose exactly-once marker shows they committed after all; the failed and skipped tasks
run. A scheduled run's re-run takes its slot's claim over, so a re-run that succeeds settles the slot
(nothing of it is due any more). `--history` shows the chain: "rerun of X" and "re-run as Y". What it
checks and claims is `schedule.byhand.prepare_rerun` (the web's re-run action does the same); it
alerts, pings and counts like every run by hand.
"""

from __future__ import annotations

from typing import IO

from runner.model import Project
from runner.run.summary import print_summary
from runner.schedule.byhand import execute_rerun, prepare_rerun


def rerun(project: Project, run_id: str, out: IO[str], force: bool = False) -> int:
    from runner.notify.hub import watched_runner
    from runner.state.slots import SlotLedger

    ledger = SlotLedger(project.settings.state_url)
    try:
        prepared = prepare_rerun(project, ledger, run_id, force)
    except BaseException:
        ledger.dispose()
        raise
    try:
        runner, hub = watched_runner(project, ledger, {prepared.job.name: prepared.job})
    except BaseException:
        prepared.release.close()
        ledger.dispose()
        raise
    try:
        out.write(prepared.describe() + "\n")
        result = execute_rerun(runner, prepared)
        print_summary(result, out)
        return 0 if result.ok else 1
    finally:
        hub.close()
        runner.close()
