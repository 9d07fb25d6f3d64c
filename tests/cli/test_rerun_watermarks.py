"""--rerun and the watermark verbs: in process on SQLite, and as real subprocesses on a MariaDB state
store and source (a second process sees what the first changed)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from runner.state.ledger import Ledger
from tests.fixtures.core import clean_env, run_main, write_project
from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env

GATED = """\
description: a commits, b needs the gate table, c exports
database: warehouse
tasks:
  - name: a
    sql: INSERT INTO hits VALUES ('a', :run_id, :region)
  - name: b
    depends_on: [a]
    sql: INSERT INTO hits SELECT 'b', :run_id, :region FROM gate
  - name: c
    depends_on: [b]
    export: {query: "SELECT task, region FROM hits ORDER BY task", path: "reports/hits_{region}.csv"}
"""


def warehouse(project: Path) -> sqlite3.Connection:
    (project / "var").mkdir(exist_ok=True)
    return sqlite3.connect(project / "var" / "warehouse.db")


def test_rerun_runs_what_failed_with_the_runs_params_and_history_shows_the_chain(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"gated": GATED})
    wh = warehouse(project)
    wh.execute("CREATE TABLE hits (task TEXT, run_id TEXT, region TEXT)")
    wh.commit()
    code, out = run_main(project, "--job", "gated", "--param", "region=south", "--date", "2026-11-02")
    assert code == 1 and "no such table: gate" in out
    (failed,) = json.loads(run_main(project, "--history", "--format", "json")[1])
    wh.execute("CREATE TABLE gate (x INT)")
    wh.execute("INSERT INTO gate VALUES (1)")
    wh.commit()

    code, out = run_main(project, "--rerun", failed["run_id"][:8])
    assert code == 0, out
    assert f"re-running run {failed['run_id'][:8]} (failed) of job gated for 2026-11-02" in out
    assert "a  success  1 attempt" in out and f"done in run {failed['run_id']}" in out, out
    assert wh.execute("SELECT task, region FROM hits ORDER BY rowid").fetchall() == [("a", "south"), ("b", "south")]
    assert (project / "reports" / "hits_south.csv").read_text().splitlines() == ["task,region", "a,south",
                                                                                   "b,south"]
    again, first = json.loads(run_main(project, "--history", "--format", "json")[1])
    assert (again["trigger"], again["status"], again["run_date"], again["rerun_of"]) == (
        "rerun", "success", "2026-11-02", failed["run_id"])
    assert first["rerun_as"] == [again["run_id"]]
    text = run_main(project, "--history")[1]
    assert f"rerun of {failed['run_id'][:8]}" in text and f"re-run as {again['run_id'][:8]}" in text, text

    capsys.readouterr()
    assert run_main(project, "--rerun", again["run_id"])[0] == 2
    assert "succeeded: nothing to re-run" in capsys.readouterr().err
    assert run_main(project, "--rerun", failed["run_id"])[0] == 2
    assert f"was already re-run successfully as {again['run_id'][:8]}" in capsys.readouterr().err
    assert run_main(project, "--rerun", "0123456789")[0] == 2
    assert "no run 0123456789 in the ledger" in capsys.readouterr().err


def test_a_rerun_of_a_scheduled_slot_settles_it_on_a_shared_mariadb_store(
        tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    """Real processes: the slot fails under --due --job, --rerun (another process) takes its claim over,
    and then nothing of the slot is due any more."""
    url = mdb.url(fresh_db)
    p = SchedProject(tmp_path, {"mdb": url}, state_url=url)
    p.job("nightly", {"schedule": "* * * * *", "catch_up_window": "1h", "database": "mdb", "tasks": [
        {"name": "t", "sql": "INSERT INTO done_slots SELECT :run_date FROM gate"}]})
    conn = mdb.connect(db=fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE done_slots (d DATE)")
    failed = p.run("--due", "--job", "nightly")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (run,) = json.loads(p.run("--history", "--format", "json").stdout)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE gate (x INT)")
        cur.execute("INSERT INTO gate VALUES (1)")
    done = p.run("--rerun", run["run_id"])
    assert done.returncode == 0, done.stdout + done.stderr
    newest = json.loads(p.run("--history", "--format", "json").stdout)[0]
    assert (newest["slot"], newest["trigger"], newest["status"]) == (run["slot"], "rerun", "success")
    dry = p.run("--due", "--job", "nightly", "--dry-run").stdout
    assert "again" not in dry, dry  # (a new minute may have begun: its slot would run, not this one again)
    from runner.state.slots import slots

    ledger = Ledger(url)
    with ledger.engine.connect() as c:
        holder = c.execute(slots.select().where(slots.c.job == "nightly")).one()
    assert holder.run_id == newest["run_id"], "the re-run holds the slot's claim: the slot counts as succeeded"
    ledger.dispose()
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM done_slots")
        assert cur.fetchone()[0] == 1
    conn.close()


INCREMENTAL = """\
database: warehouse
tasks:
  - name: copy
    load: {source: shop, query: "SELECT id, note FROM src WHERE id > :watermark", table: dst, mode: upsert,
           key: [id], incremental: {column: id}}
