"""late, recovery and missed alerts from `--due` with the clock injected (no sleeping): a slot that
failed and is still not successful late_after past its time is reported late once; the first
success after it is a recovery; slots missed while nothing ran go out in one message."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner import clock
from tests.fixtures.core import clean_env, run_main, write_project
from tests.notifykit import HttpReceiver
from tests.schedkit import seen_since

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark
FAILING = "SELECT * FROM missing_table"


def _job(sql: str) -> str:
    return ("schedule: '0 2 * * *'\ncatch_up: none\nlate_after: 3h\ndatabase: warehouse\n"
            f"tasks:\n  - name: rollup\n    sql: \"{sql}\"\n")


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch):
    now = [datetime(2026, 11, 20, 2, 0, 5, tzinfo=timezone.utc)]
    monkeypatch.setattr(clock, "now", lambda: now[0])

    def set_(text: str) -> None:
        now[0] = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return set_


def test_late_once_per_slot_then_recovery_then_missed_in_one_message(tmp_path: Path, at) -> None:
    http = HttpReceiver()
    try:
        write_project(tmp_path, {"nightly": _job(FAILING)}, runner=(
            "timezone: UTC\nnotify:\n"
            f"  - url: json://127.0.0.1:{http.port}/hook\n"
            "    on: [failure, late, recovery, missed]\n"))
        titles = lambda: [p["title"] for p in http.json_posts()]  # noqa: E731

        seen_since(f"sqlite:///{tmp_path / 'var' / 'runner-state.db'}", ["nightly"],
                   datetime(2026, 11, 20, 1, 59, tzinfo=timezone.utc))  # deployed just before the slot
        at("2026-11-20T02:00:05")
        assert run_main(tmp_path, "--due")[0] == 1
        assert len(titles()) == 1 and "FAILURE" in titles()[0]

        at("2026-11-20T04:59:00")  # not yet 3h after the slot
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(titles()) == 1

        at("2026-11-20T05:00:30")
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(titles()) == 2 and "LATE" in titles()[1]
        late = http.json_posts()[1]
        assert late["type"] == "warning" and "no successful run 3h after the slot's time" in late["message"]
        assert "2026-11-20 02:00 UTC" in late["message"] and ": failed" in late["message"]
        assert "python -m runner --history --run " in late["message"]

        at("2026-11-20T05:10:00")  # looked at again: raised once per slot
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(titles()) == 2

        (tmp_path / "jobs" / "nightly.yml").write_text(_job("SELECT 1"))
        at("2026-11-21T02:00:05")
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(titles()) == 3 and "RECOVERED" in titles()[2]
        at("2026-11-21T06:00:00")  # a slot that succeeded is never late
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(titles()) == 3

        at("2026-11-24T02:00:05")  # the 22nd and 23rd passed with nothing running
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(titles()) == 4 and "MISSED 2 slot(s)" in titles()[3]
        missed = http.json_posts()[3]["message"]
        assert "2026-11-22 02:00 UTC" in missed and "2026-11-23 02:00 UTC" in missed
    finally:
        http.close()


def test_a_job_that_never_ran_is_not_late(tmp_path: Path, at) -> None:
    http = HttpReceiver()
    try:
        write_project(tmp_path, {"nightly": _job("SELECT 1")}, runner=(
            f"timezone: UTC\nnotify:\n  - url: json://127.0.0.1:{http.port}/hook\n    on: [late]\n"))
        at("2026-11-20T09:00:00")
        assert run_main(tmp_path, "--due")[0] == 0
        assert http.json_posts() == []
    finally:
        http.close()
