"""SQL text handling built on sqlparse: splitting, placeholders, implicit commits."""

from __future__ import annotations

import re
from functools import lru_cache

import sqlparse
from sqlparse import tokens as T
from sqlparse.engine import grouping
from sqlparse.exceptions import SQLParseError

from runner.model import Statement

# sqlparse refuses statements of more than 10,000 tokens, a guard against hostile input; a
# 1,500-row INSERT is past it. Job SQL is the operator's own text, so that cap only breaks real jobs
# (the cost stays linear). The nesting cap (100 levels) stays: past it the parser would recurse away.
grouping.MAX_GROUPING_TOKENS = None

_PLACEHOLDER = re.compile(r"^:([A-Za-z_][A-Za-z0-9_]*)$")

# Statements that make MySQL/MariaDB commit the open transaction (besides CREATE TEMPORARY TABLE).
_IMPLICIT_COMMIT = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "LOCK", "UNLOCK",
                    "ANALYZE", "OPTIMIZE", "REPAIR", "FLUSH", "INSTALL", "UNINSTALL"}


class UnparsableStatement(SQLParseError):
    """sqlparse cannot parse a statement (nested too deeply); says where the statement starts."""

    def __init__(self, file: str, line: int, reason: str):
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"statement at {file}:{line} cannot be parsed: {reason}")


def split_statements(text: str, file: str, first_line: int) -> tuple[Statement, ...]:
    """Split SQL text into statements (quotes, comments and semicolons in strings handled by sqlparse).

    Each statement keeps the line where it starts in its file; the trailing semicolon is dropped and
    statements that hold only comments are skipped. A statement sqlparse cannot parse raises
    UnparsableStatement naming its line.
    """
    out: list[Statement] = []
    cursor = 0
    for raw in sqlparse.split(text):
        start = text.find(raw, cursor)
        if start < 0:  # sqlparse normalised something; fall back to the cursor position
            start = cursor
        cursor = start + len(raw)
        sql = raw.strip().rstrip(";").strip()
        lead = len(raw) - len(raw.lstrip())
        line = first_line + text.count("\n", 0, start + lead)
        try:
            stripped = sqlparse.format(sql, strip_comments=True).strip()
        except SQLParseError as exc:
            raise UnparsableStatement(file, line, str(exc)) from None
        if not stripped:
            continue
        out.append(Statement(sql=sql, file=file, line=line + _leading_comment_lines(sql, stripped)))
    return tuple(out)


def _leading_comment_lines(sql: str, stripped: str) -> int:
    """Lines taken by comments before the statement's first keyword (so errors point at the SQL)."""
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

