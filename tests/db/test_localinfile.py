"""LOAD DATA LOCAL INFILE only ever sends the runner's own stream: a file a server names is never read.

Against the real private MariaDB (which asks the client for whatever file a statement names) and
against a rogue server that asks every client for a secret file on every statement: no setting of
databases.yml or runner.yml can turn LOCAL INFILE on, and every connection the runner opens answers
such a request with nothing and a clear error."""

from __future__ import annotations

import logging
from pathlib import Path

import pymysql
import pytest

from runner.db.localinfile import REFUSED, StreamingConnection
from tests.faultkit import FaultProject, execute, rows_of
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.rogue_mysql import RogueMySQL

SECRET = "1\tpassword hunter2\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def connect(server: PrivateMariaDB, db: str) -> StreamingConnection:
    return StreamingConnection(host=server.host, port=server.port, user="root", password="", database=db,
                               charset="utf8mb4")


def test_a_file_named_by_the_server_is_never_sent(secret: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    execute(mdb, fresh_db, "CREATE TABLE t (id INT, s VARCHAR(20))")
    conn = connect(mdb, fresh_db)
    try:
        with caplog.at_level(logging.WARNING, logger="runner.load"), conn.cursor() as cur:
            with pytest.raises(pymysql.err.OperationalError) as info:  # nothing armed: refused
                cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE t")
            assert info.value.args[0] == REFUSED and "nothing was sent" in info.value.args[1]
            cur.execute("SELECT 1")  # the connection stayed in step
            assert cur.fetchall() == ((1,),)
        conn.commit()
    finally:
        conn.close()
    assert rows_of(mdb, fresh_db, "SELECT * FROM t") == []
    assert f"asked for the local file '{secret}'" in caplog.text


def test_the_armed_stream_is_sent_whatever_name_the_statement_gives(secret: Path, mdb: PrivateMariaDB,
                                                                     fresh_db: str) -> None:
    execute(mdb, fresh_db, "CREATE TABLE t (id INT, s VARCHAR(20))")
    conn = connect(mdb, fresh_db)
    try:
        with conn.armed(lambda: iter([b"7\tours\n", b"8\talso ours\n"])), conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE t")
            assert cur.rowcount == 2
        with conn.cursor() as cur, pytest.raises(pymysql.err.OperationalError):  # armed for one statement only
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE t")
        conn.commit()
    finally:
        conn.close()
    assert rows_of(mdb, fresh_db, "SELECT * FROM t ORDER BY id") == [(7, "ours"), (8, "also ours")]


# ------------------------------------------------------------------------------------- a rogue server

def test_the_rogue_server_really_takes_the_file_from_a_client_that_allows_it(secret: Path) -> None:
    """The fault is real: stock PyMySQL with local_infile on hands the secret over."""
    with RogueMySQL(str(secret)) as rogue:
        conn = pymysql.connect(host="127.0.0.1", port=rogue.port, user="x", password="y", local_infile=True)
        conn.cursor().execute("SELECT 1")
        conn.close()
    assert rogue.received == [SECRET.encode()]


def test_the_armed_connection_sends_only_its_stream_to_a_rogue_server(secret: Path) -> None:
    with RogueMySQL(str(secret)) as rogue:
        conn = StreamingConnection(host="127.0.0.1", port=rogue.port, user="x", password="y")
        with pytest.raises(pymysql.err.OperationalError) as info:
            conn.cursor().execute("SELECT 'anything'")
        assert info.value.args[0] == REFUSED
        with conn.armed(lambda: iter([b"the load's own rows\n"])):
            conn.cursor().execute("LOAD DATA LOCAL INFILE 'rows' INTO TABLE t")
        conn.close()
    assert rogue.received == [b"", b"the load's own rows\n"]


ROGUE_SETTINGS = {
    "url-query": ({"url": "{url}?local_infile=1"}, None, "shop.url", "local_infile in the url's query"),
    "url-query-true": ({"url": "{url}?local_infile=true"}, None, "shop.url", "local_infile in the url's query"),
    "connect-args": ({"url": "{url}", "connect_args": {"local_infile": True}}, None,
                     "shop.connect_args.local_infile", "local_infile in connect_args"),
    "client-flag": ({"url": "{url}", "connect_args": {"client_flag": 2 | 128}}, None,
                    "shop.connect_args.client_flag", "client_flag with the CLIENT_LOCAL_FILES bit (128)"),
    "connector-python": ({"url": "{url}", "connect_args": {"allow_local_infile": "yes"}}, None,
                         "shop.connect_args.allow_local_infile", "allow_local_infile in connect_args"),
    "state-url": ({"url": "{url}"}, "{url}?local_infile=1", "state_url", "local_infile in the state store url's"),
}


@pytest.mark.parametrize("case", list(ROGUE_SETTINGS))
def test_no_setting_turns_local_infile_on_and_check_says_why(case: str, tmp_path: Path, secret: Path) -> None:
    spec, state_url, key, fragment = ROGUE_SETTINGS[case]
    with RogueMySQL(str(secret)) as rogue:
        db = {k: (v.format(url=rogue.url()) if isinstance(v, str) else v) for k, v in spec.items()}
        project = FaultProject(tmp_path, {"shop": db})
        if state_url:
            (tmp_path / "conf" / "runner.yml").write_text(f"state_url: '{state_url.format(url=rogue.url())}'\n")
        project.job("steal", {"database": "shop", "tasks": [{"name": "t", "sql": "SELECT 'payload'"}]})
        check = project.cli("--check")
        run = project.cli("--job", "steal")
    assert check.code == 2 and run.code == 2
    assert f"[{key}]: {fragment}" in check.output and "is refused" in check.output
    assert "read any file" in check.output
    assert "refused" in run.output and "nothing was run" in run.output
    assert rogue.connections == 0  # refused before anything connected
    assert "pw@" not in check.output + run.output


def test_every_connection_the_runner_opens_refuses_a_rogue_servers_request(tmp_path: Path, secret: Path) -> None:
    with RogueMySQL(str(secret)) as rogue:
        project = FaultProject(tmp_path, {"shop": {"url": rogue.url()}, "local": {"url": "sqlite:///var/l.db"}})
        project.job("steal", {"database": "shop", "tasks": [{"name": "t", "sql": "SELECT 'payload'"}]})
        project.job("export", {"database": "shop", "tasks": [
            {"name": "e", "export": {"query": "SELECT 'payload'", "path": "out.csv"}}]})
        project.job("load", {"database": "local", "tasks": [
            {"name": "l", "load": {"source": "shop", "query": "SELECT 1 AS a", "table": "copy"}}]})
        outcomes = {job: project.run(job) for job in ("steal", "export", "load")}
    for job, outcome in outcomes.items():
        assert outcome.code == 1, (job, outcome.output)
        assert [a.status for a in outcome.attempts] == ["failed"], job  # refused at once, never retried
        assert "2068" in (outcome.attempts[0].error or "") or outcome.attempts[0].errno == 2068, job
    assert len(rogue.received) >= 3 and set(rogue.received) == {b""}  # asked every time, given nothing
    assert not (tmp_path / "out.csv").exists()