"""


def test_watermarks_list_set_and_reset_are_typed_and_recorded(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"copy": INCREMENTAL}, databases="warehouse: {url: 'sqlite:///var/wh.db'}\n"
                                                                      "shop: {url: 'sqlite:///var/shop.db'}\n")
    (project / "var").mkdir()
    shop = sqlite3.connect(project / "var" / "shop.db")
    shop.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, note TEXT)")
    shop.executemany("INSERT INTO src VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 11)])
    shop.commit()
    code, out = run_main(project, "--watermarks")
    assert code == 0 and "(none: loads every row)" in out.splitlines()[1], out
    assert run_main(project, "--job", "copy")[0] == 0
    (doc,) = json.loads(run_main(project, "--watermarks", "--format", "json")[1])
    assert {"job", "task", "value", "updated"} <= doc.keys()
    assert (doc["job"], doc["task"], doc["value"], doc["column"]) == ("copy", "copy", "10", "id")
    (run,) = json.loads(run_main(project, "--history", "--format", "json")[1])
    assert doc["run_id"] == run["run_id"] and doc["updated"].endswith("Z")
    assert f"run {run['run_id'][:8]}" in run_main(project, "--watermarks", "--job", "copy")[1]

    capsys.readouterr()
    assert run_main(project, "--watermark", "copy.copy", "--set", "yesterday")[0] == 2
    err = capsys.readouterr().err
    assert "--set 'yesterday' for copy.copy is not a whole number" in err and "column id of the query on shop" in err
    for huge in ("9" * 40, "9" * 5000, "18446744073709551616"):  # past 64 bits: the load's bind would fail
        assert run_main(project, "--watermark", "copy.copy", "--set", huge)[0] == 2
        assert "is not a whole number of at most 64 bits" in capsys.readouterr().err
    assert run_main(project, "--watermark", "copy.nope", "--reset")[0] == 2
    assert "job copy has no incremental load task 'nope' (its incremental loads: copy.copy)" in capsys.readouterr().err
    code, out = run_main(project, "--watermark", "copy.copy", "--set", "7")
    assert code == 0 and "set to 7 by " in out and "(was 10;" in out, out
    listed = run_main(project, "--watermarks")[1]
    assert "set by " in listed, listed
    shop.execute("UPDATE src SET note = 'changed' WHERE id > 5")
    shop.commit()
    assert run_main(project, "--job", "copy")[0] == 0
    wh = sqlite3.connect(project / "var" / "wh.db")
    assert wh.execute("SELECT id FROM dst WHERE note = 'changed' ORDER BY id").fetchall() == [(8,), (9,), (10,)]
    code, out = run_main(project, "--watermark", "copy.copy", "--reset")
    assert code == 0 and "reset by" in out and "(was 10)" in out and "loads from every row" in out, out
    ledger = Ledger(f"sqlite:///{project / 'var' / 'runner-state.db'}")
    from runner.state.watermarks import changes

    with ledger.engine.connect() as conn:
        rows = conn.execute(changes.select().order_by(changes.c.id)).all()
    assert [(r.action, json.loads(r.old_value)["value"]["text"] if r.old_value else None) for r in rows] == [
        ("set", "10"), ("reset", "10")]
    assert all("@" in r.changed_by for r in rows)
    assert run_main(project, "--job", "copy")[0] == 0
    assert wh.execute("SELECT COUNT(*) FROM dst WHERE note = 'changed'").fetchall() == [(5,)]


def test_a_datetime_watermark_is_checked_against_the_mariadb_column(tmp_path: Path, mdb: PrivateMariaDB,
                                                                   fresh_db: str) -> None:
    """Real processes, MariaDB state store and source: a value that is not a date and time is refused,
    one that is is stored and a second process lists it."""
    url = mdb.url(fresh_db)
    p = SchedProject(tmp_path, {"shop": url, "wh": "sqlite:///var/wh.db"}, state_url=url)
    p.job("orders", {"database": "wh", "tasks": [{"name": "copy", "load": {
        "source": "shop", "query": "SELECT id, updated_at FROM src WHERE updated_at > :watermark", "table": "dst",
        "incremental": {"column": "updated_at"}}}]})
    conn = mdb.connect(db=fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE src (id INT PRIMARY KEY, updated_at DATETIME(6))")
    conn.close()
    refused = p.run("--watermark", "orders.copy", "--set", "2024-13-01 00:00:00")
    assert refused.returncode == 2 and "is not a date and time written as 2024-05-01 13:45:00" in refused.stderr, \
        refused.stderr
    assert "column updated_at of the query on shop" in refused.stderr
    done = p.run("--watermark", "orders.copy", "--set", "2024-05-01 06:30:00")
    assert done.returncode == 0 and "set to 2024-05-01 06:30:00" in done.stdout, done.stdout + done.stderr
    listed = json.loads(p.run("--watermarks", "--format", "json").stdout)
    assert [(d["task"], d["value"], d["action"]) for d in listed] == [("copy", "2024-05-01 06:30:00", "set")]


@pytest.mark.parametrize("target, named", [("../x.copy", "'../x'"), ("no.such.job.copy", "'no.such.job'")])
def test_a_watermark_of_a_job_that_is_not_there_names_the_job_as_written(
        tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture, target: str, named: str) -> None:  # noqa: F811
    root = write_project(tmp_path, {"ok": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n"})
    code, _ = run_main(root, "--watermark", target, "--reset")
    assert code == 2 and f"unknown job {named}" in caplog.text and "(jobs: ok)" in caplog.text
