"""Column types of a query's result, and the SQLAlchemy types a missing target table is created with.

A load reads its source columns once, before any row moves: from the MySQL/MariaDB field descriptors
of the query (wrapped as `SELECT * FROM (query) LIMIT 0`), or on SQLite from a temporary view of the
query reflected by SQLAlchemy, completed from the values of the first rows. Each column gets a `kind`
(how its values are encoded on the way) and a type (how a missing target column is declared).

Types keep their precision where the target can hold it: DECIMAL(p,s) stays DECIMAL(p,s) (NUMERIC on
PostgreSQL), DATETIME(6) stays DATETIME(6) on MySQL/MariaDB, INTEGER and CHAR(n) stay INTEGER and CHAR(n),
NOT NULL stays NOT NULL. On SQLite, DECIMAL is declared NUMERIC(p,s): its values are stored as numbers
(64-bit integers or floats), so they compare, sum and sort as numbers; a value no such number holds
exactly is refused when it is written (see rowcopy.adapters).
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa
from pymysql.constants import FIELD_TYPE
from sqlalchemy.dialects import mysql

# Kinds: how a value travels. "text" is character data, "binary" raw bytes, "temporal" a date/time
# in its ISO text, "bit" a BIT(n) value moved as its integer.
KINDS = ("int", "decimal", "float", "temporal", "text", "binary", "bit")

F = FIELD_TYPE
_UNSIGNED_FLAG = 32
_BINARY_CHARSET = 63
_STRING_TYPES = {F.VARCHAR, F.VAR_STRING, F.STRING, F.ENUM, F.SET, F.TINY_BLOB, F.MEDIUM_BLOB, F.LONG_BLOB, F.BLOB,
                 F.JSON}
_MAX_VARCHAR = 16383  # utf8mb4 characters in 65535 bytes: longer strings become MEDIUMTEXT/LONGTEXT
_MAX_MEDIUMTEXT = 4194303
# Bytes per character of the character sets a result can arrive in (by collation id); utf8mb4 otherwise.
_MAXLEN = {8: 1, 48: 1, 33: 3, 83: 3, 192: 3, 223: 3, 63: 1, 45: 4, 46: 4, 224: 4, 255: 4, 35: 2, 54: 4, 60: 4}


@dataclass(frozen=True)
class SourceColumn:
    name: str
    kind: str
    type: Any  # a SQLAlchemy type (with MySQL/SQLite variants) for CREATE TABLE
    nullable: bool = True


def _variant(generic: Any, on_mysql: Any, on_sqlite: Any = None) -> Any:
    t = generic.with_variant(on_mysql, "mysql", "mariadb")
    return t.with_variant(on_sqlite, "sqlite") if on_sqlite is not None else t


def decimal_type(precision: int, scale: int, unsigned: bool = False) -> Any:
    precision = max(1, min(precision, 65))
    scale = max(0, min(scale, 30, precision))
    return _variant(sa.Numeric(precision, scale), mysql.DECIMAL(precision, scale, unsigned=unsigned))


def datetime_type(fsp: int = 6) -> Any:
    return _variant(sa.DateTime(), mysql.DATETIME(fsp=fsp or None))


def time_type(fsp: int = 6) -> Any:
    return _variant(sa.Time(), mysql.TIME(fsp=fsp or None))


def text_type(chars: int) -> Any:
    """VARCHAR for short strings, else the smallest MySQL TEXT type that holds `chars` characters."""
    if 0 < chars <= _MAX_VARCHAR:
        return sa.String(chars)
    if 0 < chars <= _MAX_MEDIUMTEXT:
        return _variant(sa.Text(), mysql.MEDIUMTEXT())
    return _variant(sa.Text(), mysql.LONGTEXT())  # 0: length unknown


def binary_type(length: int, fixed: bool = False) -> Any:
    if 0 < length <= 255 or (0 < length <= 16383 and not fixed):
        return _variant(sa.LargeBinary(), mysql.BINARY(length) if fixed else mysql.VARBINARY(length))
    if 0 < length <= 65535:
        return _variant(sa.LargeBinary(), mysql.BLOB())
    if 0 < length <= 16777215:
        return _variant(sa.LargeBinary(), mysql.MEDIUMBLOB())
    return _variant(sa.LargeBinary(), mysql.LONGBLOB())  # 0: length unknown


def mysql_column(name: str, type_code: int, length: int, scale: int, flags: int, charsetnr: int) -> SourceColumn:
    """A result column described by the MySQL protocol (pymysql FieldDescriptorPacket attributes)."""
    unsigned = bool(flags & _UNSIGNED_FLAG)
    nullable = not flags & 1
    if type_code in _STRING_TYPES or type_code == F.GEOMETRY:
        return _mysql_string(name, type_code, length, charsetnr, nullable)
    if type_code in (F.DECIMAL, F.NEWDECIMAL):
        precision = length - (1 if scale else 0) - (0 if unsigned else 1)
        return SourceColumn(name, "decimal", decimal_type(precision, scale, unsigned), nullable)
    if type_code in _INTEGER_TYPES:
        return SourceColumn(name, "int", _INTEGER_TYPES[type_code](unsigned), nullable)
    if type_code == F.FLOAT:
        return SourceColumn(name, "float", _variant(sa.Float(), mysql.FLOAT()), nullable)
    if type_code == F.DOUBLE:
        return SourceColumn(name, "float", _variant(sa.Double(), mysql.DOUBLE()), nullable)
    if type_code in (F.DATETIME, F.TIMESTAMP):
        return SourceColumn(name, "temporal", datetime_type(_fsp(scale)), nullable)
    if type_code in (F.DATE, F.NEWDATE):
        return SourceColumn(name, "temporal", sa.Date(), nullable)
    if type_code == F.TIME:
        return SourceColumn(name, "temporal", time_type(_fsp(scale)), nullable)
    if type_code == F.BIT:
        return SourceColumn(name, "bit", _variant(sa.BigInteger(), mysql.BIT(max(1, length))), nullable)
    return SourceColumn(name, "text", text_type(0), nullable)  # NULL type (SELECT NULL) and anything new


def _fsp(scale: int) -> int:
    return scale if 0 <= scale <= 6 else 0


def _mysql_string(name: str, type_code: int, length: int, charsetnr: int, nullable: bool) -> SourceColumn:
    if charsetnr == _BINARY_CHARSET and type_code != F.JSON:
        return SourceColumn(name, "binary", binary_type(length, fixed=type_code == F.STRING), nullable)
    chars = length // _MAXLEN.get(charsetnr, 4)
    if type_code == F.STRING and 0 < chars <= 255:  # CHAR(n) (ENUM and SET arrive as STRING too: CHAR holds them)
        return SourceColumn(name, "text", sa.CHAR(chars), nullable)
    return SourceColumn(name, "text", text_type(chars), nullable)


def _int(generic: Any, on_mysql: Any, wider: Any) -> Any:
    def make(unsigned: bool) -> Any:
        return _variant(wider if unsigned else generic, on_mysql(unsigned=unsigned))
    return make


_INTEGER_TYPES = {
    F.TINY: _int(sa.SmallInteger(), mysql.TINYINT, sa.SmallInteger()),
    F.SHORT: _int(sa.SmallInteger(), mysql.SMALLINT, sa.Integer()),
    F.INT24: _int(sa.Integer(), mysql.MEDIUMINT, sa.Integer()),
    F.LONG: _int(sa.Integer(), mysql.INTEGER, sa.BigInteger()),
    # BIGINT UNSIGNED reaches 2^64-1: NUMERIC(20) where no unsigned 64-bit type exists (SQLite: 64-bit INTEGER)
    F.LONGLONG: _int(sa.BigInteger(), mysql.BIGINT, sa.Numeric(20, 0).with_variant(sa.BigInteger(), "sqlite")),
    F.YEAR: lambda unsigned: _variant(sa.SmallInteger(), mysql.YEAR()),
}


def reflected_column(name: str, reflected: Any) -> SourceColumn | None:
    """A column whose type SQLAlchemy reflected (SQLite declared types); None when it has none."""
    t = reflected
    if isinstance(t, sa.types.NullType) or t is None:
        return None
    if isinstance(t, sa.Float):
        return SourceColumn(name, "float", _variant(sa.Double(), mysql.DOUBLE()))
    if isinstance(t, sa.Numeric):
        return SourceColumn(name, "decimal", decimal_type(t.precision or 38, t.scale if t.scale is not None else 10))
    if isinstance(t, sa.Integer):
        return SourceColumn(name, "int", sa.BigInteger())  # SQLite's INTEGER is 64-bit
    if isinstance(t, sa.DateTime):
        return SourceColumn(name, "temporal", datetime_type(6))
    if isinstance(t, sa.Date):
        return SourceColumn(name, "temporal", sa.Date())
    if isinstance(t, sa.Time):
        return SourceColumn(name, "temporal", time_type(6))
    if isinstance(t, sa.types._Binary):
        return SourceColumn(name, "binary", binary_type(getattr(t, "length", None) or 2 ** 32 - 1))
    if isinstance(t, sa.CHAR) and t.length and t.length <= 255:
        return SourceColumn(name, "text", sa.CHAR(t.length))
    if isinstance(t, sa.String):
        return SourceColumn(name, "text", text_type(t.length or 2 ** 32 - 1))
    return None


# PostgreSQL type OIDs (pg_type.dat) of a result's columns, as psycopg describes them.
_PG_INT = {20: sa.BigInteger, 21: sa.SmallInteger, 23: sa.Integer, 26: sa.BigInteger}
_PG_TEXT = {25, 1043, 114, 3802, 2950, 142, 1042, 19, 18}  # text, varchar, json, jsonb, uuid, xml, bpchar, name, char


def pg_column(name: str, oid: int, precision: int | None, scale: int | None, size: int | None) -> SourceColumn:
    """A result column as psycopg 3 describes it (type OID, numeric precision and scale, string length)."""
    if oid in _PG_INT:
        return SourceColumn(name, "int", _PG_INT[oid]())
    if oid == 16:
        return SourceColumn(name, "int", _variant(sa.Boolean(), mysql.TINYINT(1)))
    if oid == 1700:
        return SourceColumn(name, "decimal", decimal_type(precision or 65, scale if precision else 30))
    if oid == 700:
        return SourceColumn(name, "float", _variant(sa.Float(), mysql.FLOAT()))
    if oid == 701:
        return SourceColumn(name, "float", _variant(sa.Double(), mysql.DOUBLE()))
    if oid in (1114, 1184):
        return SourceColumn(name, "temporal", datetime_type(6))
    if oid == 1082:
        return SourceColumn(name, "temporal", sa.Date())
    if oid in (1083, 1266):
        return SourceColumn(name, "temporal", time_type(6))
    if oid == 17:
        return SourceColumn(name, "binary", binary_type(0))
    if oid == 1042 and size and size <= 255:
        return SourceColumn(name, "text", sa.CHAR(size))
    if oid == 1043 and size:
        return SourceColumn(name, "text", text_type(size))
    return SourceColumn(name, "text", text_type(0))


def value_column(name: str, values: Sequence[Any]) -> SourceColumn:
    """A column known only by its values (an expression on SQLite): the type of its first non-NULL value."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or isinstance(v, int):
            return SourceColumn(name, "int", sa.BigInteger())
        if isinstance(v, float):
            return SourceColumn(name, "float", _variant(sa.Double(), mysql.DOUBLE()))
        if isinstance(v, decimal.Decimal):
            return SourceColumn(name, "decimal", decimal_type(65, 30))
        if isinstance(v, (bytes, bytearray, memoryview)):
            return SourceColumn(name, "binary", binary_type(2 ** 32 - 1))
        if isinstance(v, dt.datetime):
            return SourceColumn(name, "temporal", datetime_type(6))
        if isinstance(v, dt.date):
            return SourceColumn(name, "temporal", sa.Date())
        if isinstance(v, (dt.time, dt.timedelta)):
            return SourceColumn(name, "temporal", time_type(6))
        break
    return SourceColumn(name, "text", text_type(2 ** 32 - 1))


