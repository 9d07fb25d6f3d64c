"""The day-two actions from the web, with the token: pause and resume (the state store's pauses, shared
with --pause/--resume and every host), run now of a paused job refused unless forced, and re-run of a
failed run (as --rerun: same slot and date, the tasks it did left alone, trigger rerun)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, ledger_runs, run_main, write_project  # noqa: F401 - fixture
from tests.webkit import TOKEN, Served, serving

JOBS = {
    "ok": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n",
    "twostep": ('schedule: "* * * * *"\ndatabase: warehouse\ntasks:\n'
                "  - name: first\n    sql: CREATE TABLE IF NOT EXISTS marks (n INTEGER); INSERT INTO marks VALUES (1)\n"
                "    idempotent: true\n"
                "  - name: second\n    depends_on: [first]\n    sql: INSERT INTO later (n) VALUES (1)\n"),
}


@pytest.fixture
def project(tmp_path: Path, clean_env: None) -> Path:  # noqa: F811
    return write_project(tmp_path, JOBS)


@pytest.fixture
def site(project: Path) -> Served:
    with serving(project, TOKEN) as served:
        yield served


def finished(site: Served, run_id: str) -> dict:
    deadline = time.monotonic() + 30
    while (doc := site.get(f"/api/runs/{run_id}").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return doc


def job_doc(site: Served, name: str) -> dict:
    return next(j for j in site.get("/api/jobs").json()["jobs"] if j["job"] == name)


def test_pause_and_resume_from_the_web(site: Served, project: Path) -> None:
    assert site.post("/api/jobs/ok/pause", body=b'{"reason": "warehouse migration"}').status == 401
    assert job_doc(site, "ok")["paused"] is None
    paused = site.post("/api/jobs/ok/pause", token=TOKEN, body=b'{"reason": "warehouse <b>migration</b>"}')
    assert paused.status == 200
    doc = paused.json()
    assert doc["changed"] and doc["paused"]["reason"] == "warehouse <b>migration</b>"
    assert doc["paused"]["by"] == "web (127.0.0.1)"
    again = site.post("/api/jobs/ok/pause", token=TOKEN, body=b'{"reason": "other"}').json()
    assert not again["changed"] and again["paused"]["reason"] == "warehouse <b>migration</b>"  # left as it was
    assert job_doc(site, "ok")["paused"]["reason"] == "warehouse <b>migration</b>"
    page = site.get("/").text
    assert "paused by web (127.0.0.1)" in page and "warehouse &lt;b&gt;migration&lt;/b&gt;" in page
    code, listing = run_main(project, "--list")  # the same pause, as every command sees it
    assert code == 0 and "warehouse <b>migration</b>" in listing

    refused = site.post("/api/jobs/ok/run", token=TOKEN)
    assert refused.status == 409 and "paused by web (127.0.0.1)" in refused.json()["error"]
    forced = site.post("/api/jobs/ok/run", token=TOKEN, body=b'{"force": true}')
    assert forced.status == 202 and finished(site, forced.json()["run_id"])["status"] == "success"

    resumed = site.post("/api/jobs/ok/resume", token=TOKEN).json()
    assert resumed["changed"] and resumed["resumed"]["reason"] == "warehouse <b>migration</b>"
    assert site.post("/api/jobs/ok/resume", token=TOKEN).json()["changed"] is False
    assert job_doc(site, "ok")["paused"] is None
    assert site.post("/api/jobs/ok/run", token=TOKEN).status == 202


def test_a_pause_made_with_the_command_line_shows_on_the_pages(site: Served, project: Path) -> None:
    assert run_main(project, "--pause", "ok", "--reason", "disk full")[0] == 0
    assert job_doc(site, "ok")["paused"]["reason"] == "disk full"
    assert "disk full" in site.get("/jobs/ok").text


@pytest.mark.parametrize("body, says", [(b'{"reason": 5}', "reason must be a text"),
                                        (b'{"reason": "' + b"x" * 501 + b'"}', "at most 500"),
                                        (b'{"reason": "nul \\u0000 here"}', "reason: the reason holds the control "
                                                                             "character '\\x00'"),
                                        (b'{"reason": "\\u001b[2J cleared"}', "holds the control character '\\x1b'"),
                                        (b'{"force": "yes"}', "force must be true or false")])
def test_action_bodies_are_checked(site: Served, body: bytes, says: str) -> None:
    path = "/api/jobs/ok/pause" if b"reason" in body else "/api/jobs/ok/run"
    reply = site.post(path, token=TOKEN, body=body)
    assert reply.status == 400 and says in reply.json()["error"]


def test_pause_of_an_unknown_job_is_404(site: Served) -> None:
    assert site.post("/api/jobs/nope/pause", token=TOKEN).status == 404
    assert site.post("/api/jobs/nope/resume", token=TOKEN).status == 404


def test_rerun_from_the_web_runs_what_failed_for_the_same_slot(site: Served, project: Path) -> None:
    assert run_main(project, "--due", "--job", "twostep")[0] == 1  # second fails: no table later
    failed = next(r for r in ledger_runs(project) if r["job"] == "twostep")
    assert site.post(f"/api/runs/{failed['run_id']}/rerun").status == 401
    assert site.post(f"/api/runs/{'0' * 32}/rerun", token=TOKEN).status == 404
    import sqlite3

    with sqlite3.connect(project / "var" / "warehouse.db") as db:
        db.execute("CREATE TABLE later (n INTEGER)")
    started = site.post(f"/api/runs/{failed['run_id']}/rerun", token=TOKEN)
    assert started.status == 202, started.text
    new = started.json()
    assert new["rerun_of"] == failed["run_id"] and started.headers["location"] == f"/api/runs/{new['run_id']}"
    doc = finished(site, new["run_id"])
    assert (doc["status"], doc["trigger"], doc["slot"]) == ("success", "rerun", site.get(
        f"/api/runs/{failed['run_id']}").json()["slot"])
    assert [s["run_id"] for s in doc["slot_runs"]] == [failed["run_id"], new["run_id"]]
    with sqlite3.connect(project / "var" / "warehouse.db") as db:
        assert db.execute("SELECT COUNT(*) FROM marks").fetchone()[0] == 1  # first was not applied again
        assert db.execute("SELECT COUNT(*) FROM later").fetchone()[0] == 1
    again = site.post(f"/api/runs/{failed['run_id']}/rerun", token=TOKEN)
    assert again.status == 409 and "already re-run successfully" in again.json()["error"]
    done = site.post(f"/api/runs/{new['run_id']}/rerun", token=TOKEN)
    assert done.status == 409 and "succeeded: nothing to re-run" in done.json()["error"]
    code, history = run_main(project, "--history", "--job", "twostep")
    assert code == 0 and "rerun" in history


def test_a_broken_state_store_answers_every_action_and_page_503_with_what_is_wrong(
        site: Served, project: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert run_main(project, "--due", "--job", "twostep")[0] == 1
    failed = next(r for r in ledger_runs(project) if r["job"] == "twostep")
    (project / "var" / "runner-state.db").write_bytes(b"not a ledger at all " * 500)  # a garbage file at state_url
    for path in ("/api/jobs/ok/run", f"/api/runs/{failed['run_id']}/rerun", "/api/jobs/ok/pause",
                 "/api/jobs/ok/resume"):
        reply = site.post(path, token=TOKEN)
        assert reply.status == 503, (path, reply.status, reply.body)
        assert "the file is not a SQLite database: move it away" in reply.json()["error"], path
    for path in ("/api/runs", "/api/jobs/ok", "/"):
        reply = site.get(path)
        assert reply.status == 503 and b"the file is not a SQLite database" in reply.body, (path, reply.body[:300])
    assert "Traceback" not in caplog.text and "NameError" not in caplog.text
    assert "the run started from the web failed to run: state store sqlite:" in caplog.text


def test_a_pause_reason_with_a_terminal_escape_is_refused_on_the_command_line_too(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    code, _ = run_main(project, "--pause", "ok", "--reason", "\x1b]0;owned\x07 migration")
    assert code == 2 and "--reason: the reason holds the control character '\\x1b'" in caplog.text
    code, listing = run_main(project, "--list")
    assert code == 0 and "owned" not in listing  # not paused
    assert run_main(project, "--pause", "ok", "--reason", "two\nlines\tand a tab")[0] == 0
    assert "two lines and a tab" in run_main(project, "--list")[1]
