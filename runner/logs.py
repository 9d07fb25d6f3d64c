"""Logging: readable text by default, one JSON object per line with --log-format json.

Every record passes a filter that masks the passwords of the configured databases, so a password
that slips into an error text from a driver never reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Iterable

_EXTRA = ("job", "task", "errno", "attempt", "next_delay", "run_id", "slot", "trigger", "rows")


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


def setup(fmt: str = "text", verbosity: int = 0) -> None:
    """Configure the root logger once for this process (stderr)."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
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
