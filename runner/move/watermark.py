"""Watermarks of incremental loads: what is stored in the ledger, what is bound as :watermark.

The ledger keeps, per (job, task), the committed watermark and, while a load is committing, the
value it will advance to ("pending", with its run id). The pending value is written before the
target's COMMIT and promoted after it; when a run dies in between, the next load looks for that
run's exactly-once marker in the target database: present means the rows committed (promote),
absent means they did not (drop). So a retried or failed run never skips or repeats rows.

Stored as JSON text: {"value": {"type": "int", "text": "42"}, "pending": {"run_id": ..., "value": ...}}.
Types: int, decimal, float, text (dates and times are kept as ISO text and bound as text), bytes (hex).
"""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.move.coltypes import SourceColumn
from runner.move.values import temporal_text


@dataclass(frozen=True)
class State:
    value: Any = None  # the committed watermark; None until a load saw a row (or `initial` is used)
    pending_run: str | None = None
    pending_value: Any = None

    def promoted(self) -> "State":
        return State(self.pending_value if self.pending_value is not None else self.value)

    def dropped(self) -> "State":
        return State(self.value)


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
    return State(decode(doc["value"]), pending.get("run_id"), decode(pending.get("value")))


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
