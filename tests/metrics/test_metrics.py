"""The pinned metrics with their values: the node_exporter textfile after two jobs' cron runs on a
real MariaDB (one of them retried after a lock wait timeout, 1205, caused by a row lock the test
holds), and /metrics scraped from a running daemon while a task holds a pooled connection."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.faultkit import admin, execute
from tests.harness.mariadb import PrivateMariaDB
from tests.notifykit import free_port
from tests.schedkit import SchedProject, stop, wait_for

FAST = {"attempts": 5, "base_delay": 0.05, "max_delay": 0.3}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_the_textfile_after_two_jobs_cron_runs_holds_both_with_the_right_values(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "INSERT INTO t VALUES (1, 0), (2, 0)")
    p = SchedProject(tmp_path, {"wh": mdb.url(fresh_db)},
                     settings={"metrics": {"textfile": "var/metrics/runner.prom"}, "retry": FAST})
    p.job("alpha", {"schedule": "* * * * *", "database": "wh", "tasks": [
        {"name": "bump", "sql": "SET SESSION innodb_lock_wait_timeout = 1;\nUPDATE t SET v = v + 1 WHERE id = 1"}]})
    p.job("beta", {"schedule": "* * * * *", "database": "wh", "tasks": [{"name": "count", "sql": "SELECT id FROM t"}]})
    holder = admin(mdb, fresh_db)
    holder.autocommit(False)
    with holder.cursor() as cur:
        cur.execute("SELECT v FROM t WHERE id = 1 FOR UPDATE")
    started = time.time()
    proc = p.start("--due", "--job", "alpha")
    try:
        import sqlite3

        def retried() -> bool:
            try:
                with sqlite3.connect(f"file:{tmp_path / 'var' / 'state.db'}?mode=ro", uri=True) as conn:
                    return bool(conn.execute("SELECT 1 FROM runner_task_attempts WHERE status = 'retrying'").fetchall())
            except sqlite3.OperationalError:
                return False
        wait_for("attempt 1 to fail with a lock wait timeout", retried, 30)
    finally:
        holder.rollback()
        holder.close()
    assert proc.wait(60) == 0, proc.stdout.read() if proc.stdout else ""
    assert p.run("--due", "--job", "beta").returncode == 0

    prom = tmp_path / "var" / "metrics" / "runner.prom"
    found = samples(prom.read_text())
    assert value(found, "runner_runs_total", job="alpha", status="success", trigger="cron") == 1
    assert value(found, "runner_runs_total", job="beta", status="success", trigger="cron") == 1
    for job in ("alpha", "beta"):  # beta's run kept alpha's last success
        assert started - 1 <= value(found, "runner_last_success_timestamp_seconds", job=job) <= time.time()
        assert value(found, "runner_last_run_timestamp_seconds", job=job, status="success") is not None
        assert value(found, "runner_run_duration_seconds_count", job=job) == 1
    assert value(found, "runner_task_retries_total", job="alpha", task="bump", errno="1205") == 1
    assert value(found, "runner_task_attempts_total", job="alpha", task="bump", outcome="retried") == 1
    assert value(found, "runner_task_attempts_total", job="alpha", task="bump", outcome="success") == 1
    assert value(found, "runner_rows_total", job="alpha", task="bump") == 1
    assert value(found, "runner_rows_total", job="beta", task="count") == 2
    assert value(found, "runner_pool_wait_seconds_count", database="wh") >= 2
    assert not any(name == "runner_pool_connections" for name, _ in found), "a gauge of a live process"

    assert p.run("--due", "--job", "beta").returncode == 0  # nothing due: the slot of this minute ran
    assert p.run("--job", "beta").returncode == 0
    again = samples(prom.read_text())
    assert value(again, "runner_runs_total", job="beta", status="success", trigger="manual") == 1
    assert value(again, "runner_runs_total", job="beta", status="success", trigger="cron") == 1
    assert value(again, "runner_runs_total", job="alpha", status="success", trigger="cron") == 1
    assert value(again, "runner_rows_total", job="beta", task="count") == 4
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    assert not list(prom.parent.glob("*.tmp*")), "written through a temporary file renamed over it"


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return samples(r.read().decode())


def test_metrics_scraped_from_a_running_daemon(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    port = free_port()
    p = SchedProject(tmp_path, {"wh": mdb.url(fresh_db)}, settings={"metrics": {"listen": f"127.0.0.1:{port}"}})
    p.job("sleepy", {"schedule": "*/3 * * * * *", "database": "wh",
                     "tasks": [{"name": "hold", "sql": "SELECT SLEEP(2)"}]})
    proc = p.start("--scheduler", log=tmp_path / "daemon.log")
    try:
        def reachable() -> dict | None:
            try:
                return scrape(port)
            except OSError:
                return None
        wait_for("/metrics to answer", reachable, 30)
        held = wait_for("a pooled connection in use while the task sleeps", lambda: (
            (m := scrape(port)) and value(m, "runner_pool_connections", database="wh", state="in_use") == 1 and m),
            30)
        assert value(held, "runner_pool_connections", database="wh", state="overflow") == 0
        done = wait_for("a run counted", lambda: (
            (m := scrape(port)) and (value(m, "runner_runs_total", job="sleepy", status="success", trigger="daemon")
                                     or 0) >= 1 and m), 30)
        assert value(done, "runner_last_success_timestamp_seconds", job="sleepy") > time.time() - 60
        assert value(done, "runner_run_duration_seconds_sum", job="sleepy") >= 2
        assert value(done, "runner_pool_wait_seconds_count", database="wh") >= 1
        assert value(done, "runner_task_attempts_total", job="sleepy", task="hold", outcome="success") >= 1
    finally:
        assert stop(proc) == 0, (tmp_path / "daemon.log").read_text()


def test_a_textfile_that_is_not_text_is_written_anew_and_said_so(tmp_path: Path) -> None:
    """A metrics file of bytes that are not UTF-8 (a disk error, a file of someone else's) failed every run's
    write with a traceback, and so stayed as it was for good."""
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, settings={"metrics": {"textfile": "var/m/runner.prom"}})
    p.job("ok", {"database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    prom = tmp_path / "var" / "m" / "runner.prom"
    prom.parent.mkdir(parents=True)
    for junk in (b"\xff\xfe not text", b"garbage {{{ not prom\n"):
        prom.write_bytes(junk)
        done = p.run("--job", "ok")
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert f"metrics textfile {prom} is not a Prometheus text file" in done.stderr, done.stderr
        families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
        assert [s.value for s in families["runner_runs"].samples if s.name == "runner_runs_total"] == [1.0]
