"""Watermarks of incremental loads: what is stored in the ledger, what is bound as :watermark.

The ledger keeps, per (job, task), the committed watermark and, while a load is committing, the
value it will advance to ("pending", with its run id). The pending value is written before the
target's COMMIT and promoted after it; when a run dies in between, the next load looks for that
run's exactly-once marker in the target database: present means the rows committed (promote),
absent means they did not (drop). So a retried or failed run never skips or repeats rows.

Stored as JSON text: {"value": {"type": "int", "text": "42"}, "pending": {"run_id": ..., "value": ...},
"by": RUN_ID, "at": "2026-11-30T02:31:07Z"}, `by` and `at` naming the run that last advanced the value
and when (absent for a value set by hand, whose change the ledger records on its own).
Types: int, decimal, float, text (dates and times are kept as ISO text and bound as text), bytes (hex).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Mapping

import sqlalchemy as sa

from runner import clock
from runner.model import Job, Task
from runner.move.coltypes import SourceColumn
from runner.move.values import temporal_text


@dataclass(frozen=True)
class State:
    value: Any = None  # the committed watermark; None until a load saw a row (or `initial` is used)
    pending_run: str | None = None
    pending_value: Any = None
    by: str | None = None  # the run that last advanced the value
    at: str | None = None  # when it did (ISO 8601 UTC)

    def promoted(self, at: str | None = None) -> "State":
        """The pending value committed (its run's marker says so)."""
        if self.pending_value is None or self.pending_value == self.value:
            return self.dropped()
        return State(self.pending_value, by=self.pending_run, at=at)

    def dropped(self) -> "State":
        return State(self.value, by=self.by, at=self.at)

    def advanced(self, value: Any, run_id: str, at: str) -> "State":
        """After a load of run `run_id` committed with `value` as its watermark."""
        return State(value, by=run_id, at=at) if value != self.value else self.dropped()

    def pending(self, run_id: str, value: Any) -> "State":
        return State(self.value, run_id, value, self.by, self.at)


def encode(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return {"type": "int", "text": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "text": format(value, "f")}
    if isinstance(value, float):
        return {"type": "float", "text": repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "bytes", "text": bytes(value).hex()}
    return {"type": "text", "text": str(temporal_text(value))}


_DECODE = {"int": int, "decimal": decimal.Decimal, "float": float, "text": str, "bytes": bytes.fromhex}


def decode(doc: dict[str, str] | None) -> Any:
    if not doc:
        return None
    return _DECODE[doc["type"]](doc["text"])


def dumps(state: State) -> str:
    doc: dict[str, Any] = {"value": encode(state.value)}
    if state.pending_run is not None:
        doc["pending"] = {"run_id": state.pending_run, "value": encode(state.pending_value)}
    if state.by is not None:
        doc["by"] = state.by
    if state.at is not None:
        doc["at"] = state.at
    return json.dumps(doc, sort_keys=True)


def loads(text: str | None) -> State:
    """The stored state; a value that is not our JSON (set by hand) is taken as a text watermark."""
    if text is None or text == "":
        return State()
    try:
        doc = json.loads(text)
    except ValueError:
        return State(text)
    if not isinstance(doc, dict) or "value" not in doc:
        return State(text)
    pending = doc.get("pending") or {}
    return State(decode(doc["value"]), pending.get("run_id"), decode(pending.get("value")), doc.get("by"),
                 doc.get("at"))


def _key(value: Any) -> tuple[int, Any]:
    """Order values of one column whatever form they arrive in (driver objects or stored text)."""
    doc = encode(value)
    assert doc is not None
    if doc["type"] in ("int", "decimal", "float"):
        return 0, decimal.Decimal(doc["text"])
    return 1, doc["text"]


def later(current: Any, seen: Any) -> Any:
    """The watermark after a load that saw `seen` as its highest value; it never moves back."""
    if seen is None:
        return current
    if current is None:
        return seen
    try:
        return seen if _key(seen) > _key(current) else current
    except (TypeError, decimal.InvalidOperation):
        return seen


def sentinel(column: SourceColumn | None, dialect: str) -> Any:
    """A value below every value of the column, bound as :watermark on the first run (no `initial`),
    so that `WHERE col > :watermark` loads everything. SQLite orders every number and text above -inf."""
    if dialect == "sqlite" or column is None:
        return float("-inf")
    if column.kind in ("int", "decimal", "float", "bit"):
        return -1e308
    if column.kind == "temporal":
        if isinstance(column.type, sa.Time):
            return "-838:59:59"
        if isinstance(column.type, sa.DateTime):
            return "0001-01-01 00:00:00"
        return "0001-01-01"
    if column.kind == "binary":
        return b""
    return ""


def bind_value(state: State, initial: Any, low: Any) -> Any:
    """What :watermark is on this run: the committed watermark, else `initial`, else the sentinel."""
    if state.value is not None:
        return state.value
    if initial is not None:
        return decode(encode(initial))
    return low


def now_text() -> str:
    """This moment as a watermark records it: ISO 8601 UTC with a Z."""
    return clock.now().astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(state: State, initial: Any) -> tuple[Any, str]:
    """(what :watermark binds on the next run, where it comes from), for --dry-run and --watermarks."""
    if state.value is not None:
        origin = f" (advanced {state.at.replace('T', ' ')} by run {state.by[:8]})" if state.by and state.at else \
            " (stored)"
        pending = f"; run {state.pending_run[:8]} was committing {state.pending_value!r}" if state.pending_run else ""
        return state.value, f"{state.value!r}{origin}{pending}"
    if initial is not None:
        value = decode(encode(initial))
        return value, f"{value!r} (initial: nothing loaded yet)"
    return None, "none yet: the first load reads every row (a value below every value of the column)"


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
_TIME = re.compile(r"^-?\d{1,3}:\d{2}:\d{2}(\.\d{1,6})?$")
_INT = re.compile(r"^[+-]?[0-9]+$")


def kind_of_value(value: Any) -> tuple[str, str]:
    """(kind, temporal shape) of a known watermark value, when the source cannot say its column's type."""
    if isinstance(value, bool) or isinstance(value, int):
        return "int", ""
    if isinstance(value, decimal.Decimal):
        return "decimal", ""
    if isinstance(value, float):
        return "float", ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary", ""
    if isinstance(value, dt.datetime):
        return "temporal", "datetime"
    if isinstance(value, dt.date):
        return "temporal", "date"
    text = str(value)
    for shape, pattern in (("date", _DATE), ("datetime", _DATETIME), ("time", _TIME)):
        if pattern.match(text):
            return "temporal", shape
    return "text", ""


def shape_of(column: SourceColumn) -> str:
    if isinstance(column.type, sa.DateTime):
        return "datetime"
    if isinstance(column.type, sa.Time):
        return "time"
    return "date" if isinstance(column.type, sa.Date) else ""


def parse_as(text: str, kind: str, shape: str = "") -> Any:
    """A watermark typed by hand, as a value of a column of `kind` (coltypes.KINDS) and temporal `shape`
    (date, datetime, time); ValueError saying what such a column holds."""
    t = text.strip()
    if kind in ("int", "bit"):
        if not _INT.match(t) or len(t) > 21 or not -(2 ** 63) <= int(t) < 2 ** 64:  # no integer column holds more
            raise ValueError("a whole number of at most 64 bits, e.g. 41230")
        return int(t)
    if kind in ("decimal", "float"):
        try:
            number = decimal.Decimal(t)
        except decimal.InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise ValueError("a number, e.g. 1520.75")
        return number if kind == "decimal" else float(t)
    if kind == "temporal":
        try:
            if shape == "date" and _DATE.match(t):
                return dt.date.fromisoformat(t)
            if shape == "time" and _TIME.match(t):
                return t
            if shape in ("datetime", "") and (_DATETIME.match(t) or _DATE.match(t)):
                return dt.datetime.fromisoformat(t)
        except ValueError:
            pass
        example = {"date": "2024-05-01", "time": "13:45:00"}.get(shape, "2024-05-01 13:45:00")
        name = {"date": "date", "time": "time"}.get(shape, "date and time")
        raise ValueError(f"a {name} written as {example}")
    if kind == "binary":
        try:
            return bytes.fromhex(t)
        except ValueError:
            raise ValueError("bytes written in hex, e.g. 00ff10") from None
    return text


# ---------------------------------------------------------------------------------------------- listing

def incremental_tasks(job: Job) -> list[Task]:
    return [t for t in job.tasks if t.load is not None and t.load.incremental is not None]


def shown(value: Any) -> str:
    """A watermark value as an operator reads it (dates as ISO text, bytes as hex)."""
    if value is None:
        return "-"
    value = temporal_text(value)
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


def listed(jobs: Mapping[str, Job], kept: Mapping[tuple[str, str], Any],
           changed: Mapping[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """Every incremental load of `jobs`, and every stored watermark besides, as `--watermarks` and the
    web show them: value and type, when it last advanced and by which run, or who set it by hand, the
    value a run is committing. `kept`: state.watermarks.stored; `changed`: its last_changes."""
    keys = [(j.name, t.name) for j in sorted(jobs.values(), key=lambda j: j.name) for t in incremental_tasks(j)]
    keys += sorted(k for k in kept if k not in keys)
    docs = []
    for key in keys:
        job = jobs.get(key[0])
        task = next((t for t in incremental_tasks(job) if t.name == key[1]), None) if job else None
        row = kept.get(key)
        state = loads(row.text if row else None)
        change = changed.get(key)
        by_hand = change is not None and (state.by is None or (state.at or "") < (clock.iso(change.at) or ""))
        incremental = task.load.incremental if task and task.load else None
        docs.append({
            "job": key[0], "task": key[1], "value": shown(state.value) if state.value is not None else None,
            "type": (encode(state.value) or {}).get("type"),
            "updated": clock.iso(change.at) if by_hand else (state.at or (clock.iso(row.updated) if row else None)),
            "run_id": None if by_hand else state.by,
            "changed_by": change.by if by_hand else None, "action": change.action if by_hand else None,
            "pending_run": state.pending_run,
            "pending_value": shown(state.pending_value) if state.pending_run else None,
            "column": incremental.column if incremental else None,
            "initial": shown(incremental.initial) if incremental and incremental.initial is not None else None,
            "in_job_files": task is not None,
        })
    return docs
