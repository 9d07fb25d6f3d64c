"""Helpers of the load and export tests: a second MariaDB database, the fidelity data set (every
awkward value a copy can get wrong), and a canonical digest of a table (count, sums and a checksum over
all rows) that compares equal across MariaDB and SQLite when the values are the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from tests.faultkit import execute, rows_of
from tests.harness.mariadb import PrivateMariaDB

FIDELITY_DDL = """CREATE TABLE {name} (
    id INT NOT NULL PRIMARY KEY,
    s VARCHAR(200) NULL,
    b VARBINARY(64) NULL,
    d DECIMAL(38,10) NULL,
    dt DATETIME(6) NULL,
    da DATE NULL,
    f DOUBLE NULL,
    t LONGTEXT NULL
)"""
COLUMNS = ("id", "s", "b", "d", "dt", "da", "f", "t")
WIDE_ID = 1000
STRINGS = ["plain", "", "tab\there", "new\nline", "cr\r\nlf", "back\\slash", "\\N", "NULL", "quote'\"double",
           "emoji 😀🚀 and 𝄞", "nul\x00byte", "trailing backslash\\", "\\t is not a tab", "中文字符", "a,b;c|d"]


def fidelity_rows() -> list[tuple[Any, ...]]:
    """NULLs in every column, 4-byte UTF-8, backslashes, tabs and newlines in strings, binary with every
    byte the LOAD DATA format cares about, DECIMAL(38,10) at full width, fractional datetimes, and one
    very wide row (a 3 MB text)."""
    rows: list[tuple[Any, ...]] = []
    for i in range(1, 61):
        rows.append((
            i,
            STRINGS[i % len(STRINGS)] if i % 11 else None,
            bytes((i * 37 + k * 11) % 256 for k in range(i % 23)) + b"\x00\t\n\\\xff" if i % 5 else None,
            Decimal(f"{'-' if i % 2 else ''}{i * 361_234_567_890_123_456_789_012 % 10 ** 28}."
                    f"{i * 987_654_321 % 10 ** 10:010d}") if i % 6 else None,
            dt.datetime(2024, 2, 29, 23, 59, 59, i * 16_411 % 1_000_000) + dt.timedelta(days=i) if i % 8 else None,
            dt.date(1999, 12, 31) + dt.timedelta(days=i * 40) if i % 9 else None,
            i / 10 + 1e-12 * i if i % 10 else None,
            "\t".join(STRINGS[: i % 7]) if i % 4 else None,
        ))
    rows.append((999,) + (None,) * 7)
    wide = ("wide 😀\t\\\n" * 340_000)[:3_000_000]
    rows.append((WIDE_ID, "w", b"\x00" * 64, Decimal("9" * 28 + "." + "9" * 10), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                 dt.date(1000, 1, 1), -1.7976931348623157e308, wide))
    return rows


def _decimal(v: Any) -> Any:
    return Decimal(str(v)) if v is not None else None


def _datetime(v: Any) -> Any:
    return dt.datetime.fromisoformat(v) if isinstance(v, str) else v


def _date(v: Any) -> Any:
    return dt.date.fromisoformat(v) if isinstance(v, str) else v


def _bytes(v: Any) -> Any:
    return bytes(v) if v is not None else None


CANON: dict[str, Callable[[Any], Any]] = {"d": _decimal, "dt": _datetime, "da": _date, "b": _bytes}


def canonical(rows: Sequence[Sequence[Any]], columns: Sequence[str] = COLUMNS) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        out.append(tuple(CANON.get(c, lambda v: v)(v) for c, v in zip(columns, row)))
    return sorted(out, key=lambda r: r[0])


def table_digest(rows: Sequence[Sequence[Any]], columns: Sequence[str] = COLUMNS) -> tuple[Any, ...]:
    """(count, sum of id, sum of d, sum of f, sha256 over every canonical row)."""
    canon = canonical(rows, columns)
    values = {c: [r[i] for r in canon if r[i] is not None] for i, c in enumerate(columns)}
    return (len(canon), sum(values["id"]), sum(values.get("d", []), Decimal(0)), sum(values.get("f", []), 0.0),
            hashlib.sha256(repr(canon).encode()).hexdigest())


def mariadb_rows(server: PrivateMariaDB, db: str, table: str, columns: Sequence[str] = COLUMNS) -> list[tuple]:
    return rows_of(server, db, f"SELECT {', '.join(columns)} FROM {table}")


def sqlite_rows(path: str, table: str, columns: Sequence[str] = COLUMNS) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(f"SELECT {', '.join(columns)} FROM {table}")]
    finally:
        conn.close()


def create_fidelity_mariadb(server: PrivateMariaDB, db: str, table: str = "src") -> list[tuple[Any, ...]]:
    rows = fidelity_rows()
    execute(server, db, FIDELITY_DDL.format(name=table))
    conn = server.connect(db=db, autocommit=True, max_allowed_packet=64 * 1024 * 1024)
    try:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * 8)})", rows)
    finally:
        conn.close()
    return rows


def create_fidelity_sqlite(path: str, table: str = "src") -> list[tuple[Any, ...]]:
    """The same rows in SQLite, stored the way SQLite keeps them: decimals and dates as text."""
    rows = fidelity_rows()
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, s VARCHAR(200), b BLOB, d VARCHAR(40), "
                     "dt DATETIME, da DATE, f REAL, t TEXT)")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [(r[0], r[1], r[2], None if r[3] is None else format(r[3], "f"),
                           None if r[4] is None else r[4].isoformat(sep=" "),
                           None if r[5] is None else r[5].isoformat(), r[6], r[7]) for r in rows])
        conn.commit()
    finally:
        conn.close()
    return rows


@pytest.fixture
def other_db(mdb: PrivateMariaDB) -> Iterator[str]:
    """A second fresh database on the private server (the target of MariaDB-to-MariaDB loads)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    execute(mdb, None, f"CREATE DATABASE `{name}`")
    yield name
    try:
        execute(mdb, None, f"DROP DATABASE IF EXISTS `{name}`")
    except Exception:  # the server may be down after a fault test; ensure_healthy brings it back later
        pass


def mysql_db(server: PrivateMariaDB, db: str, **extra: Any) -> dict[str, Any]:
    return {"url": f"mysql+pymysql://root:@{server.host}:{server.port}/{db}", **extra}
