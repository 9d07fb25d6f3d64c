"""`--rerun RUN_ID`: a new run of the same job, slot and run date, with the run's --param values and
--from-task, trigger `rerun`. The tasks the run recorded as done are not run again (`done in run X`),
nor are those whose exactly-once marker shows they committed after all; the failed and skipped tasks
run. A scheduled run's re-run takes its slot's claim over, so a re-run that succeeds settles the slot
(nothing of it is due any more). `--history` shows the chain: "rerun of X" and "re-run as Y".
"""

from __future__ import annotations

from datetime import date, timezone
from typing import IO

from runner.cli.commands import abandon_unfinished, refuse_paused
from runner.config.jobs import load_job
from runner.errors import UsageError
from runner.model import Project
from runner.run.executor import Runner, RunRequest, new_run_id
from runner.run.summary import print_summary

RERUNNABLE = ("failed", "interrupted", "abandoned", "missed", "paused", "running")


def rerun(project: Project, run_id: str, out: IO[str], force: bool = False) -> int:
    from runner.state.lock import job_lock
    from runner.state.slots import SlotLedger

    ledger = SlotLedger(project.settings.state_url)
    runner = Runner(project, ledger=ledger)
    try:
        run = ledger.run(run_id)
        if run is None:
            raise UsageError(f"no run {run_id} in the ledger: see --history for run ids (runs older than "
                             f"history_days, {project.settings.history_days} days, are pruned)")
        job = load_job(project, run["job"])
        _refuse_success(run)
        refuse_paused(job, ledger, force, f"--rerun {run_id}")
        with job_lock(project, ledger, job.name, "rerun") as held:
            abandon_unfinished(ledger, job)  # the run itself, when its process died
            run = ledger.run(run["run_id"]) or run
            _refuse_success(run)
            origin = ledger.origins_of([run["run_id"]]).get(run["run_id"], {})
            later = [r for r in origin.get("rerun_as", ()) if (ledger.run(r) or {}).get("status") == "success"]
            if later and not force:
                raise UsageError(f"run {run['run_id'][:8]} was already re-run successfully as {later[0][:8]}; "
                                 f"--rerun {run['run_id'][:8]} --force runs it again all the same")
            done = {a.task: (run["run_id"], a.rows or 0) for a in ledger.last_attempts([run["run_id"]])
                    if a.status == "success"}
            slot = run["slot"].replace(tzinfo=timezone.utc) if run["slot"] is not None else None
            resume_of = {run["run_id"]: run["status"]}
            new = new_run_id()
            if slot is not None:
                holder = ledger.slot_holder(job.name, slot)
                ledger.claim(job.name, slot, new, run["run_date"], "rerun", takes_over=holder)
                resume_of.update(ledger.earlier_runs(job.name, slot, new))
            params = origin.get("params") or {}
            ledger.record_origin(new, params, origin.get("from_task"), rerun_of=run["run_id"])
            out.write(f"re-running run {run['run_id'][:8]} ({run['status']}) of job {job.name} for "
                      f"{run['run_date']}" + (f", slot {slot:%Y-%m-%d %H:%M} UTC" if slot else "")
                      + (f", tasks done in it left alone: {', '.join(sorted(done))}" if done else "") + "\n")
            result = runner.run(RunRequest(job, date.fromisoformat(run["run_date"]), params, origin.get("from_task"),
                                           "rerun", slot, run_id=new, still_locked=held.verify, resume_of=resume_of,
                                           done=done))
            print_summary(result, out)
        return 0 if result.ok else 1
    finally:
        runner.close()


def _refuse_success(run: dict) -> None:
    if run["status"] == "success":
        raise UsageError(f"run {run['run_id'][:8]} of job {run['job']} succeeded: nothing to re-run (run the job "
                         f"again with --job {run['job']} --date {run['run_date']})")
    if run["status"] not in RERUNNABLE:
        raise UsageError(f"run {run['run_id'][:8]} has status {run['status']}: only a run that did not succeed is "
                         "re-run")
