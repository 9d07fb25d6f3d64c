"""SQL text handling built on sqlparse: splitting, placeholders, implicit commits."""

from __future__ import annotations

import re
from functools import lru_cache

import sqlparse
from sqlparse import tokens as T

from .model import Statement

_PLACEHOLDER = re.compile(r"^:([A-Za-z_][A-Za-z0-9_]*)$")

# Statements that make MySQL/MariaDB commit the open transaction (besides CREATE TEMPORARY TABLE).
_IMPLICIT_COMMIT = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "LOCK", "UNLOCK",
                    "ANALYZE", "OPTIMIZE", "REPAIR", "FLUSH", "INSTALL", "UNINSTALL"}


def split_statements(text: str, file: str, first_line: int) -> tuple[Statement, ...]:
    """Split SQL text into statements (quotes, comments and semicolons in strings handled by sqlparse).

    Each statement keeps the line where it starts in its file; the trailing semicolon is dropped and
    statements that hold only comments are skipped.
    """
    out: list[Statement] = []
    cursor = 0
    for raw in sqlparse.split(text):
        start = text.find(raw, cursor)
        if start < 0:  # sqlparse normalised something; fall back to the cursor position
            start = cursor
        cursor = start + len(raw)
        sql = raw.strip().rstrip(";").strip()
        if not sqlparse.format(sql, strip_comments=True).strip():
            continue
        lead = len(raw) - len(raw.lstrip())
        line = first_line + text.count("\n", 0, start + lead) + _leading_comment_lines(sql)
        out.append(Statement(sql=sql, file=file, line=line))
    return tuple(out)


def _leading_comment_lines(sql: str) -> int:
    """Lines taken by comments before the statement's first keyword (so errors point at the SQL)."""
    stripped = sqlparse.format(sql, strip_comments=True).strip()
    first = stripped.split(None, 1)[0] if stripped else ""
    idx = sql.find(first)
    return sql.count("\n", 0, idx) if idx > 0 else 0


@lru_cache(maxsize=4096)
def _tokens(sql: str) -> tuple[tuple[object, str], ...]:
    stmt = sqlparse.parse(sql)[0]
    return tuple((tok.ttype, tok.value) for tok in stmt.flatten())


def placeholders(sql: str) -> list[str]:
    """Names of the `:name` parameters a statement uses (not colons inside strings or comments)."""
    names: list[str] = []
    for ttype, value in _tokens(sql):
        m = _PLACEHOLDER.match(value) if ttype in T.Name.Placeholder else None
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def bindable(sql: str) -> str:
    """Text for sqlalchemy.text(): colons outside real placeholders are escaped so they stay literal."""
    parts: list[str] = []
    for ttype, value in _tokens(sql):
        if ttype in T.Name.Placeholder and _PLACEHOLDER.match(value):
            parts.append(value)
        else:
            parts.append(value.replace(":", "\\:"))
    return "".join(parts)


def implicit_commit(sql: str) -> bool:
    """True when MySQL/MariaDB would commit the open transaction at this statement."""
    # sqlparse gives "CREATE OR REPLACE" as one token: look at words.
    keywords = [w.upper() for t, v in _tokens(sql) if t in T.Keyword for w in v.split()]
    if not keywords or keywords[0] not in _IMPLICIT_COMMIT:
        return False
    return not (keywords[0] in ("CREATE", "DROP") and "TEMPORARY" in keywords[1:4])

