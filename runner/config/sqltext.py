"""SQL text: splitting into statements, `:name` placeholders, literal colons, implicit commits.

Job SQL can be large (a seed file of a million rows; checking it must run at several MB a second),
and what matters in it is little: where strings, quoted names and comments start and end (a `;` or
`:name` inside them is text), semicolons, parentheses, and a few keywords. One regular expression
finds only those, so the text between them is skipped by the regex engine: splitting and finding
placeholders cost a pass over the text each, linear in its size, with no token object per word.
sqlparse lexes every token in Python (about 0.4 MB/s) and groups them (superlinear in a long
statement); it still splits the statements that hold blocks (BEGIN ... END bodies of procedures and
triggers, DECLARE, GO), with its own rules for them, so those split exactly as before.

Quoting follows MySQL/MariaDB: a backslash escapes the next character in a string, a doubled quote
is a quote. Comments: `-- ...`, `# ...` (hash and space, as sqlparse reads them), `/* ... */`; an
executable comment `/*! ... */` and an optimizer hint `/*+ ... */` count as SQL.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Iterator

from runner.model import Statement

_EOL = r"(?:\r\n|\r|\n|\Z)"
_LINE_COMMENT = rf"(?:--|\#(?<![\w$#]\#) )[^\r\n]*{_EOL}"
# Strings, quoted names and comments, whole: nothing inside them is seen. Each branch starts with a
# plain character (a lookbehind comes after it), so the regex engine skips ahead to the next
# character that can start one. `/*!` and `/*+` are SQL, not comments, but quoted alike.
_QUOTED = (r"--[^\r\n]*" + _EOL + r"|\#(?<![\w$#]\#) [^\r\n]*" + _EOL + r"|/\*[\s\S]*?\*/"
           r"|'(?:[^'\\]|\\[\s\S]|'')*'"
           r'|"(?:[^"\\]|\\[\s\S]|"")*"'
           r"|`(?:[^`]|``)*`"
           r"|\$(?<![\w$\"]\$)(?P<tag>[A-Za-z_]\w*|)\$[\s\S]*?\$(?P=tag)\$")
# Text up to and including the next `;` outside quotes, a few thousand tokens at most: the regex
# engine walks the statement, Python sees it in large pieces. (Unbounded, the engine's stack would
# grow with the statement: about 60 bytes a token.)
_PIECE = re.compile(r"(?:[^;'\"`\-#/$]+|" + _QUOTED + r"|[-#/$'\"`]){0,4096};?")
_QUOTES = re.compile(_QUOTED)
_PARAMS = re.compile(_QUOTED + r"|::|:=|:(?<!\w:)(?P<param>[A-Za-z_]\w*)")
# Words that open a block, which sqlparse's splitter handles (BEGIN ... END, DECLARE, GO); one branch
# that starts with a character class, so the engine skips to the next B, D or G.
_BLOCK = re.compile(r"[BbDdG](?<![\w.$][BbDdG])(?:(?<=[Bb])(?i:EGIN)|(?<=[Dd])(?i:ECLARE)|(?<=G)O)\b")
# After a statement's `;`: the blanks and line comments on its line still belong to it (as sqlparse
# has it: a line break starts the next statement).
_TRAIL = re.compile(rf"(?:[^\S\r\n]+|{_LINE_COMMENT})*")
_TRAIL_STARTS = frozenset(" \t\f\v-#")
# Before a statement's first token: blanks and comments.
_LEAD = re.compile(rf"(?:\s+|{_LINE_COMMENT}|/\*(?![!+])[\s\S]*?\*/)*")
_WORD = re.compile(r"[A-Za-z_]\w*")


def _lead(sql: str) -> int:
    """Where the first token of a stripped statement starts, past comments."""
    return _LEAD.match(sql).end() if sql[:1] in ("-", "/", "#") else 0  # type: ignore[union-attr]

# Statements that make MySQL/MariaDB commit the open transaction (besides CREATE TEMPORARY TABLE).
_IMPLICIT_COMMIT = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "LOCK", "UNLOCK",
                    "ANALYZE", "OPTIMIZE", "REPAIR", "FLUSH", "INSTALL", "UNINSTALL"}
_BLOCK_WINDOW = 1 << 16  # text handed to sqlparse at first for a statement with a block; doubled as needed


def split_statements(text: str, file: str, first_line: int) -> tuple[Statement, ...]:
    """Split SQL text into statements.

    Each statement keeps the line where its SQL starts in its file (past leading comments); the
    trailing semicolon is dropped and statements that hold only comments are skipped.
    """
    out: list[Statement] = []
    line, counted = first_line, 0
    for start, end in _statement_spans(text):
        chunk = text[start:end]
        sql = chunk.strip().rstrip(";").strip()
        if not sql:
            continue
        lead = _lead(sql)
        if lead == len(sql):  # comments only
            continue
        at = start + (len(chunk) - len(chunk.lstrip()))
        line += text.count("\n", counted, at)
        counted = at
        out.append(Statement(sql=sql, file=file, line=line + sql.count("\n", 0, lead)))
    return tuple(out)


def _statement_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each statement: up to and including its first `;` outside strings, comments and
    parentheses, and the blanks and line comments after it on its line. A statement holding a block
    is split by sqlparse."""
    pos, size = 0, len(text)
    while pos < size:
        pos = yield from _spans_from(text, pos)


