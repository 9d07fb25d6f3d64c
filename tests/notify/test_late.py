"""late, recovery and missed alerts from `--due` with the clock injected (no sleeping): a slot that
failed and is still not successful late_after past its time is reported late once; the first
success after it is a recovery; slots missed while nothing ran go out in one message."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner import clock
from runner.run.executor import new_run_id
from runner.state.slots import SlotLedger
from tests.fixtures.core import clean_env, run_main, write_project
from tests.notifykit import HttpReceiver
from tests.schedkit import SchedProject, seen_since, stop, wait_for
from tests.schedule.test_due import two_hours_ago

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


def test_the_daemons_look_raises_late_once_per_slot_also_after_a_restart(tmp_path: Path) -> None:
    """A real daemon: its start-up look finds the daily slot two hours old whose run failed (recorded
    by an earlier process) and raises one `late`; a restarted daemon raises none again."""
    http = HttpReceiver()
    try:
        expr, slot = two_hours_ago()
        p = SchedProject(tmp_path, {"warehouse": "sqlite:///var/wh.db"}, settings={"notify": [
            {"url": f"json://127.0.0.1:{http.port}/hook", "on": ["late"]}]})
        p.job("nightly", {"schedule": expr, "late_after": "1h", "database": "warehouse",
                          "tasks": [{"name": "one", "sql": "SELECT 1"}]})
        url = f"sqlite:///{tmp_path / 'var' / 'state.db'}"
        seen_since(url, ["nightly"], slot - timedelta(minutes=1))
        ledger = SlotLedger(url)
        run_id = new_run_id()
        ledger.claim("nightly", slot, run_id, slot.date().isoformat(), "cron")
        ledger.finish_run(run_id, "failed", 1, 0, error="task one failed")  # just now: not run again yet
        ledger.dispose()
        for round_ in range(2):
            log = tmp_path / f"daemon{round_}.log"
            daemon = p.start("--scheduler", log=log)
            try:
                if round_ == 0:
                    wait_for("the late alert", lambda: http.json_posts(), 30)
                else:
                    wait_for("the restarted daemon's start", lambda: "scheduler started" in log.read_text(), 30)
                    time.sleep(3)  # its start-up look and courier have had their turn
            finally:
                assert stop(daemon) == 0, log.read_text()
        posts = http.json_posts()
        assert [p["type"] for p in posts] == ["warning"], posts
        assert "LATE" in posts[0]["title"] and slot.strftime("%Y-%m-%d %H:%M UTC") in posts[0]["message"], posts
        assert "no successful run 1h after the slot's time" in posts[0]["message"] and run_id in posts[0]["message"]
    finally:
        http.close()


def test_a_daemon_looking_for_late_slots_all_day_keeps_one_settled_slot_per_job(tmp_path: Path, at) -> None:
    """The daemon looks every minute, for months: what it remembers of slots already settled (late
    raised, or a success seen) stays one slot per job, however many slots pass."""
    from runner.config.project import load_project
    from runner.notify.hub import Hub

    job = ("schedule: '* * * * *'\nlate_after: 1m\ndatabase: warehouse\n"
           "tasks:\n  - name: rollup\n    sql: \"SELECT 1\"\n")
    write_project(tmp_path, {"minutely": job}, runner=(
        "timezone: UTC\nnotify:\n  - url: json://127.0.0.1:9/hook\n    on: [late]\n"))
    from runner.config.jobs import load_job
    from runner.schedule.due import DueRunner

    project = load_project(tmp_path / "conf")
    jobs = {"minutely": load_job(project, "minutely")}
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'runner-state.db'}")
    hub = Hub(project, ledger, jobs)
    due = DueRunner(project, None, ledger, hub=hub)
    try:
        start = datetime(2026, 11, 20, 2, 0, 30, tzinfo=timezone.utc)
        raised = 0
        for minute in range(120):
            at((start + timedelta(minutes=minute)).isoformat()[:19])
            raised += len(hub.check_late(list(jobs.values()), {"minutely": start - timedelta(days=1)},
                                         due.schedule))
        assert raised >= 110  # nothing ever succeeds: nearly every slot is late once
        assert len(hub._late_settled) == 1
    finally:
        hub.courier.close()
        ledger.dispose()
