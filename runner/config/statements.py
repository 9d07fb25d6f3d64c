"""Statements compiled once per dialect and run on a raw DBAPI cursor: parameters bound by the driver.

SQLAlchemy compiles `:name` into the driver's parameter style (and escapes a literal % for pyformat
drivers); execution then goes straight to the cursor, so a statement inside a task costs what the
driver costs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from runner.config.sqltext import bindable, placeholders


@lru_cache(maxsize=4096)
def _compiled(sql: str, dialect: Dialect) -> tuple[str, tuple[str, ...] | None, tuple[str, ...]]:
    compiled = sa.text(bindable(sql)).compile(dialect=dialect)
    names = tuple(placeholders(sql))
    positions = tuple(compiled.positiontup or ()) if dialect.positional else None
    return compiled.string, positions, names


def prepare(sql: str, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, Sequence[Any] | dict[str, Any]]:
    """Driver-ready SQL text and arguments for one statement."""
    text, positions, names = _compiled(sql, dialect)
    if positions is not None:
        return text, [params[n] for n in positions]
    return text, {n: params[n] for n in names}


def bound_preview(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The values a statement binds (for --dry-run)."""
    return {n: params.get(n) for n in placeholders(sql)}
