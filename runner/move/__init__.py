"""Data movement: the `export` task kind (export.py: a query into a CSV or JSON Lines file) and the
`load` task kind (load.py: a query's rows into a table of another database), with their helpers:
the LOAD DATA fast path between MySQL servers (fastcopy.py), batched inserts (rowcopy.py), the SQL
they write (loadsql.py), column types (coltypes.py), values as text (values.py), watermarks of
incremental loads (watermark.py) and progress on long work (progress.py).

Each kind plugs into the executor through runner.tasks.base and never imports runner.run. May
import runner.tasks, runner.state, runner.db, runner.config and the ground floor.
"""
