"""Which kind runs a task: sql (runner.tasks.sql), export and load (runner.move). Each kind is
imported when a task of it first runs, so a job of plain SQL does not pay for the data movers."""

from __future__ import annotations

from runner.model import Task
from runner.tasks.base import TaskKind


def kind_of(task: Task) -> TaskKind:
    if task.kind == "export":
        from runner.move.export import KIND as export

        return export
    if task.kind == "load":
        from runner.move.load import KIND as load

        return load
    from runner.tasks.sql import KIND as sql

    return sql
