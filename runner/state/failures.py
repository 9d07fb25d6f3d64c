"""When the state store itself fails: a read-only or full disk, a file that is not a SQLite database or
holds someone else's tables, a server that cannot be reached. Such an error says it is the state store,
with its url (password hidden), what is wrong and what to do, instead of "unexpected error".

Errors of the state store's engines are marked as they pass (`watch`), not replaced, so code that
catches SQLAlchemy's own errors (a slot claimed by another host is an IntegrityError) still does;
`failure_of(exc)` finds the mark on an error or on what caused it.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from runner.config.urls import redact
from runner.db.classify import errno_of, sqlstate_of

_MARK = "_runner_state_store"

_NO_DATABASE = "the database does not exist: create it (CREATE DATABASE ...) or fix state_url"
_REFUSED_USER = "the server refused the user or password: check them in state_url (URL-encode @ : / % in a password)"
_UNREACHABLE = "the server cannot be reached: check that it is up and the host and port in state_url"
_NO_HOST = "the server's host name cannot be resolved: check the host in state_url"
_READ_ONLY_SERVER = "the server is read-only: point state_url at the primary"
_FOREIGN = ("it holds tables named runner_* that are not the runner's: give the runner a database of its own "
            "in state_url")

# (text in the driver's message, or MySQL error number) -> what is wrong and what to do
_DIAGNOSES: list[tuple[str | int, str]] = [
    ("readonly database", "it is read-only for this user: make the file and its folder writable by the user "
                          "running the runner (SQLite writes a -wal and a -shm file beside it), or point "
                          "state_url at a writable place"),
    ("unable to open database file", "the file cannot be opened or created: check that its folder exists and "
                                     "is writable by the user running the runner"),
    ("not a database", "the file is not a SQLite database: move it away, or point state_url at a new file"),
    ("disk is full", "the disk holding it is full: free some space, then run again"),
    ("disk i/o error", "the disk reported an I/O error: check the file system"),
    ("no such table", "it holds tables named runner_* that are not the runner's: give the runner a database "
                      "(or file) of its own in state_url"),
    ("no such column", "it holds tables named runner_* that are not the runner's: give the runner a database "
                       "(or file) of its own in state_url"),
    ("has no column named", "it holds tables named runner_* that are not the runner's: give the runner a "
                            "database (or file) of its own in state_url"),
    ("database is locked", "another process kept it locked for more than 30s: find it (fuser on the file)"),
    (1054, _FOREIGN),
    (1146, "a table the runner made is gone: give the runner a database of its own in state_url"),
    (1045, _REFUSED_USER),
    (1044, "the user may not use that database: GRANT it CREATE, SELECT, INSERT, UPDATE, DELETE there"),
    (1142, "the user lacks privileges on the runner's tables: GRANT it CREATE, SELECT, INSERT, UPDATE, DELETE"),
    (1049, _NO_DATABASE),
    (1290, _READ_ONLY_SERVER),
    (2002, _UNREACHABLE),
    (2003, _UNREACHABLE),
    (2005, _NO_HOST),
    (2068, "the server asked for a local file, which was refused: the server (or the path to it) is not to be "
           "trusted"),
]


# PostgreSQL (psycopg): by SQLSTATE, and by libpq's text for the errors of connecting, which have none.
_PG_SQLSTATES = {
    "3D000": _NO_DATABASE, "28P01": _REFUSED_USER, "28000": _REFUSED_USER,
    "42501": "the user lacks privileges: GRANT it USAGE and CREATE on the schema (PostgreSQL 15 takes CREATE on "
             "public from every user) and SELECT, INSERT, UPDATE, DELETE on the runner's tables",
    "25006": _READ_ONLY_SERVER, "42P01": "a table the runner made is gone: give the runner a database of its own "
                                         "in state_url",
    "42703": _FOREIGN, "53300": "the server has too many connections: raise max_connections or use fewer, then "
                                "run again",
    "53100": "the server's disk is full: free some space there, then run again",
}
_PG_TEXTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r'database "[^"]*" does not exist'), _NO_DATABASE),
    (re.compile(r'role "[^"]*" does not exist|password authentication failed|no pg_hba\.conf entry'),
     _REFUSED_USER + "; a pg_hba.conf line must let this user in from this host"),
    (re.compile(r"permission denied"), _PG_SQLSTATES["42501"]),
    (re.compile(r"failed to resolve host|could not translate host name"), _NO_HOST),
    (re.compile(r"connection refused|timeout expired|no route to host|could not connect|the database system is "
                r"(starting up|shutting down)"), _UNREACHABLE),
]


def _postgres_fix(exc: BaseException, lowered: str) -> str | None:
    state = sqlstate_of(exc)
    if state in _PG_SQLSTATES:
        return _PG_SQLSTATES[state]
    orig = getattr(exc, "orig", None) or exc
    if not type(orig).__module__.startswith("psycopg"):
        return None
    return next((fix for pattern, fix in _PG_TEXTS if pattern.search(lowered)), None)


def watch(engine: sa.Engine, url: str) -> None:
    """Mark every error of `engine` (the state store's) with `url`, for `failure_of`."""

    @event.listens_for(engine, "handle_error")
    def _mark(context: Any) -> None:
        for exc in (context.sqlalchemy_exception, context.original_exception):
            if exc is not None:
                setattr(exc, _MARK, url)


def mark(exc: BaseException, url: str) -> BaseException:
    setattr(exc, _MARK, url)
    return exc


def failure_of(exc: BaseException) -> str | None:
    """'state store <url>: <what is wrong> (<driver's text>)' when `exc` (or its cause) is a state store
    error, else None."""
    seen = 0
    while exc is not None and seen < 10:
        url = getattr(exc, _MARK, None)
        if url is not None:
            return describe(url, exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return None


_OS_ERRORS = {errno.EACCES: "readonly database", errno.EPERM: "readonly database", errno.EROFS: "readonly database",
              errno.ENOSPC: "disk is full", errno.EDQUOT: "disk is full", errno.EFBIG: "disk is full",
              errno.EIO: "disk i/o error", errno.ENOTDIR: "unable to open database file",
              errno.EISDIR: "unable to open database file"}


def _exists(url: str) -> bool:
    try:
        database = sa.make_url(url).database
    except Exception:
        return False
    return bool(database) and os.path.isfile(database)


def describe(url: str, exc: BaseException) -> str:
    number, text = errno_of(exc)
    lowered = ""
    if isinstance(exc, OSError):  # the file system, not the database: by its errno
        number, text = None, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        lowered = _OS_ERRORS.get(exc.errno or 0, "")
    text = " ".join(text.split())
    lowered = lowered or text.lower()
    if "unable to open database file" in lowered and _exists(url):  # there, but not to be written
        lowered = "readonly database"
    what = _postgres_fix(exc, lowered) or next(
        (fix for key, fix in _DIAGNOSES if (key == number if isinstance(key, int) else key in lowered)),
        "see the error; fix the state store or point state_url at another one")
    code = f"{number} " if isinstance(number, int) and number >= 1000 else ""
    return f"state store {redact(url)}: {what} ({code}{text[:300]})"
