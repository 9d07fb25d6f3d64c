"""Alerts reach people through real receivers on 127.0.0.1 (aiosmtpd, http.server), from real
`python -m runner` processes: one mail and one webhook per failure with the facts and no password;
a receiver that is down or stalls neither fails nor holds up the job, and the alert waits in the
outbox for the next process, also after a SIGKILL; pings arrive in order."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any


from tests.notifykit import HttpReceiver, SmtpReceiver, Stall, free_port
from tests.schedkit import SchedProject, seen_since, stop, wait_for
from tests.schedule.test_due import two_hours_ago

SECRET = "Sup3rSecretPw"
HOOK_SECRET = "H00kSecretPw9"
FAILING = {"database": "warehouse", "tasks": [
    {"name": "prepare", "sql": "SELECT 1"},
    {"name": "rollup", "depends_on": ["prepare"], "sql": f"SELECT '{SECRET}' AS pw FROM missing_table"}]}
FINE = {"database": "warehouse", "tasks": [{"name": "one", "sql": "SELECT 1"}]}


def project(root: Path, notify: list[dict[str, Any]], **settings: Any) -> SchedProject:
    return SchedProject(root, {"warehouse": "sqlite:///var/wh.db",
                               "other": f"mysql+pymysql://etl:{SECRET}@127.0.0.1:1/x"},
                        settings={"notify": notify, **settings})


def state(p: SchedProject, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    path = p.root / "var" / "state.db"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the schema is being created
            return []


def runs_of(p: SchedProject, job: str) -> list[tuple[str, str]]:
    return state(p, "SELECT run_id, status FROM runner_runs WHERE job = ? ORDER BY started_at", job)


def test_a_failing_job_sends_one_mail_and_one_webhook_with_the_facts_and_no_password(tmp_path: Path) -> None:
    smtp, http = SmtpReceiver(), HttpReceiver()
    try:
        p = project(tmp_path, [{"url": smtp.url(), "on": ["failure"]},
                               {"url": f"json://hook:{HOOK_SECRET}@127.0.0.1:{http.port}/hook", "on": ["failure"],
                                "name": "ops-webhook"}])
        p.job("nightly", FAILING)
        done = p.run("--job", "nightly")
        assert done.returncode == 1, done.stderr
        (run_id, status), = runs_of(p, "nightly")
        assert status == "failed"
        # sent before the process exited: no waiting here
        assert len(smtp.messages) == 1 and len(http.json_posts()) == 1
        post = http.json_posts()[0]
        assert post["type"] == "failure"
        for text in (smtp.texts()[0], post["title"] + "\n" + post["message"]):
            assert "nightly" in text and "FAILURE" in text
            assert "task: rollup" in text
            assert "statement: jobs/nightly.yml:" in text and "FROM missing_table" in text
            assert "error: 1 no such table: missing_table" in text
            assert "attempts: 1 of task rollup" in text and "duration:" in text
            assert "host: " in text and "status: failed" in text
            assert f"python -m runner --history --run {run_id}" in text
            assert SECRET not in text and HOOK_SECRET not in text
        assert SECRET not in done.stderr + done.stdout and HOOK_SECRET not in done.stderr + done.stdout
        history = p.run("--history", "--run", run_id[:8]).stdout
        assert "failure to ops-webhook: sent" in history and HOOK_SECRET not in history
    finally:
        smtp.close()
        http.close()


def test_a_receiver_that_is_down_leaves_the_alert_in_the_outbox_for_the_next_run(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    p = project(tmp_path, [{"url": f"json://127.0.0.1:{port}/hook", "on": ["failure"], "timeout": 5}])
    p.job("nightly", FAILING)
    p.job("other", FINE)
    start = time.monotonic()
    done = p.run("--job", "nightly")
    assert done.returncode == 1 and time.monotonic() - start < 15
    (run_id, _), = runs_of(p, "nightly")
    assert state(p, "SELECT event, status, attempts FROM runner_notifications") == [("failure", "pending", 1)]
    assert "not sent to json#" in done.stderr and "stays in the outbox" in done.stderr
    history = p.run("--history").stdout
    assert "1 alert(s) not sent yet" in history and f"failure of nightly run {run_id[:8]}" in history

    http = HttpReceiver(port)
    try:
        assert p.run("--job", "other").returncode == 0  # any command that runs jobs sends what is pending
        posts = http.json_posts()
        assert len(posts) == 1 and run_id in posts[0]["message"] and "rollup" in posts[0]["message"]
        assert state(p, "SELECT status, attempts FROM runner_notifications") == [("sent", 2)]
        assert p.run("--job", "other").returncode == 0
        assert len(http.json_posts()) == 1, "sent once"
    finally:
        http.close()


def test_an_alert_of_a_process_killed_after_the_outcome_is_recorded_is_sent_by_the_next(tmp_path: Path) -> None:
    stall = Stall()
    port = stall.port
    p = project(tmp_path, [{"url": f"json://127.0.0.1:{port}/hook", "on": ["failure"], "timeout": 60}])
    p.job("nightly", FAILING)
    p.job("other", FINE)
    proc = p.start("--job", "nightly")
    try:
        wait_for("the outcome recorded and the alert being sent",
                   lambda: runs_of(p, "nightly") and runs_of(p, "nightly")[0][1] == "failed" and stall.accepted, 20)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        stall.close()
    (run_id, _), = runs_of(p, "nightly")
    lease, = state(p, "SELECT status, lease_by FROM runner_notifications")
    assert lease[0] == "pending" and lease[1].endswith(f" {proc.pid}"), "leased by the killed process"
    http = HttpReceiver(port)
    try:
        assert p.run("--job", "other").returncode == 0
        posts = http.json_posts()
        assert len(posts) == 1 and run_id in posts[0]["message"]
    finally:
        http.close()


def test_a_stalled_receiver_costs_its_timeout_once_not_once_per_job(tmp_path: Path) -> None:
    timeout = 3
    expr, latest = two_hours_ago()  # a daily slot that stays the latest while the test runs
    jobs = {f"job{i}": {**FAILING, "schedule": expr} for i in range(3)}
    up = HttpReceiver()  # the baseline sends its alerts to a receiver that answers: Apprise's import is in both
    try:
        quiet = project(tmp_path / "quiet", [{"url": f"json://127.0.0.1:{up.port}/hook", "timeout": timeout}])
        for name, doc in jobs.items():
            quiet.job(name, doc)
        deployed = latest - timedelta(minutes=1)  # just before it: that slot is caught up, none is missed
        seen_since(f"sqlite:///{quiet.root / 'var' / 'state.db'}", list(jobs), deployed)
        start = time.monotonic()
        assert quiet.run("--due").returncode == 1
        baseline = time.monotonic() - start
        assert len(up.json_posts()) == 3
    finally:
        up.close()

    stall = Stall()
    try:
        p = project(tmp_path / "stalled", [{"url": f"json://127.0.0.1:{stall.port}/hook", "timeout": timeout}])
        for name, doc in jobs.items():
            p.job(name, doc)
        seen_since(f"sqlite:///{p.root / 'var' / 'state.db'}", list(jobs), deployed)
        start = time.monotonic()
        done = p.run("--due")
        took = time.monotonic() - start
    finally:
        stall.close()
    assert done.returncode == 1
    assert [s for s, in state(p, "SELECT status FROM runner_notifications")] == ["pending"] * 3
    assert took - baseline < timeout + 2.5, (took, baseline)  # once; per job it would be 3 x 3s
    assert done.stderr.count("stays in the outbox") == 1


def test_pings_arrive_in_order_start_then_success_or_fail(tmp_path: Path) -> None:
    http = HttpReceiver()
    try:
        p = project(tmp_path, [])
        uuid = "0f9b6a1e-3c2d-4e5f-8a7b-6c5d4e3f2a1b"
        p.job("good", {**FINE, "ping": http.url(f"/ping/{uuid}")})
        p.job("bad", {**FAILING, "ping": http.url(f"/ping/{uuid}-bad")})
        assert p.run("--job", "good").returncode == 0
        assert p.run("--job", "bad").returncode == 1
        assert [(r.method, r.path) for r in http.requests] == [
            ("POST", f"/ping/{uuid}/start"), ("POST", f"/ping/{uuid}"),
            ("POST", f"/ping/{uuid}-bad/start"), ("POST", f"/ping/{uuid}-bad/fail")]
        assert "missing_table" in http.requests[-1].body and SECRET not in http.requests[-1].body
    finally:
        http.close()


def test_a_ping_host_that_stalls_does_not_hold_up_the_run_more_than_its_timeout(tmp_path: Path) -> None:
    stall = Stall()
    try:
        p = project(tmp_path, [], ping_timeout=2)
        p.job("good", {**FINE, "ping": f"http://127.0.0.1:{stall.port}/ping/abc"})
        start = time.monotonic()
        done = p.run("--job", "good")
        took = time.monotonic() - start
    finally:
        stall.close()
    assert done.returncode == 0, done.stderr
    assert took < 2 + 6, took  # /start timed out once; /success to the same host was skipped
    assert "ping start to http://127.0.0.1/... failed" in done.stderr


def test_the_daemons_look_delivers_an_alert_its_receiver_was_down_for(tmp_path: Path) -> None:
    """A real daemon catches up a failing slot while nothing listens on the receiver's port: the alert
    stays pending; once the receiver is up, the daemon's next look (every 30 s) sends it."""
    port = free_port()
    expr, _ = two_hours_ago()
    p = project(tmp_path, [{"url": f"json://127.0.0.1:{port}/hook", "on": ["failure"], "timeout": 3}])
    p.job("nightly", {**FAILING, "schedule": expr})
    seen_since(f"sqlite:///{p.root / 'var' / 'state.db'}", ["nightly"], datetime.now(timezone.utc) - timedelta(hours=3))
    log = tmp_path / "daemon.log"
    daemon = p.start("--scheduler", log=log)
    http = None
    try:
        wait_for("the failed run's alert to fail once", lambda: state(
            p, "SELECT status, attempts FROM runner_notifications") == [("pending", 1)], 40)
        http = HttpReceiver(port)
        wait_for("the alert sent by the daemon's look", lambda: http.json_posts(), 45)
        (run_id, status), = runs_of(p, "nightly")
        assert status == "failed" and run_id in http.json_posts()[0]["message"]
        wait_for("the alert recorded sent", lambda: state(
            p, "SELECT status, attempts FROM runner_notifications") == [("sent", 2)], 10)
    finally:
        assert stop(daemon) == 0, log.read_text()
        if http is not None:
            http.close()
    assert len(http.json_posts()) == 1
