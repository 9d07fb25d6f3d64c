"""The SQL task: its statements in order, in one transaction on one pooled connection, with the
task's exactly-once marker written inside that transaction and the statement killed on the server
when the task's time is up.
"""

from __future__ import annotations

from runner.config.sqltext import implicit_commit
from runner.config.statements import prepare
from runner.db.classify import classify_error
from runner.db.engines import abandon, transaction_ended
from runner.db.watchdog import Watchdog
from runner.model import Statement, Task
from runner.state import markers
from runner.tasks.base import Attempt, AttemptError, timeout_error


def non_atomic(task: Task) -> bool:
    """A statement of the task commits implicitly (DDL on MySQL/MariaDB), splitting its transaction."""
    return any(implicit_commit(s.sql) for s in task.statements)


class _TimedOut(Exception):
    pass


class SqlTask:
    name = "sql"
    resumable = True
    confirms_retry = True

    def run(self, attempt: Attempt) -> tuple[int, str]:
        return run_sql(attempt), ""


KIND = SqlTask()


def run_sql(at: Attempt) -> int:
    """Run the task's statements and commit; returns the rows they touched or returned."""
    task = at.task
    engine = at.engines.get(task.database)
    use_markers = at.project.databases[task.database].markers
    if use_markers:
        try:
            markers.ensure_table(engine, at.project.settings.history_days)
        except Exception as exc:
            raise AttemptError(exc, classify_error(exc), None, "connect") from exc
    try:
        raw = engine.raw_connection()
    except Exception as exc:
        raise AttemptError(exc, classify_error(exc), None, "connect") from exc
    dialect = engine.dialect
    stmt: Statement | None = None
    phase = "statement"
    watchdog = Watchdog(engine, raw.dbapi_connection, at.timeout(), at.label)
    try:
        with watchdog:
            cur = raw.cursor()
            if dialect.name == "sqlite":
                cur.execute("BEGIN")
            rows = 0
            for stmt in task.statements:
                if watchdog.fired:
                    raise _TimedOut()
                cur.execute(*prepare(stmt.sql, dialect, at.params))
                if cur.description is not None:
                    rows += len(cur.fetchall())
                elif cur.rowcount and cur.rowcount > 0:
                    rows += cur.rowcount
            stmt = None
            if use_markers:
                phase = "marker"
                markers.write(cur, dialect, at.run_id, task.name, at.number, rows)
            cur.close()
            phase = "commit"
            raw.commit()
            transaction_ended(raw)
        return rows
    except BaseException as exc:
        abandon(engine, raw, exc)
        if isinstance(exc, _TimedOut) or (watchdog.fired and isinstance(exc, Exception)):
            raise timeout_error(exc, stmt, phase, watchdog.seconds) from exc
        if isinstance(exc, Exception):
            raise AttemptError(exc, classify_error(exc), stmt, phase) from exc
        raise
    finally:
        raw.close()
