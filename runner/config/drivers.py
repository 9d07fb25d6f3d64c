"""Database drivers: which Python package a url needs, whether it is installed, and the default driver
of a `postgresql://` url (psycopg 3).

Checked when configuration is read, so a url whose driver is missing is a configuration problem
naming the database and the package to install (exit 2, nothing run), not an import error in the
middle of a run. Presence is looked up without importing the driver (start-up stays cheap).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import make_url

# (backend, driver) -> (module to import, what to install)
DRIVERS: dict[tuple[str, str], tuple[str, str]] = {
    ("mysql", "pymysql"): ("pymysql", "pip install pymysql (conda: pymysql)"),
    ("mariadb", "pymysql"): ("pymysql", "pip install pymysql (conda: pymysql)"),
    ("mysql", "mysqldb"): ("MySQLdb", "pip install mysqlclient (conda: mysqlclient), or write mysql+pymysql:// "
                                      "to use PyMySQL"),
    ("mysql", "mysqlconnector"): ("mysql.connector", "pip install mysql-connector-python "
                                                     "(conda: mysql-connector-python)"),
    ("mariadb", "mariadbconnector"): ("mariadb", "pip install mariadb"),
    ("postgresql", "psycopg"): ("psycopg", "pip install 'etl-runner[postgresql]' (psycopg 3; conda: psycopg)"),
    ("postgresql", "psycopg2"): ("psycopg2", "pip install psycopg2-binary (conda: psycopg2), or write "
                                             "postgresql:// to use psycopg 3"),
    ("postgresql", "pg8000"): ("pg8000", "pip install pg8000"),
    ("postgresql", "asyncpg"): ("asyncpg", "pip install asyncpg"),
    ("mssql", "pyodbc"): ("pyodbc", "pip install pyodbc (conda: pyodbc)"),
    ("oracle", "oracledb"): ("oracledb", "pip install oracledb (conda: oracledb)"),
    ("sqlite", "pysqlite"): ("sqlite3", "a Python built with the sqlite3 module"),
}


def with_default_driver(url: str) -> str:
    """`postgresql://` and `postgres://` urls use psycopg 3 (SQLAlchemy's own default is psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


@lru_cache(maxsize=64)
def missing_driver(url: str) -> str | None:
    """What to install for `url` when its driver is not installed (None when it is, or the url does not
    parse: that is reported on its own)."""
    try:
        u = make_url(url)
    except Exception:
        return None
    backend = u.get_backend_name()
    unknown = (f"unknown database kind {u.drivername!r}: use a SQLAlchemy url such as mysql+pymysql://, "
               "postgresql:// or sqlite:///")
    try:
        driver = u.get_driver_name()  # a url without +driver: the dialect's default, which loads the dialect
    except sa.exc.NoSuchModuleError:
        return unknown
    known = DRIVERS.get((backend, driver))
    if known is not None:
        module, install = known
        return None if _importable(module) else \
            f"the driver of {backend}+{driver} ({module}) is not installed: {install}"
    try:
        dialect = u.get_dialect()
    except sa.exc.NoSuchModuleError:
        return unknown
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or str(exc)
        return (f"the driver of {backend}+{driver} ({module}) is not installed: install the Python package that "
                f"provides {module}")
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
