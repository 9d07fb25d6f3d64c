"""Rows of any source encoded in the runner as LOAD DATA lines, and the bytes a MySQL source renders for
PostgreSQL's COPY made exact.

LOAD DATA lines (the format of `loadsql.load_data_sql`: tab-separated, fields optionally enclosed by
single quotes, backslash escapes, `\\n` line ends): text is enclosed and escaped the way MySQL's QUOTE()
does (backslash, quote and NUL escaped, tabs and newlines kept inside the quotes), so a string "NULL",
an empty string and a NULL stay apart; NULL is the unquoted word NULL; numbers are their exact digits
(DECIMAL in positional notation, floats as the shortest text that reads back as the same float); dates
and times ISO 8601; binary columns hex (unhexed by the statement). One call per value, no per-row
statement: the server does the parsing.

SQLite rows (`sqlite_lines`) take the format without an escape character, by a function compiled for
the result's columns that encodes the storage class a column usually holds inline (a row is one Python
step) and any other value by its type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any, Callable, Iterable, Iterator, Sequence

from runner.move.coltypes import SourceColumn
from runner.move.values import time_text

Encode = Callable[[Any], str]


def _text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\x00", "\\0") + "'"


def _bytes_as_text(value: bytes) -> str:
    return _text(bytes(value).decode("utf-8"))


# Values that need no escaping, the same in both line formats (datetime before date: it is a date too).
_UNESCAPED: dict[type, Encode] = {
    int: str,
    bool: lambda v: "1" if v else "0",
    float: repr,  # the shortest text that reads back as the same float
    decimal.Decimal: lambda v: format(v, "f"),
    type(None): lambda v: "NULL",
    dt.datetime: lambda v: "'" + v.isoformat(sep=" ") + "'",
    dt.date: lambda v: "'" + v.isoformat() + "'",
    dt.time: lambda v: "'" + v.isoformat() + "'",
    dt.timedelta: lambda v: "'" + time_text(v) + "'",
}

_BY_TYPE: dict[type, Encode] = {
    str: _text,
    **_UNESCAPED,
    bytes: _bytes_as_text,
    bytearray: _bytes_as_text,
    memoryview: _bytes_as_text,
}


def _any(value: Any) -> str:
    for kind, encode in _BY_TYPE.items():
        if isinstance(value, kind):  # a subclass of a known type
            return encode(value)
    return _text(str(value))


def _hex(value: Any) -> str:
    """A binary column's value as hex (a text value in such a column: its UTF-8 bytes)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value).hex()


def _bit(value: Any) -> str:
    if value is None:
        return "NULL"
    return str(int.from_bytes(value, "big")) if isinstance(value, (bytes, bytearray)) else str(int(value))


def line_encoders(columns: Sequence[SourceColumn]) -> list[Encode | None]:
    """Per column, an encoder that overrides encoding by the value's type (None: by type)."""
    return [_hex if c.kind == "binary" else _bit if c.kind == "bit" else None for c in columns]


def load_data_lines(rows: Iterable[Sequence[Any]], encoders: Sequence[Encode | None]) -> bytes:
    """LOAD DATA lines of a batch of rows."""
    by_type, fallback = _BY_TYPE.get, _any
    out = []
    if not any(encoders):
        for row in rows:
            out.append("\t".join([(by_type(type(v)) or fallback)(v) for v in row]))
    else:
        def dynamic(v: Any) -> str:
            return (by_type(type(v)) or fallback)(v)

        chosen = [e or dynamic for e in encoders]
        for row in rows:
            out.append("\t".join([e(v) for e, v in zip(chosen, row)]))
    out.append("")
    return "\n".join(out).encode("utf-8")


# ------------------------------------------------------------------------ SQLite rows as LOAD DATA lines

# For `loadsql.load_data_sql(escaped=False)`: no escape character, so a field enclosed in quotes holds
# tabs, newlines, backslashes and NUL as they are, and a quote inside it is doubled; NULL is the word.

