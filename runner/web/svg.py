"""The SVG of the two charts drawn thousands of marks at a time: the strip of slots (30 cells for each
of every job on the overview) and the durations chart (up to 1,000 runs). Written here rather than in
a template for speed (a template macro per mark costs ten times as much); every text and attribute
value passes `markupsafe.escape`, as the templates' autoescape would."""

from __future__ import annotations

from markupsafe import Markup, escape

from runner import logs
from runner.web.charts import Cell, DurationChart, strip_boxes
from runner.web.words import fmt_seconds, fmt_time


def _line(text: str | None, width: int) -> str:
    one = " ".join(logs.REDACTOR.scrub(text or "").split())
    return one if len(one) <= width else one[: width - 1] + "…"


def cell_title(c: Cell, tz: str) -> str:
    """What a cell says when pointed at: the slot, how it ended, how long, how often it ran, why."""
    when = f"slot {fmt_time(c.slot, tz)}" if c.slot else f"run {fmt_time(c.run.started if c.run else None, tz)}"
    text = f"{when}: {c.status}"
    if c.status == "norecord":
        text += " (no run recorded: no runner was up at the slot's time, or none has looked since)"
    elif c.status == "due":
        text += " (due, not run yet)"
    if c.seconds is not None:
        text += f", {fmt_seconds(c.seconds)}"
    if c.tries > 1:
        text += f", {c.tries} runs of this slot"
    if c.run is not None and c.run.error and c.status != "success":
        text += ": " + _line(c.run.summary, 160)
    return text


def strip(name: str, cells: list[Cell], tz: str, limit: int, width: float = 300, height: float = 28) -> Markup:
    out = [f'<svg class="strip" width="{width:g}" height="{height:g}" viewBox="0 0 {width:g} {height:g}" role="img" '
           f'aria-label="last {limit} slots of {escape(name)}">'
           f'<rect class="strip-bg" x="0" y="0" width="{width:g}" height="{height:g}"/>']
    for b in strip_boxes(cells, limit, width, height):
        c = b.cell
        status = escape(c.status)
        rect = (f'<rect class="cell s-{status}{" tried" if c.tries > 1 else ""}" x="{b.x:.1f}" y="{b.y:.1f}" '
                f'width="{b.w:.1f}" height="{b.h:.1f}" data-status="{status}"><title>{escape(cell_title(c, tz))}'
                "</title></rect>")
        if c.run is not None:
            rect = f'<a href="/runs/{escape(c.run.run_id)}" data-status="{status}">{rect}</a>'
        out.append(rect)
    out.append("</svg>")
    return Markup("".join(out))


def duration_marks(chart: DurationChart, tz: str) -> Markup:
    """The marks of the durations chart: a dot per run that ran, a square on the axis for one that did not."""
    out = []
    for m in chart.marks:
        r = m.run
        status = escape(r.status)
        title = f"{fmt_time(r.started, tz)}: {r.status}" + (f", {fmt_seconds(m.seconds)}" if m.seconds is not None
                                                             else "") + f" ({r.trigger})"
        if m.seconds is None:
            shape = (f'<rect class="mark s-{status}" x="{m.x - 2.5:.1f}" y="{m.y - 5:.1f}" width="5" height="5">'
                     f"<title>{escape(title)}</title></rect>")
        else:
            shape = (f'<circle class="mark s-{status}" cx="{m.x:.1f}" cy="{m.y:.1f}" r="{chart.radius:g}">'
                     f"<title>{escape(title)}</title></circle>")
        out.append(f'<a href="/runs/{escape(r.run_id)}">{shape}</a>')
    return Markup("".join(out))

