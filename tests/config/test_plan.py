"""Planning decisions from tables: parameters, task order, cycles, --from-task, dates. No I/O, no sleep."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from runner import clock
from runner.cli.commands import today_in
from runner.errors import UsageError
from runner.model import Job, Statement, Task

from runner.config.plan import (SCHEDULED_FIX, find_cycle, from_task, missing_params, order_tasks, parse_dates, parse_params, resolve_params, unknown_placeholders, unset_params)


def _tasks(spec: str) -> list[Task]:
    """'a b:a c:a,b' -> tasks a, b (after a), c (after a and b), in that YAML order."""
    out = []
    for item in spec.split():
        name, _, deps = item.partition(":")
        out.append(Task(name, "warehouse", depends_on=tuple(d for d in deps.split(",") if d)))
    return out


def _job(params: dict[str, object] | None = None, tz: str = "UTC") -> Job:
    return Job(name="nightly", file="jobs/nightly.yml", tasks=(), timezone=tz, params=params or {})


# ------------------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("params, run_date, cli, expected", [
    ({}, date(2026, 11, 21), {}, {"run_date": "2026-11-21", "yesterday": "2026-11-20"}),
    ({}, date(2026, 1, 1), {}, {"run_date": "2026-01-01", "yesterday": "2025-12-31"}),
    ({}, date(2024, 3, 1), {}, {"yesterday": "2024-02-29"}),  # leap year
    ({}, date(2026, 3, 1), {}, {"yesterday": "2026-02-28"}),
    ({"day": "{yesterday}"}, date(2026, 11, 21), {}, {"day": "2026-11-20"}),
    ({"day": "{run_date}", "label": "run of {job} on {run_date}"}, date(2026, 11, 21), {},
     {"day": "2026-11-21", "label": "run of nightly on 2026-11-21"}),
    ({"region": "north"}, date(2026, 11, 21), {}, {"region": "north"}),
    # --param wins over the job's params, and may use built-ins as well
    ({"day": "{yesterday}"}, date(2026, 11, 21), {"day": "2026-01-05"}, {"day": "2026-01-05"}),
    ({"day": "{yesterday}"}, date(2026, 11, 21), {"day": "{run_date}"}, {"day": "2026-11-21"}),
    ({}, date(2026, 11, 21), {"extra": "x=y"}, {"extra": "x=y"}),
    # a job param may override a built-in name; values of other params still see the built-in
    ({"run_date": "2020-01-01", "day": "{run_date}"}, date(2026, 11, 21), {},
     {"run_date": "2020-01-01", "day": "2026-11-21"}),
    # YAML types are kept (LIMIT :n needs the number 2, not the text '2'); only text is filled
    ({"n": 2, "ratio": 0.5, "flag": True, "none": None, "since": date(2026, 1, 5), "tag": "{job}"},
     date(2026, 11, 21), {},
     {"n": 2, "ratio": 0.5, "flag": True, "none": None, "since": date(2026, 1, 5), "tag": "nightly"}),
    # --param values are typed as YAML types them: numbers (decimals exactly as written), dates, null ...
    ({"n": 2}, date(2026, 11, 21), {"n": "3"}, {"n": 3}),
    ({}, date(2026, 11, 21), {"d": "0.06", "big": "12345678901234567890.01", "off": "false", "no": "null"},
     {"d": Decimal("0.06"), "big": Decimal("12345678901234567890.01"), "off": False, "no": None}),
    ({}, date(2026, 11, 21), {"since": "2026-01-05", "at": "12:30", "word": "abc", "empty": ""},
     {"since": date(2026, 1, 5), "at": "12:30", "word": "abc", "empty": ""}),
    # ... except when quoted, or when the job's own value is text (its declared type)
    ({}, date(2026, 11, 21), {"n": "'3'", "m": '"0.06"'}, {"n": "3", "m": "0.06"}),
    ({"code": "{run_date}"}, date(2026, 11, 21), {"code": "007"}, {"code": "007"}),
])
def test_resolve_params(params: dict[str, object], run_date: date, cli: dict[str, str],
                        expected: dict[str, object]) -> None:
    got = resolve_params(_job(params), run_date, cli, run_id="r1")
    assert {k: got[k] for k in expected} == expected
    assert {k: type(got[k]) for k in expected} == {k: type(v) for k, v in expected.items()}
    assert got["run_id"] == "r1"


@pytest.mark.parametrize("params, cli, fragment", [
    ({"day": "{yesterdy}"}, {}, "jobs/nightly.yml params.day: unknown placeholder {yesterdy} (built-ins: run_date, "),
    ({}, {"day": "{today}"}, "jobs/nightly.yml --param.day: unknown placeholder {today}"),
])
def test_unknown_placeholder_names_where_and_the_builtins(params: dict[str, str], cli: dict[str, str],
                                                          fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_params(_job(params), date(2026, 11, 21), cli)
    assert fragment in str(info.value)


@pytest.mark.parametrize("params, unknown", [
    ({}, []),
    ({"day": "{yesterday}", "n": 2, "none": None}, []),
    ({"day": "{yesterdy}"}, [("day", "yesterdy")]),
    ({"a": "{x}-{job}-{y}", "b": "{today}"}, [("a", "x"), ("a", "y"), ("b", "today")]),
    ({"region": "north", "day": "{region}"}, [("day", "region")]),  # a param is not a built-in
])
def test_unknown_placeholders(params: dict[str, object], unknown: list[tuple[str, str]]) -> None:
    got = unknown_placeholders(_job(params))
    assert [(key, name) for key, name, _ in got] == unknown
    assert all(builtins == ["run_date", "yesterday", "tomorrow", "job", "run_id"] for _, _, builtins in got)


@pytest.mark.parametrize("sql, params, unset", [
    ("SELECT :run_date, :yesterday, :tomorrow, :job, :run_id", {}, []),
    ("SELECT :day, :n", {"day": "{run_date}", "n": 0}, []),
    ("SELECT :none", {"none": None}, []),  # set to NULL is set
    ("SELECT :day, :region", {"day": "x"}, ["region"]),
])
def test_unset_params(sql: str, params: dict[str, object], unset: list[str]) -> None:
    task = Task("t", "warehouse", statements=(Statement(sql, "jobs/nightly.yml", 7),))
    got = unset_params(_job(params), [task])
    assert [m.name for m in got] == unset
    assert [str(m.problem(SCHEDULED_FIX)) for m in got] == [
        f"jobs/nightly.yml:7 [task t]: statement uses :{name} but no parameter {name} is set: add it to params in "
        "the job (a scheduled run has no --param)" for name in unset]


@pytest.mark.parametrize("now, tz, run_date", [
    (datetime(2026, 11, 20, 17, 30, tzinfo=timezone.utc), "UTC", date(2026, 11, 20)),
    (datetime(2026, 11, 20, 17, 30, tzinfo=timezone.utc), "Asia/Shanghai", date(2026, 11, 21)),
    (datetime(2026, 11, 20, 15, 59, tzinfo=timezone.utc), "Asia/Shanghai", date(2026, 11, 20)),
    (datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc), "America/Los_Angeles", date(2026, 11, 20)),
    (datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc), "America/Los_Angeles", date(2026, 11, 21)),
    (datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc), "Europe/Berlin", date(2026, 3, 29)),
])
def test_run_date_is_today_in_the_jobs_timezone(monkeypatch: pytest.MonkeyPatch, now: datetime, tz: str,
                                               run_date: date) -> None:
    monkeypatch.setattr(clock, "now", lambda: now)
    assert today_in(tz) == run_date
    yesterday = resolve_params(_job({"day": "{yesterday}"}, tz), today_in(tz), {})["day"]
    assert yesterday == date.fromordinal(run_date.toordinal() - 1).isoformat()


@pytest.mark.parametrize("pairs, expected", [
    ([], {}),
    (["day=2026-11-01"], {"day": "2026-11-01"}),
    (["a=1", "b=2", "a=3"], {"a": "3", "b": "2"}),
    (["expr=x=y"], {"expr": "x=y"}),
    (["empty="], {"empty": ""}),
    (["_private=1"], {"_private": "1"}),
    (["note=two words"], {"note": "two words"}),
])
def test_parse_params(pairs: list[str], expected: dict[str, str]) -> None:
    assert parse_params(pairs) == expected


@pytest.mark.parametrize("pair", ["day", "=1", "1day=2", "a b=1", "a-b=1", "", "day:2026-11-01"])
def test_malformed_param(pair: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_params(["ok=1", pair])
    assert str(info.value) == (f"malformed --param {pair!r}: write --param KEY=VALUE, KEY made of letters, "
                               "digits and _")
    assert info.value.exit_code == 2


def _stmt(sql: str) -> Statement:
    return Statement(sql, "jobs/nightly.yml", 7)


@pytest.mark.parametrize("sql, params, missing", [
    ("SELECT :day", {"day": "x"}, []),
    ("SELECT :day, :region", {"day": "x"}, ["region"]),
    ("SELECT ':region', '10:30' -- :note", {}, []),
])
def test_missing_params(sql: str, params: dict[str, str], missing: list[str]) -> None:
    task = Task("t", "warehouse", statements=(_stmt(sql),))
    got = missing_params([task], params)
    assert [m.name for m in got] == missing
    assert all(m.where == "jobs/nightly.yml:7" and m.task == "t" for m in got)


# ------------------------------------------------------------------------------------- task order

@pytest.mark.parametrize("spec, order", [
    ("a", "a"),
    ("a b c", "a b c"),
    ("c b a", "c b a"),  # independent tasks keep the YAML order
    ("a:b b", "b a"),
    ("report:rollup rollup:load load", "load rollup report"),
    ("a b:a c:a d:b,c", "a b c d"),
    ("a d:b,c c:a b:a", "a c b d"),  # c and b are ready together: YAML order (c before b)
    ("x y:x z", "x z y"),  # z is ready at once, y only after x
    ("b:a a c:b", "a b c"),
    ("a:ghost b", "b a"),  # an unknown name (rejected by validation) never appears in the plan
])
def test_order_tasks(spec: str, order: str) -> None:
    assert [t.name for t in order_tasks(_tasks(spec))] == order.split()


@pytest.mark.parametrize("spec, cycle", [
    ("a b:a", []),
    ("a:a", ["a", "a"]),
    ("a:b b:a", ["a", "b", "a"]),
    ("a:c b:a c:b", ["a", "c", "b", "a"]),
    ("ok x:z y:x z:y", ["x", "z", "y", "x"]),
    ("a:ghost", []),  # unknown names are reported separately, not as a cycle
])
def test_find_cycle(spec: str, cycle: list[str]) -> None:
    got = find_cycle(_tasks(spec))
    if not cycle:
        assert got == []
        return
    # The same cycle, whichever task it starts from.
    assert got[0] == got[-1] and len(got) == len(cycle)
    start = cycle.index(got[0])
    assert got[:-1] == cycle[start:-1] + cycle[:start]


@pytest.mark.parametrize("spec, start, selected", [
    ("a b:a c:b", None, "a b c"),
    ("a b:a c:b", "a", "a b c"),
    ("a b:a c:b", "b", "b c"),
    ("a b:a c:b", "c", "c"),
    ("load rollup:load report:rollup", "rollup", "rollup report"),
    ("a b c:a", "b", "b c"),  # plan order is a b c: what follows b includes c
])
def test_from_task(spec: str, start: str | None, selected: str) -> None:
    assert [t.name for t in from_task(order_tasks(_tasks(spec)), start)] == selected.split()


def test_unknown_from_task_lists_the_tasks_in_order() -> None:
    with pytest.raises(UsageError) as info:
        from_task(order_tasks(_tasks("report:rollup rollup")), "rolup")
    assert str(info.value) == "unknown task 'rolup' for --from-task (tasks in order: rollup, report)"
    assert info.value.exit_code == 2


# ------------------------------------------------------------------------------------- dates

@pytest.mark.parametrize("text, days", [
    ("2026-11-01", ["2026-11-01"]),
    ("2026-11-01..2026-11-01", ["2026-11-01"]),
    ("2026-11-01..2026-11-03", ["2026-11-01", "2026-11-02", "2026-11-03"]),
    ("2026-10-30..2026-11-02", ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]),
    ("2024-02-28..2024-03-01", ["2024-02-28", "2024-02-29", "2024-03-01"]),
    ("2025-12-31..2026-01-01", ["2025-12-31", "2026-01-01"]),
])
def test_parse_dates(text: str, days: list[str]) -> None:
    assert [d.isoformat() for d in parse_dates(text)] == days


@pytest.mark.parametrize("text, message", [
    ("2026-13-01", "malformed --date '2026-13-01': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("2026-02-30", "malformed --date '2026-02-30': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("2026/11/01", "malformed --date '2026/11/01': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("yesterday", "malformed --date 'yesterday': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("", "malformed --date '': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("2026-11-01..", "malformed --date '2026-11-01..': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("..2026-11-01", "malformed --date '..2026-11-01': write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"),
    ("2026-11-01...2026-11-03", "malformed --date '2026-11-01...2026-11-03'"),
    ("2026-11-01..2026-11-03..2026-11-05", "malformed --date"),
    ("2026-11-07..2026-11-01", "--date '2026-11-07..2026-11-01' ends before it starts: write the earlier date first"),
    ("2000-01-01..2026-01-01", "--date '2000-01-01..2026-01-01' spans 9498 days; at most 3660 per run"),
])
def test_malformed_dates(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_dates(text)
    assert str(info.value).startswith(message)
    assert info.value.exit_code == 2
