"""Running a job: the executor (executor.py) orders the tasks, runs each attempt through its kind
(kinds.py), retries under the tenacity policy built from the error classification (retry.py),
records every attempt in the ledger, and writes the run's summary (summary.py).

May import runner.move, runner.tasks, runner.state, runner.db, runner.config and the ground floor.
"""