def _spans_from(text: str, pos: int) -> Iterator[tuple[int, int]]:
    """The statements from `pos` on, up to one that holds a block (split by sqlparse); returns where
    to go on from."""
    size, start, level, block = len(text), pos, 0, False
    for m in _PIECE.finditer(text, pos):
        piece_end = m.end()
        if piece_end == m.start():
            break
        if m.start() < start:  # the trailing comments of the statement before: not part of this one
            piece = text[start:piece_end]
        else:
            piece = m.group()
        opened = piece.count("(") - piece.count(")")
        bare = None
        if opened:  # recount outside strings and comments (a balanced piece leaves the level as it was)
            bare = _QUOTES.sub(" ", piece)
            opened = bare.count("(") - bare.count(")")
        level += opened
        if not block and _BLOCK.search(piece) is not None:
            block = _BLOCK.search(bare if bare is not None else _QUOTES.sub(" ", piece)) is not None
        if piece_end < size and not (level <= 0 and text[piece_end - 1] == ";"):
            continue  # the statement goes on: a `;` inside parentheses, or a very long statement
        if block:
            end = _block_end(text, start)
            yield start, end
            return end
        end = piece_end
        if end < size and text[end] in _TRAIL_STARTS:
            end = _TRAIL.match(text, end).end()  # type: ignore[union-attr]
        yield start, end
        start, level = end, 0
    return size


def _block_end(text: str, pos: int) -> int:
    """The end of a statement holding BEGIN ... END (or DECLARE, GO), by sqlparse's splitter."""
    from sqlparse import lexer
    from sqlparse.engine.statement_splitter import StatementSplitter

    window = _BLOCK_WINDOW
    while True:
        piece = text[pos:pos + window]
        first = next(iter(StatementSplitter().process(lexer.tokenize(piece))), None)
        length = len(str(first)) if first is not None else len(piece)
        if pos + window >= len(text) or length < len(piece):
            return pos + max(1, length)
        window *= 2


# ------------------------------------------------------------------------------------------ one statement

def placeholders(sql: str) -> list[str]:
    """Names of the `:name` parameters a statement uses (not colons inside strings or comments)."""
    if ":" not in sql:
        return []
    return list(dict.fromkeys(m[-1] for m in _PARAMS.findall(sql) if m[-1]))


@lru_cache(maxsize=4096)
def _params_at(sql: str) -> tuple[tuple[int, int], ...]:
    """(start, end) of each `:name` of a statement."""
    return tuple((m.start(), m.end()) for m in _PARAMS.finditer(sql) if m.group("param"))


def substitute(sql: str, value: Callable[[str], str]) -> str:
    """The statement with each `:name` replaced by `value(name)`; other colons stay as they are."""
    parts, last = [], 0
    for start, end in _params_at(sql):
        parts.append(sql[last:start])
        parts.append(value(sql[start + 1:end]))
        last = end
    parts.append(sql[last:])
    return "".join(parts)


def bindable(sql: str) -> str:
    """Text for sqlalchemy.text(): colons outside real placeholders are escaped so they stay literal."""
    parts, last = [], 0
    for start, end in _params_at(sql):
        parts.append(sql[last:start].replace(":", "\\:"))
        parts.append(sql[start:end])
        last = end
    parts.append(sql[last:].replace(":", "\\:"))
    return "".join(parts)


def implicit_commit(sql: str) -> bool:
    """True when MySQL/MariaDB would commit the open transaction at this statement."""
    first = _WORD.match(sql, _lead(sql.lstrip()) + len(sql) - len(sql.lstrip()))
    if first is None or first.group().upper() not in _IMPLICIT_COMMIT:
        return False
    following = [w.upper() for w in _WORD.findall(_without_comments(sql[first.end():first.end() + 400]))[:3]]
    return not (first.group().upper() in ("CREATE", "DROP") and "TEMPORARY" in following)


def _without_comments(text: str) -> str:
    return _COMMENTS.sub(" ", text)


_COMMENTS = re.compile(rf"{_LINE_COMMENT}|/\*(?![!+])[\s\S]*?\*/")
