"""Task kinds and the one interface through which they plug into the executor (base.py); the SQL
task (sql.py). The data-moving kinds, export and load, live in runner.move.

May import: runner.state, runner.db, runner.config and the ground floor; never runner.run (the
executor), runner.move or anything above.
"""