def _enclosed(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_PLAIN: dict[type, Encode] = {
    str: _enclosed,
    **_UNESCAPED,
    # a BLOB in a column that is not binary: its bytes as they are (the target checks them as its text)
    bytes: lambda v: _enclosed(v.decode("utf-8", "surrogateescape")),
    bytearray: lambda v: _enclosed(bytes(v).decode("utf-8", "surrogateescape")),
    memoryview: lambda v: _enclosed(bytes(v).decode("utf-8", "surrogateescape")),
}


def _plain_any(value: Any) -> str:
    encode = _PLAIN.get(type(value))
    if encode is not None:
        return encode(value)
    for kind, encode in _PLAIN.items():
        if isinstance(value, kind):  # a subclass of a known type
            return encode(value)
    return _enclosed(str(value))


def _plain_hex(value: Any) -> str:
    """A binary column's value as hex: a BLOB's bytes, other values the bytes of their text (as SQLite's
    hex() has them)."""
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float):
        value = repr(value)
    return str(value).encode("utf-8", "surrogateescape").hex()


# Per kind, the field of one value (VALUE) as an expression: the type a column of that kind holds in
# SQLite is encoded inline, any other value (NULL included) by `_plain_any`.
_FIELD = {
    "text": "(_q + VALUE.replace(_q, _qq) + _q if type(VALUE) is str else _any(VALUE))",
    "binary": "(VALUE.hex() if type(VALUE) is bytes else _hex(VALUE))",
    "number": "(f'{VALUE}' if type(VALUE) is int else f'{VALUE!r}' if type(VALUE) is float else _any(VALUE))",
}
_FIELD["temporal"] = _FIELD["text"]


def sqlite_lines(columns: Sequence[SourceColumn]) -> Callable[[Sequence[Sequence[Any]]], bytes]:
    """A function from a batch of SQLite rows to their LOAD DATA lines (for `load_data_sql(escaped=False)`).

    It is compiled for the columns: one f-string per row, each field tested for the type its column
    holds in SQLite and encoded inline, so a row costs one Python step, not a call per value. Only
    column positions go into its source text, never a name or a value. NULL is the word NULL, text is
    enclosed (a string "NULL", an empty string and a NULL stay apart), integers are their digits, floats
    their shortest exact text, a binary column hex.
    """
    names = [f"v{i}" for i in range(len(columns))]
    fields = ["{" + _FIELD.get(c.kind, _FIELD["number"]).replace("VALUE", n) + "}" for c, n in zip(columns, names)]
    line = 'f"' + "\\t".join(fields) + '\\n"'
    source = (f"def lines(rows):\n    return ''.join([{line} for {', '.join(names)}, in rows])"
              ".encode('utf-8', 'surrogateescape')\n")
    scope: dict[str, Any] = {"_any": _plain_any, "_hex": _plain_hex, "_q": "'", "_qq": "''"}
    exec(compile(source, "<runner.move.encode.sqlite_lines>", "exec"), scope)
    return scope["lines"]


# ------------------------------------------------------------------------ MySQL's QUOTE() for PostgreSQL

# In QUOTE()'s output, a backslash starts an escape; runs of them start after any other character.
_QUOTE_ESCAPES = re.compile(rb"(?<!\\)((?:\\\\)*)\\([0Z])")


def quote_to_csv(chunk: bytes) -> bytes:
    """QUOTE() escapes NUL as \\0 and Ctrl-Z as \\Z; PostgreSQL's CSV escape only knows \\' and \\\\. Ctrl-Z
    becomes itself; NUL becomes a NUL byte, which PostgreSQL refuses with the line and column (its text
    types cannot hold NUL)."""
    if b"\\0" not in chunk and b"\\Z" not in chunk:
        return chunk
    return _QUOTE_ESCAPES.sub(lambda m: m.group(1) + (b"\x1a" if m.group(2) == b"Z" else b"\x00"), chunk)


def csv_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield quote_to_csv(chunk)
