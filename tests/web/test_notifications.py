"""The alerts about a run, on its page and in the API: one delivered to a real HTTP receiver, one still in
the outbox because its receiver is down (with the error it met), and no credential of either URL."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.core import clean_env, ledger_runs, run_main, write_project  # noqa: F401 - fixture
from tests.notifykit import HttpReceiver, free_port
from tests.schedkit import wait_for
from tests.webkit import TOKEN, serving

HOOK_SECRET = "hook-Secret-9931"
FAILING = "database: warehouse\ntasks:\n  - name: boom\n    sql: SELECT * FROM missing_table\n"


def test_a_runs_page_lists_the_alerts_sent_and_those_still_waiting(tmp_path: Path,
                                                                    clean_env: None) -> None:  # noqa: F811
    receiver = HttpReceiver()
    down = free_port()
    runner = ("notify:\n"
              f"  - {{url: 'json://hook:{HOOK_SECRET}@127.0.0.1:{receiver.port}/hook', on: [failure],\n"
              "      name: ops-hook}\n"
              f"  - {{url: 'json://127.0.0.1:{down}/hook', on: [failure], name: pager, timeout: 2}}\n")
    root = write_project(tmp_path, {"fails": FAILING}, runner=runner)
    try:
        assert run_main(root, "--job", "fails")[0] == 1
    finally:
        receiver.close()
    assert len(receiver.requests) == 1  # the one alert the runner sent before it exited
    run_id = next(r["run_id"] for r in ledger_runs(root) if r["job"] == "fails")
    with serving(root) as site:
        doc = site.get(f"/api/runs/{run_id}").json()
        page = site.get(f"/runs/{run_id}").text
    sent = {n["target"]: n for n in doc["notifications"]}
    assert sorted(sent) == ["ops-hook", "pager"]
    hook = sent["ops-hook"]
    assert (hook["event"], hook["status"], hook["attempts"]) == ("failure", "sent", 1)
    assert sent["ops-hook"]["sent"] is not None and sent["ops-hook"]["error"] is None
    assert sent["pager"]["status"] == "pending" and sent["pager"]["sent"] is None and sent["pager"]["error"]
    assert 'data-event="failure"' in page and "ops-hook" in page and "pager" in page
    assert HOOK_SECRET not in page and HOOK_SECRET not in str(doc)
    assert f"python -m runner --history --run {run_id[:8]}" in page
    assert doc["task_attempts"][0]["statement"] == "jobs/fails.yml:4"


def test_a_run_without_alerts_says_so(tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    root = write_project(tmp_path, {"fails": FAILING})
    assert run_main(root, "--job", "fails")[0] == 1
    run_id = ledger_runs(root)[-1]["run_id"]
    with serving(root) as site:
        assert site.get(f"/api/runs/{run_id}").json()["notifications"] == []
        assert "no alert was raised about this run" in site.get(f"/runs/{run_id}").text


def test_a_run_started_from_the_web_alerts_like_a_run_by_hand(tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    receiver = HttpReceiver()
    runner = f"notify:\n  - {{url: 'json://127.0.0.1:{receiver.port}/hook', on: [failure], name: ops-hook}}\n"
    root = write_project(tmp_path, {"fails": FAILING}, runner=runner)
    try:
        with serving(root, TOKEN) as site:
            started = site.post("/api/jobs/fails/run", token=TOKEN)
            assert started.status == 202
            run_id = started.json()["run_id"]
            wait_for("the alert", lambda: receiver.requests, 30)
            wait_for("the alert recorded as sent", lambda: [
                n for n in site.get(f"/api/runs/{run_id}").json()["notifications"] if n["status"] == "sent"], 30)
    finally:
        receiver.close()
    assert len(receiver.requests) == 1 and "fails" in receiver.requests[0].body
    assert [r["trigger"] for r in ledger_runs(root) if r["run_id"] == run_id] == ["manual"]
