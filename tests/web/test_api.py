"""The JSON API and the pages over real HTTP (waitress on a loopback port), on a ledger the runner
wrote itself: what each answer holds, what is refused and how, the token for actions, no password or
token in any answer, and a state store out of reach."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from runner.config.project import load_project
from runner.state.ledger import Ledger
from runner.state.lock import job_lock
from tests.fixtures.core import clean_env, ledger_runs, run_main, write_project  # noqa: F401 - fixture
from tests.harness.mariadb import PrivateMariaDB
from tests.webkit import TOKEN, Served, serving

PASSWORD = "S3cret-Pw-4711"
JOBS = {
    "ok": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n",
    "bad": ('description: "fails <b>on purpose</b>"\nschedule: "* * * * *"\ndatabase: warehouse\ntasks:\n'
            '  - name: first\n    sql: SELECT 1\n'
            '  - name: boom\n    depends_on: [first]\n'
            f'    sql: SELECT \'{PASSWORD}\' FROM "<script>window.__pwned=1</script>"\n'
            '  - name: after\n    depends_on: [boom]\n    sql: SELECT 2\n'),
    "needs": "database: warehouse\ntasks:\n  - name: p\n    sql: SELECT :nothing_sets_this\n",
    "broken": "tasks: [{name: x}]\n",
}
# A database the jobs never use, so its password is one the runner knows and must hide.
DATABASES = ("warehouse:\n  url: sqlite:///var/warehouse.db\n"
             f"shop:\n  url: mysql+pymysql://etl:{PASSWORD}@127.0.0.1:1/shop\n")


@pytest.fixture
def project(tmp_path: Path, clean_env: None) -> Path:  # noqa: F811
    root = write_project(tmp_path, JOBS, databases=DATABASES)
    assert run_main(root, "--job", "ok")[0] == 0
    assert run_main(root, "--due", "--job", "bad")[0] == 1  # a failed run of the job's latest slot
    return root


@pytest.fixture
def site(project: Path) -> Served:
    with serving(project, TOKEN) as served:
        yield served


def run_of(project: Path, job: str) -> dict:
    return next(r for r in reversed(ledger_runs(project)) if r["job"] == job)


def test_jobs_lists_every_job_with_its_schedule_last_run_and_slots(site: Served, project: Path) -> None:
    doc = site.get("/api/jobs").json()
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert sorted(jobs) == ["bad", "broken", "needs", "ok"]
    bad = jobs["bad"]
    assert (bad["schedule"], bad["schedule_text"], bad["timezone"]) == ("* * * * *", "Every minute", "UTC")
    assert bad["last_run"]["status"] == "failed" and bad["last_run"]["trigger"] == "cron"
    assert bad["last_run"]["statement"] == "jobs/bad.yml:9"
    failed = [s for s in bad["slots"] if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["run_id"] == run_of(project, "bad")["run_id"]
    assert jobs["ok"]["schedule"] is None and jobs["ok"]["next_run"] is None
    assert jobs["ok"]["slots"][0]["status"] == "success"  # a job without a schedule: its runs
    assert not jobs["broken"]["valid"] and "jobs/broken.yml" in jobs["broken"]["problems"][0]


def test_a_runs_detail_has_its_tasks_every_attempt_and_the_full_error(site: Served, project: Path) -> None:
    run_id = run_of(project, "bad")["run_id"]
    doc = site.get(f"/api/runs/{run_id}").json()
    assert (doc["run_id"], doc["job"], doc["status"]) == (run_id, "bad", "failed")
    assert [(t["task"], t["status"]) for t in doc["tasks"]] == [("first", "success"), ("boom", "failed"),
                                                               ("after", "not started")]
    assert doc["error"].startswith("job bad: task boom failed\n  statement: jobs/bad.yml:9:")
    assert "<script>window.__pwned=1</script>" in doc["error"]  # JSON says it as it is; pages escape it
    assert [(a["task"], a["attempt"], a["status"]) for a in doc["task_attempts"]] == [
        ("first", 1, "success"), ("boom", 1, "failed")]
    assert doc["slot_runs"] == [{"run_id": run_id, "status": "failed", "trigger": "cron",
                                 "started": doc["started"]}]


@pytest.mark.parametrize("query, statuses", [
    ("", ["success"]), ("?status=success", ["success"]), ("?status=failed", []), ("?since=1d", ["success"]),
    ("?since=2999-01-01", []), ("?limit=1", ["success"]),
])
def test_runs_of_a_job_filtered(site: Served, query: str, statuses: list[str]) -> None:
    doc = site.get(f"/api/jobs/ok/runs{query}").json()
    assert [r["status"] for r in doc["runs"]] == statuses and doc["total"] == len(statuses)


def test_runs_of_every_job_and_watermarks(site: Served, project: Path) -> None:
    doc = site.get("/api/runs?limit=10").json()
    assert {r["job"] for r in doc["runs"]} == {"ok", "bad"}
    assert [r["job"] for r in site.get("/api/runs?job=bad").json()["runs"]] == ["bad"]
    ledger = Ledger(load_project(project / "conf").settings.state_url)
    ledger.set_watermark("ok", "one", "2026-11-01 00:00:00")
    ledger.dispose()
    marks = site.get("/api/watermarks").json()["watermarks"]
    assert [(w["job"], w["task"], w["value"]) for w in marks] == [("ok", "one", "2026-11-01 00:00:00")]
    assert site.get("/api/jobs/ok/watermarks").json()["watermarks"] == marks
    assert site.get("/api/jobs/bad/watermarks").json()["watermarks"] == []


@pytest.mark.parametrize("path, status, says", [
    ("/api/jobs/ok/runs?limit=0", 400, "limit"),
    ("/api/jobs/ok/runs?limit=abc", 400, "limit"),
    ("/api/jobs/ok/runs?status=FAILED", 400, "unknown status"),
    ("/api/jobs/ok/runs?status=failed&status=success", 400, "given 2 times"),
    ("/api/runs?since=yesterday", 400, "invalid since"),
    ("/api/jobs/nope", 404, "no job"),
    ("/api/jobs/..%2F..%2Fetc", 404, "no such API path"),
    ("/api/jobs/a%20b/runs", 404, "no job"),
    ("/api/runs/1234", 404, "no run"),
    ("/api/runs/" + "0" * 32, 404, "no run"),
    ("/api/nothing", 404, "no such API path"),
])
def test_bad_requests_are_answered_in_json_with_what_is_wrong(site: Served, path: str, status: int,
                                                              says: str) -> None:
    reply = site.get(path)
    assert reply.status == status
    assert says in reply.json()["error"]


def test_pages_answer_404_and_405_as_pages(site: Served) -> None:
    assert site.get("/jobs/nope").status == 404
    assert "no job" in site.get("/jobs/nope").text
    assert site.get("/runs/xyz").status == 404
    assert site.get("/static/../pyproject.toml").status == 404
    reply = site.request("DELETE", "/api/jobs")
    assert reply.status == 405 and reply.headers["allow"] == "GET"
    assert site.request("HEAD", "/").status == 200


def test_every_answer_forbids_loading_anything_from_elsewhere(site: Served) -> None:
    for path in ("/", "/api/jobs", "/jobs/nope"):
        headers = site.get(path).headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


def test_a_name_other_than_loopback_is_refused_on_a_loopback_address(site: Served) -> None:
    assert site.get("/api/jobs", {"Host": "attacker.example:8765"}).status == 421
    assert site.get("/api/jobs", {"Host": f"localhost:{site.port}"}).status == 200
    assert site.get("/api/jobs", {"Host": f"[::1]:{site.port}"}).status == 200


def test_actions_are_refused_without_the_token(site: Served, project: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = len(ledger_runs(project))
    missing = site.post("/api/jobs/ok/run")
    assert missing.status == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert site.post("/api/jobs/ok/run", headers={"Authorization": f"Basic {TOKEN}"}).status == 401
    wrong_token = "not-the-token-" + "y" * 12
    with caplog.at_level(logging.WARNING, logger="runner.web"):
        wrong = site.post("/api/jobs/ok/run", token=wrong_token)
    assert wrong.status == 401 and wrong.json() == {"error": "wrong token"}
    logged = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert logged and "/api/jobs/ok/run" in logged[0] and "127.0.0.1" in logged[0]
    assert wrong_token not in caplog.text and TOKEN not in caplog.text
    assert site.get("/api/jobs/ok/run").status == 405  # not by a GET either (a link, an image)
    assert len(ledger_runs(project)) == before  # nothing ran


def test_without_a_token_configured_the_site_is_read_only(project: Path) -> None:
    with serving(project, token="") as site:
        refused = site.post("/api/jobs/ok/run", token=TOKEN)
        assert refused.status == 403 and "web.token" in refused.json()["error"]
        page = site.get("/").text
        assert "read-only" in page and "data-run=" not in page


def test_run_now_with_the_token_starts_a_run_that_history_shows(site: Served, project: Path) -> None:
    reply = site.post("/api/jobs/ok/run", token=TOKEN)
    assert reply.status == 202, reply.text
    run_id = reply.json()["run_id"]
    assert reply.headers["location"] == f"/api/runs/{run_id}"
    deadline = time.monotonic() + 30
    while site.get(f"/api/runs/{run_id}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert site.get(f"/api/runs/{run_id}").json()["status"] == "success"
    recorded = [r for r in ledger_runs(project) if r["run_id"] == run_id]
    assert [(r["job"], r["trigger"], r["status"]) for r in recorded] == [("ok", "manual", "success")]
    code, history = run_main(project, "--history", "--job", "ok")
    assert code == 0
    lines = [ln for ln in history.splitlines() if " ok " in ln]
    assert len(lines) == 2 and "manual" in lines[0] and "success" in lines[0]


def test_an_answer_is_served_again_for_a_second_and_an_action_makes_it_fresh(
        site: Served, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner import clock

    real = clock.monotonic
    offset = [0.0]
    monkeypatch.setattr(clock, "monotonic", lambda: real() + offset[0])
    first = site.get("/api/jobs/ok/runs").json()["total"]
    assert run_main(project, "--job", "ok")[0] == 0
    assert site.get("/api/jobs/ok/runs").json()["total"] == first  # the answer of a moment ago
    assert site.get("/api/jobs/ok/runs?limit=5").json()["total"] == first + 1  # another request: fresh
    offset[0] += 1.1
    assert site.get("/api/jobs/ok/runs").json()["total"] == first + 1  # a second later: fresh
    assert run_main(project, "--job", "ok")[0] == 0
    assert site.post("/api/jobs/nope/run", token=TOKEN).status == 404  # refused: nothing changes
    assert site.get("/api/jobs/ok/runs").json()["total"] == first + 1
    started = site.post("/api/jobs/ok/run", token=TOKEN)
    assert started.status == 202
    assert site.get("/api/jobs/ok/runs").json()["total"] == first + 3  # an action clears it


def test_run_now_of_a_job_running_elsewhere_is_409_naming_the_holder(site: Served, project: Path) -> None:
    p = load_project(project / "conf")
    ledger = Ledger(p.settings.state_url)
    try:
        with job_lock(p, ledger, "ok", "cron"):
            reply = site.post("/api/jobs/ok/run", token=TOKEN)
    finally:
        ledger.dispose()
    assert reply.status == 409
    assert "already running" in reply.json()["error"] and "pid" in reply.json()["error"]


@pytest.mark.parametrize("job, status, says", [
    ("broken", 409, "its file is invalid"),
    ("nope", 404, "no job"),
    ("needs", 422, "nothing_sets_this"),
])
def test_run_now_refuses_what_cannot_run(site: Served, job: str, status: int, says: str) -> None:
    reply = site.post(f"/api/jobs/{job}/run", token=TOKEN)
    assert reply.status == status and says in reply.json()["error"]


def test_run_now_refuses_a_body_that_is_not_a_json_object(site: Served) -> None:
    assert site.post("/api/jobs/ok/run", token=TOKEN, body=b"[1]").status == 400
    assert site.post("/api/jobs/ok/run", token=TOKEN, body=b"\xff\xfe").status == 400


def test_no_password_or_token_in_any_page_or_answer(site: Served, project: Path) -> None:
    run_id = run_of(project, "bad")["run_id"]
    assert PASSWORD in run_of(project, "bad")["error"]  # the ledger has it (the failing statement's text)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    paths = ["/", "/jobs/bad", "/jobs/ok", f"/runs/{run_id}", "/api/jobs", "/api/jobs/bad", "/api/runs",
             f"/api/runs/{run_id}", "/api/jobs/bad/runs", "/api/openapi.json", "/jobs/nope", "/api/jobs/nope"]
    for path in paths:
        body = site.get(path, auth).text
        assert PASSWORD not in body, path
        assert TOKEN not in body, path
    assert "SELECT &#39;***&#39; FROM" in site.get(f"/runs/{run_id}").text
    assert "SELECT '***' FROM" in site.get(f"/api/runs/{run_id}").json()["error"]


def test_every_text_from_the_ledger_and_the_job_files_is_escaped(site: Served, project: Path) -> None:
    run_id = run_of(project, "bad")["run_id"]
    for path in ("/", "/jobs/bad", f"/runs/{run_id}"):
        page = site.get(path).text
        assert "<script>window" not in page and "<b>on purpose" not in page, path
        assert len(re.findall(r"<script\b", page)) == 1  # the page's own script, nothing else
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in site.get(f"/runs/{run_id}").text
    assert "fails &lt;b&gt;on purpose&lt;/b&gt;" in site.get("/").text


def test_a_state_store_out_of_reach_is_503_and_the_server_keeps_serving(tmp_path: Path,
                                                                         clean_env: None) -> None:  # noqa: F811
    root = write_project(tmp_path, {"ok": JOBS["ok"]},
                         runner="state_url: mysql+pymysql://etl:pw@127.0.0.1:1/state\n")
    with serving(root) as site:
        api = site.get("/api/jobs")
        assert api.status == 503 and "state store cannot be read" in api.json()["error"]
        page = site.get("/")
        assert page.status == 503 and "state store cannot be read" in page.text
        assert site.get("/static/style.css").status == 200


def test_the_api_reads_a_mariadb_state_store(tmp_path: Path, clean_env: None, mdb: PrivateMariaDB,  # noqa: F811
                                             fresh_db: str) -> None:
    root = write_project(tmp_path, {"ok": JOBS["ok"], "bad": JOBS["bad"]},
                         runner=f"state_url: {mdb.url(fresh_db)}\n")
    assert run_main(root, "--job", "ok")[0] == 0
    assert run_main(root, "--due", "--job", "bad")[0] == 1
    with serving(root) as site:
        jobs = {j["job"]: j for j in site.get("/api/jobs").json()["jobs"]}
        assert jobs["ok"]["last_run"]["status"] == "success"
        failed = jobs["bad"]["last_run"]
        assert failed["status"] == "failed" and failed["slot"] is not None
        detail = site.get(f"/api/runs/{failed['run_id']}").json()
        assert [t["status"] for t in detail["tasks"]] == ["success", "failed", "not started"]
        assert [s["status"] for s in jobs["bad"]["slots"]][-1] == "failed"
        assert site.get(f"/runs/{failed['run_id']}").status == 200
        assert site.get("/jobs/bad?status=failed&since=1d").status == 200


def test_watermarks_are_shown_as_the_ledger_has_them(tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    job = ("database: warehouse\ntasks:\n"
           "  - name: prep\n    idempotent: true\n    database: shop\n"
           "    sql: CREATE TABLE IF NOT EXISTS src (id INTEGER, v TEXT); INSERT INTO src VALUES (41, 'a'), (42, 'b')\n"
           "  - name: copy\n    depends_on: [prep]\n"
           "    load: {source: shop, query: 'SELECT id, v FROM src WHERE id > :watermark', table: dst,\n"
           "           mode: append, incremental: {column: id}}\n")
    root = write_project(tmp_path, {"inc": job}, databases="warehouse:\n  url: sqlite:///var/warehouse.db\n"
                                                           "shop:\n  url: sqlite:///var/shop.db\n")
    assert run_main(root, "--job", "inc")[0] == 0
    run_id = ledger_runs(root)[-1]["run_id"]
    with serving(root) as site:
        marks = site.get("/api/jobs/inc/watermarks").json()["watermarks"]
        page = site.get("/jobs/inc").text
    assert [(m["task"], m["value"], m["type"], m["run_id"], m["column"]) for m in marks] == [
        ("copy", "42", "int", run_id, "id")]
    _, listed = run_main(root, "--watermarks", "--job", "inc", "--format", "json")
    import json

    assert [{k: d[k] for k in ("job", "task", "value", "updated")} for d in json.loads(listed)] == [
        {k: m[k] for k in ("job", "task", "value", "updated")} for m in marks]  # what --watermarks says
    assert f'run <a href="/runs/{run_id}">{run_id[:8]}</a>' in page and "<code>42</code>" in page