def table_for(name: str, schema: str | None, columns: Sequence[SourceColumn], key: Sequence[str] = ()) -> sa.Table:
    """A SQLAlchemy table for CREATE TABLE: the source columns, NOT NULL where the source said so, `key`
    as the primary key."""
    cols = [sa.Column(c.name, _key_type(c) if c.name in key else c.type, primary_key=c.name in key,
                      nullable=c.nullable and c.name not in key, autoincrement=False, quote=True) for c in columns]
    return sa.Table(name, sa.MetaData(), *cols, schema=schema, quote=True, quote_schema=True)


def _key_type(c: SourceColumn) -> Any:
    """Key columns must be indexable on MySQL: TEXT and BLOB keys become VARCHAR(255)/VARBINARY(255)."""
    generic = c.type
    base = getattr(generic, "_variant_mapping", {}).get("mysql", generic)
    if isinstance(base, (sa.Text, mysql.TEXT, mysql.MEDIUMTEXT, mysql.LONGTEXT)) or \
            (isinstance(base, sa.String) and base.length is None):
        return sa.String(255)
    if isinstance(base, (sa.LargeBinary, mysql.BLOB, mysql.MEDIUMBLOB, mysql.LONGBLOB)):
        return _variant(sa.LargeBinary(), mysql.VARBINARY(255))
    return generic
