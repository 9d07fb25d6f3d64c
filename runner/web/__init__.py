"""The status pages and the JSON API: which jobs ran, which failed, which are slow, where a run spent
its time; and the actions an operator takes from there (run now, with the token).

One WSGI application (`app.py`) serves both, from the state store and the job files as they are on
disk; waitress serves it, in the daemon's process (a thread of its own) or alone (`--serve`). Charts
are SVG drawn by the server from pure geometry (`charts.py`); pages are Jinja templates with every
value escaped.

May import everything below the command line: schedule, run, move, tasks, state, db, config and the
ground floor. Nothing below imports it; the command line starts it.
"""
