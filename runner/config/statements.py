"""Statements compiled once per dialect and run on a raw DBAPI cursor: parameters bound by the driver.

SQLAlchemy compiles `:name` into the driver's parameter style (and escapes a literal % for pyformat
drivers); execution then goes straight to the cursor, so a statement inside a task costs what the
driver costs.
"""

from __future__ import annotations

import decimal
from functools import lru_cache
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from runner.config.exact import float_exact
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
    value = _sqlite_value if dialect.name == "sqlite" else _same
    if positions is not None:
        return text, [value(n, params[n]) for n in positions]
    return text, {n: value(n, params[n]) for n in names}


def _same(name: str, value: Any) -> Any:
    return value


def _sqlite_value(name: str, value: Any) -> Any:
    """SQLite has no decimal type (and sqlite3 cannot bind one): a decimal binds as the float that holds it
    exactly, and one no float holds is refused rather than rounded."""
    if not isinstance(value, decimal.Decimal):
        return value
    f = float_exact(value)
    if f is None:
        raise ValueError(f"parameter :{name} = {value} cannot be bound exactly on SQLite, whose numbers are "
                         f"64-bit floats (15 significant digits); pass fewer digits, or quote it to bind text")
    return f


def bound_preview(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The values a statement binds (for --dry-run)."""
    return {n: params.get(n) for n in placeholders(sql)}
