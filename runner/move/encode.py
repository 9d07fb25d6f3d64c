"""Rows of any source encoded in the runner as LOAD DATA lines, and the bytes a MySQL source renders for
PostgreSQL's COPY made exact.

LOAD DATA lines (the format of `loadsql.load_data_sql`: tab-separated, fields optionally enclosed by
single quotes, backslash escapes, `\\n` line ends): text is enclosed and escaped the way MySQL's QUOTE()
does (backslash, quote and NUL escaped, tabs and newlines kept inside the quotes), so a string "NULL",
an empty string and a NULL stay apart; NULL is the unquoted word NULL; numbers are their exact digits
(DECIMAL in positional notation, floats as the shortest text that reads back as the same float); dates
and times ISO 8601; binary columns hex (unhexed by the statement). One call per value, no per-row
statement: the server does the parsing.
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


_BY_TYPE: dict[type, Encode] = {
    str: _text,
    int: str,
    bool: lambda v: "1" if v else "0",
    float: repr,
    decimal.Decimal: lambda v: format(v, "f"),
    type(None): lambda v: "NULL",
    dt.datetime: lambda v: "'" + v.isoformat(sep=" ") + "'",
    dt.date: lambda v: "'" + v.isoformat() + "'",
    dt.time: lambda v: "'" + v.isoformat() + "'",
    dt.timedelta: lambda v: "'" + time_text(v) + "'",
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
