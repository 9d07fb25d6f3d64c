"""What the commands print: text tables that fit a terminal of WIDTH columns, and JSON.

A table's columns are as wide as their widest cell; when a row would pass WIDTH, the columns named
flexible give way (longest first), their cells cut with "…". JSON times are ISO 8601 UTC with a Z.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import IO, Any, Sequence

WIDTH = 100
GAP = 2


def fit(rows: Sequence[Sequence[str]], flexible: Sequence[int] = (), width: int = WIDTH,
        floor: int = 8) -> list[str]:
    """The rows as lines of at most `width` characters (as long as the fixed columns leave room)."""
    if not rows:
        return []
    count = len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(count)]
    over = sum(widths) + GAP * (count - 1) - width
    while over > 0:
        shrinkable = sorted((i for i in flexible if widths[i] > floor), key=lambda k: -widths[k])
        if not shrinkable:
            break
        i = shrinkable[0]
        second = widths[shrinkable[1]] if len(shrinkable) > 1 else floor
        step = min(over, widths[i] - max(second, floor)) or 1
        widths[i] -= step
        over -= step
    lines = []
    for r in rows:
        cells = [_cut(c, w) for c, w in zip(r, widths)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    return lines


def _cut(text: str, w: int) -> str:
    return text if len(text) <= w else text[:max(0, w - 1)] + "…"


def write_table(rows: Sequence[Sequence[str]], out: IO[str], flexible: Sequence[int] = ()) -> None:
    for line in fit(rows, flexible):
        out.write(line + "\n")


def iso(value: datetime | None) -> str | None:
    """A time as JSON shows it: 2026-11-30T02:30:00Z (stored times are naive UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)


def write_json(doc: Any, out: IO[str]) -> None:
    out.write(json.dumps(doc, indent=2, default=_default, ensure_ascii=False) + "\n")


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())
