"""The state store: the run ledger of every run and task attempt (ledger.py), scheduled slots claimed
once across hosts (slots.py), the per-job lock (lock.py), and the exactly-once commit markers kept in
each target database (markers.py).

May import runner.db, runner.config and the ground floor.
"""
