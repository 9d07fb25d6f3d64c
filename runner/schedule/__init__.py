"""Scheduling: which slots are due or missed (slots.py), running a due slot exactly once under the
job's lock, for the daemon and for `--due` (due.py), the APScheduler daemon (daemon.py, the only
module that imports APScheduler), and the cron lines of `--crontab` (crontab.py).

May import runner.run and everything below it; only runner.cli imports it.
"""
