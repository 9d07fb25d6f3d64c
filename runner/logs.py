"""Logging: readable text by default, one JSON object per line with --log-format json.

Every record passes a filter that masks the passwords of the configured databases, so a password
that slips into an error text from a driver never reaches a log, and one that adds the job, run and
task the logging thread is working for (`bound`), so every JSON line of a run says whose it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Iterable, Iterator

_EXTRA = ("job", "run_id", "task", "errno", "attempt", "next_delay", "slot", "trigger", "rows", "event", "target")
_context = threading.local()


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Log records of this thread carry these fields (job, run_id, task) inside the block."""
    saved = dict(getattr(_context, "fields", {}))
    _context.fields = {**saved, **{k: v for k, v in fields.items() if v is not None}}
    try:
        yield
    finally:
        _context.fields = saved


def current() -> dict[str, str]:
    """The fields bound in this thread (to hand to a worker thread)."""
    return dict(getattr(_context, "fields", {}))


class ContextFilter(logging.Filter):
    """Adds the bound job, run_id and task to a record that does not name them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in getattr(_context, "fields", {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class Redactor(logging.Filter):
    """Replaces known secrets in the message and its arguments with ***."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= 3)

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.scrub(record.getMessage())
            record.args = ()
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA:
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_text or record.exc_info:
            doc["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(doc, ensure_ascii=False, default=str)


REDACTOR = Redactor()
CONTEXT = ContextFilter()


def setup(fmt: str = "text", verbosity: int = 0) -> None:
    """Configure the root logger once for this process (stderr)."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CONTEXT)
    handler.addFilter(REDACTOR)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_runner", False):
            root.removeHandler(h)
    handler._runner = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("runner").setLevel(level)
