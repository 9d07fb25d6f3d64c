"""The pure parts of the web, from tables: the strip of slots, chart scales and ticks, the Gantt chart,
schedules in words, durations, listen addresses and the query values the pages and API accept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runner.config.checks import parse_listen
from runner.web.charts import duration_chart, duration_ticks, gantt, run_cells, slot_cells, strip_boxes, time_ticks
from runner.web.records import Attempt, Run
from runner.web.site import HTTPError, parse_limit, parse_since, parse_status
from runner.web.words import fmt_seconds, schedule_words

UTC = timezone.utc
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def run(slot_min: int | None, status: str, seconds: float | None = 10.0, started_min: float | None = None,
        run_id: str | None = None) -> Run:
    """A run of the slot `slot_min` minutes before NOW, started at it (or `started_min` before NOW)."""
    slot = NOW - timedelta(minutes=slot_min) if slot_min is not None else None
    started = NOW - timedelta(minutes=started_min if started_min is not None else slot_min or 0)
    ended = started + timedelta(seconds=seconds) if seconds is not None else None
    return Run(run_id or f"{status}{slot_min}{started_min}", "j", "2026-11-02", slot, "daemon", "h", 1, started,
               ended, status, 1, 0, None)


def mins(*values: int) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in values]


@pytest.mark.parametrize("runs, expected, statuses", [
    # every slot recorded: one cell each, oldest first
    ([run(3, "success"), run(2, "failed"), run(1, "success")], mins(3, 2, 1), ["success", "failed", "success"]),
    # missed and abandoned slots keep their cells
    ([run(4, "success"), run(3, "missed", None), run(2, "abandoned", 5.0), run(1, "success")], mins(4, 3, 2, 1),
     ["success", "missed", "abandoned", "success"]),
    # a slot of the schedule with no run recorded is not a blank: norecord; a very young one is only due
    ([run(10, "success")], mins(10, 5, 1), ["success", "norecord", "due"]),
    # a slot run twice (failed, then its re-run) shows the latest run
    ([run(2, "failed", started_min=2), run(2, "success", started_min=1.5)], mins(2), ["success"]),
    # runs without a slot (by hand) are not slots
    ([run(None, "success", started_min=3), run(2, "success")], mins(2), ["success"]),
    # expected slots in the future are not shown
    ([run(1, "success")], [*mins(1), NOW + timedelta(minutes=1)], ["success"]),
])
def test_slot_cells(runs: list[Run], expected: list[datetime], statuses: list[str]) -> None:
    assert [c.status for c in slot_cells(runs, expected, NOW)] == statuses


def test_slot_cells_keep_the_newest_slots_and_count_the_runs_of_each() -> None:
    runs = [run(m, "success") for m in range(40, 0, -1)] + [run(5, "failed", started_min=5.5)]
    cells = slot_cells(runs, [], NOW, limit=30)
    assert len(cells) == 30
    assert cells[0].slot == NOW - timedelta(minutes=30) and cells[-1].slot == NOW - timedelta(minutes=1)
    five = next(c for c in cells if c.slot == NOW - timedelta(minutes=5))
    assert (five.status, five.tries, five.earlier_failed) == ("success", 2, True)


def test_run_cells_of_a_job_without_schedule_are_its_latest_runs() -> None:
    runs = [run(None, "success", started_min=m, run_id=str(m)) for m in range(50, 0, -1)]
    cells = run_cells(runs, NOW, 30)
    assert [c.run.run_id for c in cells if c.run] == [str(m) for m in range(30, 0, -1)]


def test_strip_heights_follow_durations_and_what_never_ran_stands_full_height() -> None:
    cells = slot_cells([run(4, "success", 10.0), run(3, "failed", 40.0), run(2, "missed", None),
                        run(1, "running", None)], [], NOW)
    boxes = strip_boxes(cells, limit=30, width=300, height=28)
    by = {b.cell.status: b for b in boxes}
    assert by["running"].h == 28  # running for a minute so far: the longest
    assert by["failed"].h == pytest.approx(28 * 40 / 60)
    assert by["success"].h == pytest.approx(28 * 10 / 60)
    assert by["missed"].h == 28 and by["missed"].y == 0
    assert [b.x for b in boxes] == [260.0, 270.0, 280.0, 290.0]  # right-aligned: the newest at the edge
    assert all(b.y + b.h == 28 for b in boxes)  # standing on the baseline


def test_a_very_short_run_is_still_visible() -> None:
    boxes = strip_boxes(slot_cells([run(2, "success", 0.001), run(1, "success", 1000.0)], [], NOW))
    assert min(b.h for b in boxes) >= 3.0


@pytest.mark.parametrize("longest, top, labels", [
    (0.004, 0.004, ["0", "1ms", "2ms", "3ms", "4ms"]),
    (7.0, 8.0, ["0", "2.00s", "4.00s", "6.00s", "8.00s"]),
    (95.0, 120.0, ["0", "30.0s", "1m 00s", "1m 30s", "2m 00s"]),
    (5000.0, 5400.0, ["0", "30m 00s", "1h 00m", "1h 30m"]),
])
def test_duration_ticks(longest: float, top: float, labels: list[str]) -> None:
    got_top, ticks = duration_ticks(longest)
    assert got_top == pytest.approx(top) and [label for _, label in ticks] == labels


@pytest.mark.parametrize("lo, hi, tz, labels", [
    ("2026-11-02T08:00:00", "2026-11-02T11:00:00", "UTC", ["08:00", "08:30", "09:00", "09:30", "10:00", "10:30",
                                                          "11:00"]),
    ("2026-11-01T00:00:00", "2026-11-05T00:00:00", "UTC", ["11-01", "11-02", "11-03", "11-04", "11-05"]),
    # days stay at local midnight across the end of daylight saving time in Berlin
    ("2026-10-23T22:00:00", "2026-10-27T22:00:00", "Europe/Berlin", ["10-24", "10-25", "10-26", "10-27"]),
    ("2026-11-02T03:00:00", "2026-11-02T06:00:00", "Asia/Shanghai", ["11:00", "11:30", "12:00", "12:30", "13:00",
                                                                    "13:30", "14:00"]),
])
def test_time_ticks(lo: str, hi: str, tz: str, labels: list[str]) -> None:
    ticks = time_ticks(datetime.fromisoformat(lo).replace(tzinfo=UTC), datetime.fromisoformat(hi).replace(tzinfo=UTC),
                       tz)
    assert [label for _, label in ticks] == labels


def test_the_durations_chart_stays_inside_its_frame_with_a_thousand_runs() -> None:
    runs = [run(None, "failed" if i % 97 == 0 else "success", 30 + (i % 17), started_min=1000 - i, run_id=str(i))
            for i in range(1000)]
    runs.append(run(None, "missed", None, started_min=500, run_id="missed"))
    chart = duration_chart(runs, "UTC", NOW)
    assert len(chart.marks) == 1001
    assert all(chart.left <= m.x <= chart.width and 0 <= m.y <= chart.height - chart.bottom for m in chart.marks)
    missed = next(m for m in chart.marks if m.run.run_id == "missed")
    assert missed.seconds is None and missed.y == chart.height - chart.bottom  # on the time axis
    assert 3 <= len(chart.x_ticks) <= 8 and 2 <= len(chart.y_ticks) <= 6


def attempt(task: str, n: int, start: float, end: float | None, status: str) -> Attempt:
    base = NOW - timedelta(seconds=100)
    return Attempt("r", task, n, base + timedelta(seconds=start),
                   base + timedelta(seconds=end) if end is not None else None, status, None, None, None)


def test_gantt_has_one_bar_per_attempt_and_the_waits_between_them() -> None:
    tries = [attempt("load", 1, 0, 10, "retrying"), attempt("load", 2, 12, 20, "retrying"),
             attempt("load", 3, 24, 50, "success"), attempt("report", 1, 50, 100, "success"),
             attempt("extract", 1, 1, 5, "success")]
    g = gantt(tries, NOW - timedelta(seconds=100), NOW, NOW, width=1000, label_width=200)
    assert [r.task for r in g.rows] == ["load", "extract", "report"]  # in the order they first started
    load = g.rows[0]
    assert [s.attempt.attempt for s in load.spans] == [1, 2, 3]
    assert [w.seconds for w in load.waits] == [2.0, 4.0]
    assert load.spans[0].x == pytest.approx(200)
    assert load.spans[-1].x + load.spans[-1].w == pytest.approx(200 + 792 * 0.5)
    assert g.rows[-1].spans[0].x + g.rows[-1].spans[0].w == pytest.approx(992)
    assert load.waits[0].x1 == pytest.approx(load.spans[0].x + load.spans[0].w)
    assert load.waits[0].x2 == pytest.approx(load.spans[1].x)


def test_gantt_of_200_tasks_gives_every_task_its_own_row() -> None:
    tries = [attempt(f"task_{i:03d}", 1, i * 0.5, i * 0.5 + 0.4, "success") for i in range(200)]
    g = gantt(tries, NOW - timedelta(seconds=100), None, NOW)
    ys = [r.y for r in g.rows]
    assert len(ys) == 200 and all(b - a >= 14 for a, b in zip(ys, ys[1:]))
    assert all(s.w >= 1 for r in g.rows for s in r.spans)  # a short attempt is still a visible bar


def test_a_running_attempt_reaches_now() -> None:
    g = gantt([attempt("t", 1, 0, None, "running")], NOW - timedelta(seconds=100), None, NOW, width=1000,
              label_width=200)
    span = g.rows[0].spans[0]
    assert span.x + span.w == pytest.approx(992) and span.seconds == 100


@pytest.mark.parametrize("expr, words", [
    ("30 2 * * *", "At 02:30"),
    ("*/10 * * * * *", "Every 10 seconds"),
    ("0 0 * * 0", "At 00:00, only on Sunday"),
    ("0 9 1 * 1-5", "At 09:00, on day 1 of the month, Monday through Friday (either day matches, as in cron)"),
    (None, "manual only"),
])
def test_schedule_words(expr: str | None, words: str) -> None:
    assert schedule_words(expr) == words


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0.0042, "4ms"), (0.42, "420ms"), (9.994, "9.99s"), (12.34, "12.3s"), (185, "3m 05s"),
    (7260, "2h 01m"), (90000, "1d 01h"), (-3, "0ms"),
])
def test_fmt_seconds(seconds: float | None, text: str) -> None:
    assert fmt_seconds(seconds) == text


@pytest.mark.parametrize("text, parsed", [
    ("127.0.0.1:8765", ("127.0.0.1", 8765)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8765", ("::1", 8765)),
    ("8765", ("127.0.0.1", 8765)), (":9000", ("127.0.0.1", 9000)), ("localhost:1", ("localhost", 1)),
    ("host", None), ("1.2.3.4:99999", None), ("::1:80", None), ("a b:1", None), ("x:", None), ("127.0.0.1:0", None),
])
def test_parse_listen(text: str, parsed: tuple[str, int] | None) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text, since", [
    (None, None),
    ("7d", NOW - timedelta(days=7)),
    ("36h", NOW - timedelta(hours=36)),
    ("1h30m", NOW - timedelta(minutes=90)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T08:00:00+08:00", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
])
def test_parse_since(text: str | None, since: datetime | None) -> None:
    assert parse_since(text, NOW) == since


@pytest.mark.parametrize("bad", ["yesterday", "7 days", "-1d", "2026-13-01", "1e5", "99999999999999d"])
def test_parse_since_refuses_what_it_cannot_read(bad: str) -> None:
    with pytest.raises(HTTPError) as exc:  # a duration past 3650d is refused as --since refuses it
        parse_since(bad, NOW)
    assert exc.value.status == 400 and "7d" in exc.value.message and "at most 3650d" in exc.value.message


@pytest.mark.parametrize("text, ok", [("1", 1), ("1000", 1000), ("0", None), ("1001", None), ("-5", None),
                                      ("ten", None), (None, 100)])
def test_parse_limit(text: str | None, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(HTTPError):
            parse_limit(text, 100)
    else:
        assert parse_limit(text, 100) == ok


def test_parse_status() -> None:
    assert parse_status("failed") == "failed" and parse_status(None) is None
    with pytest.raises(HTTPError) as exc:
        parse_status("FAILED")
    assert "success, failed" in exc.value.message


def test_a_runs_statement_and_summary_come_from_its_failure_message() -> None:
    text = ("job j: task t failed\n  statement: jobs/j.yml:12: INSERT INTO x\n  database: wh (sqlite://)\n"
            "  error: 1146 Table 'x' doesn't exist (data, schema, syntax or permission error)\n")
    r = Run("r", "j", "d", None, "manual", "h", 1, NOW, NOW, "failed", 1, 0, text)
    assert r.statement == "jobs/j.yml:12"
    assert r.summary == "1146 Table 'x' doesn't exist (data, schema, syntax or permission error)"
