"""The textfile of cron and hand runs counts what happens after a run's own write: the alerts the
courier sends (runner_notifications_total, sent to a real HTTP receiver or failed against a port
nothing listens on) and the slots `--due` records missed (runner_slots_missed_total, clock injected)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner import clock
from tests.fixtures.core import clean_env, run_main, write_project
from tests.notifykit import HttpReceiver, free_port
from tests.schedkit import seen_since

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark
FAILING = "database: warehouse\ntasks:\n  - name: rollup\n    sql: SELECT * FROM missing_table\n"


def counted(root: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (root / "var" / "metrics" / "runner.prom").read_text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def runner_yml(port: int, extra: str = "") -> str:
    return ("timezone: UTC\nmetrics: {textfile: var/metrics/runner.prom}\nnotify:\n"
            f"  - url: json://127.0.0.1:{port}/hook\n    name: hook\n    timeout: 3\n"
            f"    on: [failure, missed]\n{extra}")


def test_alerts_sent_and_failed_are_in_the_textfile(tmp_path: Path) -> None:
    http = HttpReceiver()
    try:
        write_project(tmp_path, {"nightly": FAILING}, runner=runner_yml(http.port))
        assert run_main(tmp_path, "--job", "nightly")[0] == 1
        assert len(http.json_posts()) == 1
    finally:
        http.close()
    found = counted(tmp_path)
    assert found.get(("runner_notifications_total", frozenset({("target", "hook"), ("outcome", "sent")}))) == 1
    assert found.get(("runner_runs_total", frozenset(
        {("job", "nightly"), ("status", "failed"), ("trigger", "manual")}))) == 1

    (tmp_path / "conf" / "runner.yml").write_text(runner_yml(free_port()))  # nothing listens there
    assert run_main(tmp_path, "--job", "nightly")[0] == 1
    found = counted(tmp_path)
    assert found.get(("runner_notifications_total", frozenset({("target", "hook"), ("outcome", "sent")}))) == 1
    assert found.get(("runner_notifications_total", frozenset({("target", "hook"), ("outcome", "failed")}))) >= 1
    assert found.get(("runner_runs_total", frozenset(
        {("job", "nightly"), ("status", "failed"), ("trigger", "manual")}))) == 2


def test_slots_recorded_missed_by_due_are_in_the_textfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [datetime(2026, 11, 20, 2, 0, 5, tzinfo=timezone.utc)]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    http = HttpReceiver()
    try:
        write_project(tmp_path, {"nightly": "schedule: '0 2 * * *'\ncatch_up: none\ndatabase: warehouse\n"
                                            "tasks:\n  - name: one\n    sql: SELECT 1\n"},
                      runner=runner_yml(http.port))
        seen_since(f"sqlite:///{tmp_path / 'var' / 'runner-state.db'}", ["nightly"],
                   datetime(2026, 11, 20, 1, 59, tzinfo=timezone.utc))
        assert run_main(tmp_path, "--due")[0] == 0
        assert ("runner_slots_missed_total", frozenset({("job", "nightly")})) not in counted(tmp_path)
        now[0] = datetime(2026, 11, 23, 2, 0, 5, tzinfo=timezone.utc)  # the 21st and 22nd passed unrun
        assert run_main(tmp_path, "--due")[0] == 0
        assert len(http.json_posts()) == 1 and "MISSED 2 slot(s)" in http.json_posts()[0]["title"]
    finally:
        http.close()
    found = counted(tmp_path)
    assert found.get(("runner_slots_missed_total", frozenset({("job", "nightly")}))) == 2
    assert found.get(("runner_notifications_total", frozenset({("target", "hook"), ("outcome", "sent")}))) == 1
    assert found.get(("runner_runs_total", frozenset(
        {("job", "nightly"), ("status", "success"), ("trigger", "due")}))) == 2
