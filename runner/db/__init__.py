"""Talking to databases: one self-healing SQLAlchemy engine per named database (engines.py), what an
error means (classify.py), server-side timeouts that kill the running statement (watchdog.py), and
the LOCAL INFILE connection that only ever sends the runner's own stream (localinfile.py).

Knows nothing of jobs' runs or the state store. May import runner.config and the ground floor.
"""
