"""LOAD DATA LOCAL INFILE only ever sends the runner's own stream: a file the server names is never read,
on the real private MariaDB (which asks the client for whatever file the statement names)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runner.db.localinfile import StreamingConnection
from tests.faultkit import execute, rows_of
from tests.harness.mariadb import PrivateMariaDB


def connect(server: PrivateMariaDB, db: str) -> StreamingConnection:
    return StreamingConnection(host=server.host, port=server.port, user="root", password="", database=db,
                               charset="utf8mb4")


def test_a_file_named_by_the_server_is_never_sent(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("1\tpassword\n")
    execute(mdb, fresh_db, "CREATE TABLE t (id INT, s VARCHAR(20))")
    conn = connect(mdb, fresh_db)
    try:
        with caplog.at_level(logging.WARNING, logger="runner.load"), conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE t")  # nothing armed: an empty file
            assert cur.rowcount == 0
        conn.commit()
    finally:
        conn.close()
    assert rows_of(mdb, fresh_db, "SELECT * FROM t") == []
    assert "sent an empty file instead" in caplog.text


def test_the_armed_stream_is_sent_whatever_name_the_statement_gives(tmp_path: Path, mdb: PrivateMariaDB,
                                                                     fresh_db: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("1\tpassword\n")
    execute(mdb, fresh_db, "CREATE TABLE t (id INT, s VARCHAR(20))")
    conn = connect(mdb, fresh_db)
    try:
        with conn.armed(lambda: iter([b"7\tours\n", b"8\talso ours\n"])), conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE t")
            assert cur.rowcount == 2
        with conn.cursor() as cur:  # armed for one statement only
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE t")
            assert cur.rowcount == 0
        conn.commit()
    finally:
        conn.close()
    assert rows_of(mdb, fresh_db, "SELECT * FROM t ORDER BY id") == [(7, "ours"), (8, "also ours")]
