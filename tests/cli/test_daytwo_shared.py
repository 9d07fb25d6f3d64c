"""The day-two verbs as real processes on one MariaDB state store, each command a process of its own
(as two hosts sharing the store would run them): a pause made by one is seen by --list of the next and
refuses a run by hand there, --history filters and --history --run read what another process wrote,
--watermark --set and --reset change what the next process lists, and --due --dry-run writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.mariadb import PrivateMariaDB
from tests.schedkit import SchedProject


def test_the_verbs_on_a_shared_mariadb_state_store(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str) -> None:
    url = mdb.url(fresh_db)
    p = SchedProject(tmp_path, {"mdb": url}, state_url=url)
    p.job("tick", {"schedule": "0 3 * * *", "database": "mdb", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    p.job("bad", {"database": "mdb", "tasks": [{"name": "boom", "sql": "SELECT * FROM no_such_table"}]})
    p.job("copy", {"database": "mdb", "tasks": [{"name": "load", "load": {
        "source": "mdb", "query": "SELECT id FROM src WHERE id > :watermark", "table": "dst",
        "create": True, "incremental": {"column": "id"}}}]})
    conn = mdb.connect(db=fresh_db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE src (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO src VALUES (1), (2), (3)")
    conn.close()

    paused = p.run("--pause", "tick", "--reason", "warehouse migration")
    assert paused.returncode == 0, paused.stderr
    (tick,) = [j for j in json.loads(p.run("--list", "--format", "json").stdout)["jobs"] if j["job"] == "tick"]
    assert tick["paused"] and tick["reason"] == "warehouse migration"
    refused = p.run("--job", "tick")
    assert refused.returncode == 2 and "job tick is paused by " in refused.stderr, refused.stderr
    assert p.run("--job", "tick", "--force").returncode == 0
    assert p.run("--resume", "tick").returncode == 0
    assert not [j for j in json.loads(p.run("--list", "--format", "json").stdout)["jobs"] if j["paused"]]

    assert p.run("--job", "bad").returncode == 1
    assert p.run("--job", "copy").returncode == 0
    failed = json.loads(p.run("--history", "--status", "failed", "--since", "1h", "--format", "json").stdout)
    assert [(r["job"], r["status"]) for r in failed] == [("bad", "failed")]
    assert "no_such_table" in failed[0]["error"]
    latest = json.loads(p.run("--history", "--limit", "1", "--format", "json").stdout)
    assert [r["job"] for r in latest] == ["copy"]
    record = p.run("--history", "--run", failed[0]["run_id"][:8])
    assert record.returncode == 0 and f"run {failed[0]['run_id']} of job bad" in record.stdout
    assert "no_such_table" in record.stdout
    misspelt = p.run("--history", "--job", "tik")
    assert misspelt.returncode == 2 and "did you mean tick?" in misspelt.stderr

    (mark,) = json.loads(p.run("--watermarks", "--format", "json").stdout)
    assert (mark["job"], mark["task"], mark["value"]) == ("copy", "load", "3")
    assert p.run("--watermark", "copy.load", "--set", "two").returncode == 2  # not a whole number
    assert p.run("--watermark", "copy.load", "--set", "1").returncode == 0
    assert json.loads(p.run("--watermarks", "--format", "json").stdout)[0]["value"] == "1"
    reset = p.run("--watermark", "copy.load", "--reset")
    assert reset.returncode == 0 and "(was 1)" in reset.stdout, reset.stdout + reset.stderr
    assert json.loads(p.run("--watermarks", "--format", "json").stdout)[0]["value"] is None

    before = p.run("--history", "--limit", "100", "--format", "json").stdout
    dry = p.run("--due", "--dry-run")
    assert dry.returncode == 0 and "nothing is run or recorded" in dry.stdout, dry.stdout + dry.stderr
    assert p.run("--history", "--limit", "100", "--format", "json").stdout == before
