"""The pages in a real browser: Debian's chromium, headless, driven by Playwright, kept off the network.
The ledger is written by the runner itself (runs by hand, `--due` after an outage, a run whose process
died, a task retried on MariaDB while another transaction holds its row) plus, for the readability
checks, a job with 1,000 runs and a run with 200 tasks. A screenshot of each page lands in the test's
temp folder."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from runner.cron import Schedule
from runner.state.ledger import attempts, runs
from runner.state.slots import SlotLedger
from tests.fixtures.core import ledger_attempts, ledger_runs, run_main, write_project
from tests.harness.mariadb import PrivateMariaDB
from tests.webkit import TOKEN, Served, chromium, serving

UTC = timezone.utc
SCRIPT = "<script>window.__pwned=1</script>"
JOBS = {
    "nightly": 'schedule: "* * * * *"\ndatabase: warehouse\ntasks:\n  - name: mark\n    sql: SELECT 1\n',
    "broken": ('schedule: "* * * * *"\ndatabase: warehouse\ntasks:\n  - name: boom\n'
               f'    sql: SELECT * FROM "{SCRIPT}"\n'),
    "flaky": ("database: maria\nretry: {attempts: 10, base_delay: 0.05, max_delay: 0.2, window: 60}\n"
              "tasks:\n  - name: write\n"
              "    sql: SET SESSION innodb_lock_wait_timeout = 1; UPDATE t SET x = x + 1 WHERE id = 1\n"),
    "ok": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n",
    "busy": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n",
    "wide": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n",
}
DATABASES = "warehouse:\n  url: sqlite:///var/warehouse.db\nmaria:\n  url: {url}\n"


def _seed_outage(root: Path) -> None:
    """nightly: a success six slots ago, a run abandoned by a process that died at the next slot, then
    `--due` records the slots between as missed and runs the latest."""
    ledger = SlotLedger(f"sqlite:///{root / 'var' / 'runner-state.db'}")
    latest = Schedule("* * * * *").latest_at_or_before(datetime.now(UTC))
    assert latest is not None
    done = uuid.uuid4().hex
    ledger.claim("nightly", latest - timedelta(minutes=6), done, latest.date().isoformat(), "cron")
    ledger.finish_run(done, "success", 1, 0)
    ledger.claim("nightly", latest - timedelta(minutes=5), uuid.uuid4().hex, latest.date().isoformat(), "cron")
    ledger.dispose()  # its run stays 'running' and nobody holds the job's lock: abandoned
    assert run_main(root, "--due", "--job", "nightly")[0] == 0


def _run_while_locked(root: Path, server: PrivateMariaDB, db: str) -> None:
    """flaky: another transaction holds the row it updates for a moment; lock wait timeouts (1205) are
    retried until the row is free."""
    holder = server.connect(db)
    with holder.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, x INT)")
        cur.execute("INSERT INTO t VALUES (1, 0)")
        holder.commit()
        cur.execute("SELECT x FROM t WHERE id = 1 FOR UPDATE")
    waited = threading.Event()

    def release() -> None:  # once an attempt has timed out on the lock (not after a fixed time: a loaded
        state = root / "var" / "runner-state.db"  # host may start the run after it)
        deadline = time.monotonic() + 60
        while not waited.is_set() and time.monotonic() < deadline:
            try:
                with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT 1 FROM runner_task_attempts WHERE status = 'retrying'").fetchall():
                        break
            except sqlite3.OperationalError:  # not created yet
                pass
            time.sleep(0.05)
        holder.commit()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        assert run_main(root, "--job", "flaky")[0] == 0
    finally:
        waited.set()
        releaser.join()
        holder.close()


def _seed_volume(root: Path) -> str:
    """busy: 1,000 runs over three weeks; wide: one run of 200 tasks, every tenth retried once."""
    ledger = SlotLedger(f"sqlite:///{root / 'var' / 'runner-state.db'}")
    ledger.ensure_schema()
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=21)
    rows = []
    for i in range(1000):
        t = start + timedelta(minutes=30 * i)
        status = "failed" if i % 50 == 7 else "missed" if i % 97 == 5 else "success"
        seconds = 0 if status == "missed" else 20 + (i * 37) % 60 + (200 if i % 200 == 3 else 0)
        rows.append(dict(run_id=uuid.uuid4().hex, job="busy", run_date=t.date().isoformat(), slot=t,
                         trigger="daemon", host="h", pid=1, started_at=t, ended_at=t + timedelta(seconds=seconds),
                         status=status, attempts=1, rows=10, error=None if status == "success" else status))
    wide = uuid.uuid4().hex
    t0 = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    tries = []
    for i in range(200):
        t = t0 + timedelta(seconds=3 * i)
        if i % 10 == 0:
            tries.append(dict(run_id=wide, task=f"task_{i:03d}_with_a_long_descriptive_name", attempt=1,
                              started_at=t, ended_at=t + timedelta(seconds=1), status="retrying", errno=1213,
                              error="Deadlock found when trying to get lock"))
            t += timedelta(seconds=1.5)
        tries.append(dict(run_id=wide, task=f"task_{i:03d}_with_a_long_descriptive_name",
                          attempt=2 if i % 10 == 0 else 1, started_at=t, ended_at=t + timedelta(seconds=1.2),
                          status="success", rows=i))
    rows.append(dict(run_id=wide, job="wide", run_date=t0.date().isoformat(), slot=None, trigger="manual", host="h",
                     pid=1, started_at=t0, ended_at=t0 + timedelta(seconds=620), status="success", attempts=220,
                     rows=0, error=None))
    blank = dict(rows=None, errno=None, error=None)
    with ledger.engine.begin() as conn:
        conn.execute(runs.insert(), rows)
        conn.execute(attempts.insert(), [{**blank, **t} for t in tries])
    ledger.dispose()
    return wide


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mariadb: PrivateMariaDB) -> Iterator[dict[str, Any]]:
    mariadb.ensure_healthy()
    db = f"t_{uuid.uuid4().hex[:12]}"
    admin = mariadb.connect(None, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
    root = write_project(tmp_path_factory.mktemp("browser"), JOBS, databases=DATABASES.format(url=mariadb.url(db)))
    _seed_outage(root)
    assert run_main(root, "--due", "--job", "broken")[0] == 1
    _run_while_locked(root, mariadb, db)
    wide = _seed_volume(root)
    yield {"root": root, "wide": wide}
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {db}")
    admin.close()


@pytest.fixture(scope="module")
def site(project: dict[str, Any]) -> Iterator[Served]:
    with serving(project["root"], TOKEN) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def shot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a page was drawn, not a blank
    return path


def last_run(root: Path, job: str) -> dict:
    return next(r for r in reversed(ledger_runs(root)) if r["job"] == job)


def test_the_overview_lists_every_job(site: Served, page: Any, tmp_path: Path) -> None:
    page.goto(site.url)
    assert page.locator("tr.job").evaluate_all("rows => rows.map(r => r.dataset.job)") == sorted(JOBS)
    assert page.locator("tr[data-job=nightly] td").nth(1).inner_text().startswith("Every minute")
    shot(page, tmp_path, "overview")


def test_slots_that_never_ran_are_drawn_not_left_blank(site: Served, page: Any, tmp_path: Path) -> None:
    page.goto(site.url)
    strip = page.locator("tr[data-job=nightly] svg.strip")
    missed = strip.locator("rect[data-status=missed]")
    abandoned = strip.locator("rect[data-status=abandoned]")
    assert missed.count() >= 4 and abandoned.count() == 1
    full = strip.bounding_box()["height"]
    for cell in [*missed.all(), *abandoned.all()]:
        assert cell.bounding_box()["height"] == pytest.approx(full, abs=1)  # full height: not a blank
    assert strip.locator("rect[data-status=success]").count() >= 2
    shot(page, tmp_path, "strip")


def test_a_failed_runs_strip_cell_links_to_its_run_page(site: Served, project: dict[str, Any], page: Any,
                                                        tmp_path: Path) -> None:
    failed = last_run(project["root"], "broken")
    assert failed["status"] == "failed"
    page.goto(site.url)
    page.locator("tr[data-job=broken] svg.strip a[data-status=failed]").click()
    page.wait_for_url(f"**/runs/{failed['run_id']}")
    assert "failed" in page.locator("h1").inner_text()
    assert page.locator("dl.facts code.statement").inner_text() == "jobs/broken.yml:5"
    assert page.locator("tr[data-task=boom] code.statement").inner_text() == "jobs/broken.yml:5"
    shot(page, tmp_path, "run-failed")


def test_an_error_text_holding_a_script_shows_as_text_and_runs_nothing(site: Served, project: dict[str, Any],
                                                                       page: Any, tmp_path: Path) -> None:
    failed = last_run(project["root"], "broken")
    for path in ("/", "/jobs/broken", f"/runs/{failed['run_id']}"):
        page.goto(site.url.rstrip("/") + path)
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.locator("script").count() == 1, path  # the page's own script only
    assert SCRIPT in page.locator("pre.error-text").inner_text()
    assert SCRIPT in page.locator("tr[data-task=boom] td.err").inner_text()
    assert page.dialogs == []
    shot(page, tmp_path, "run-script-text")


def test_the_gantt_chart_has_one_bar_per_attempt_and_shows_the_waits(site: Served, project: dict[str, Any],
                                                                      page: Any, tmp_path: Path) -> None:
    run = last_run(project["root"], "flaky")
    tries = ledger_attempts(project["root"], run["run_id"])
    assert len(tries) >= 2 and tries[-1].status == "success"  # retried while the database was held
    page.goto(f"{site.url}runs/{run['run_id']}")
    bars = page.locator("svg.gantt g.task[data-task=write] rect.attempt")
    assert bars.count() == len(tries)
    assert bars.evaluate_all("bs => bs.map(b => b.dataset.attempt)") == [str(a.attempt) for a in tries]
    assert page.locator("svg.gantt rect.attempt.s-retrying").count() == len(tries) - 1
    assert page.locator("svg.gantt line.wait").count() == len(tries) - 1
    xs = [b.bounding_box()["x"] for b in bars.all()]
    assert xs == sorted(xs)  # attempts in time order, left to right
    shot(page, tmp_path, "gantt-retries")


def test_run_now_from_the_page_needs_the_token_and_opens_the_new_run(site: Served, project: dict[str, Any],
                                                                      page: Any, tmp_path: Path) -> None:
    before = {r["run_id"] for r in ledger_runs(project["root"])}
    page.goto(f"{site.url}jobs/ok")
    page.locator("button[data-run=ok]").click()
    page.locator("#message").wait_for()
    assert "Enter the token" in page.locator("#message").inner_text()
    assert {r["run_id"] for r in ledger_runs(project["root"])} == before  # nothing ran
    page.fill("#token", "wrong-" + TOKEN)
    page.locator("button[data-run=ok]").click()
    expect(page.locator("#message")).to_contain_text("401")  # (no eval: the page's CSP forbids it)
    page.fill("#token", TOKEN)
    page.locator("button[data-run=ok]").click()
    page.wait_for_url("**/runs/*")
    new = page.url.rsplit("/", 1)[1]
    assert new not in before
    recorded = [r for r in ledger_runs(project["root"]) if r["run_id"] == new]
    assert [(r["job"], r["trigger"]) for r in recorded] == [("ok", "manual")]
    assert TOKEN not in page.content()
    shot(page, tmp_path, "run-now")


def test_the_charts_stay_readable_with_1000_runs_and_200_tasks(site: Served, project: dict[str, Any], page: Any,
                                                               tmp_path: Path) -> None:
    page.goto(f"{site.url}jobs/busy?limit=50")
    chart = page.locator("svg.chart")
    frame = chart.bounding_box()
    marks = chart.locator(".mark")
    assert marks.count() == 1000
    boxes = marks.evaluate_all("ms => ms.map(m => m.getBoundingClientRect().toJSON())")
    assert all(frame["x"] <= b["x"] and b["x"] + b["width"] <= frame["x"] + frame["width"] + 1 for b in boxes)
    assert chart.locator("text.tick").count() >= 5  # both axes labelled
    assert page.locator("table.runs tbody tr").count() == 50
    shot(page, tmp_path, "job-1000-runs")

    page.goto(f"{site.url}runs/{project['wide']}")
    rows = page.locator("svg.gantt g.task")
    assert rows.count() == 200
    labels = page.locator("svg.gantt text.label").evaluate_all(
        "ls => ls.map(l => l.getBoundingClientRect().toJSON())")
    assert all(b["y"] >= a["y"] + a["height"] - 0.5 for a, b in zip(labels, labels[1:]))  # no label over another
    assert page.locator("svg.gantt rect.attempt").count() == 220
    assert page.locator("svg.gantt rect.attempt.s-retrying").count() == 20
    shot(page, tmp_path, "run-200-tasks")


def test_pause_resume_and_rerun_from_the_pages(site: Served, project: dict[str, Any], page: Any,
                                               tmp_path: Path) -> None:
    page.goto(f"{site.url}jobs/ok")
    page.fill("#token", TOKEN)
    page.fill("#pause-reason", "<i>migration</i> tonight")
    page.locator("button[data-pause=ok]").click()
    page.locator("button[data-resume=ok]").wait_for()  # the page came back paused
    assert "paused by web (127.0.0.1)" in page.locator("p.paused").inner_text()
    assert "<i>migration</i> tonight" in page.locator("p.paused").inner_text()
    shot(page, tmp_path, "job-paused")
    page.goto(site.url)
    assert "<i>migration</i> tonight" in page.locator("tr[data-job=ok] div.paused").inner_text()
    page.goto(f"{site.url}jobs/ok")
    page.locator("button[data-resume=ok]").click()
    page.locator("button[data-pause=ok]").wait_for()
    assert page.locator("p.paused").count() == 0

    failed = last_run(project["root"], "broken")
    page.goto(f"{site.url}runs/{failed['run_id']}")
    page.locator(f"button[data-rerun='{failed['run_id']}']").click()
    page.wait_for_url(lambda url: "/runs/" in url and not url.endswith(failed["run_id"]))
    new = page.url.rsplit("/", 1)[1]
    assert new != failed["run_id"]
    assert [r["trigger"] for r in ledger_runs(project["root"]) if r["run_id"] == new] == ["rerun"]
    shot(page, tmp_path, "rerun")
