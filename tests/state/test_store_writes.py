"""What the ledger's writes cost a shared state store: a write of one statement is one round trip in
autocommit mode (no COMMIT, no ROLLBACK after it), as the server's own counters show; the connections
that carry them heal after the server killed them; and a process whose runs queue no alert does not read
the outbox after every run."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.cli.main import main
from runner.state.ledger import attempts, runs
from runner.state import slots as slots_module
from runner.state.slots import SlotLedger
from tests.harness.mariadb import PrivateMariaDB
from tests.harness.postgres import PrivatePostgres
from tests.schedkit import SchedProject, seen_since

COUNTERS = ("Com_commit", "Com_rollback", "Com_insert", "Com_update")


def _status(mdb: PrivateMariaDB) -> dict[str, int]:
    conn = mdb.connect(db=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (%s, %s, %s, %s)", COUNTERS)
            return {name: int(value) for name, value in cur.fetchall()}
    finally:
        conn.close()


def _record_run(ledger: SlotLedger, run_id: str) -> None:
    ledger.start_run(run_id, "nightly", "2026-12-01", trigger="manual")
    attempt = ledger.start_attempt(run_id, "load", 1)
    ledger.finish_attempt(attempt, "success", rows=7)
    ledger.finish_run(run_id, "success", 1, 7)


def test_a_runs_writes_on_a_mariadb_store_commit_themselves_without_a_commit_or_rollback(
        mdb: PrivateMariaDB, fresh_db: str) -> None:
    ledger = SlotLedger(mdb.url(fresh_db))
    try:
        _record_run(ledger, "warm0000")  # tables made, connections open
        # The counters are the server's, for every session: a window in which some other session wrote
        # shows in its INSERT and UPDATE counts, and is measured again.
        for attempt in range(3):
            before = _status(mdb)
            _record_run(ledger, f"run0000{attempt}")
            after = _status(mdb)
            delta = {k: after[k] - before[k] for k in COUNTERS}
            if (delta["Com_insert"], delta["Com_update"]) == (2, 2):
                break
        assert delta == {"Com_commit": 0, "Com_rollback": 0, "Com_insert": 2, "Com_update": 2}, delta
        # committed: another session sees the whole record
        engine = sa.create_engine(mdb.url(fresh_db))
        with engine.connect() as conn:
            run = conn.execute(sa.select(runs.c.status, runs.c.rows).where(runs.c.run_id == "run00000")).one()
            attempt = conn.execute(sa.select(attempts.c.status, attempts.c.rows)
                                   .where(attempts.c.run_id == "run00000")).one()
        engine.dispose()
        assert tuple(run) == ("success", 7) and tuple(attempt) == ("success", 7)
    finally:
        ledger.dispose()


def test_the_ledgers_write_connections_are_replaced_after_the_server_killed_them(
        mdb: PrivateMariaDB, fresh_db: str) -> None:
    ledger = SlotLedger(mdb.url(fresh_db))
    try:
        _record_run(ledger, "first000")
        admin = mdb.connect(db=None, autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                            (fresh_db,))
                ids = [row[0] for row in cur.fetchall()]
                assert ids, "the ledger holds no connection to kill"
                for conn_id in ids:
                    cur.execute(f"KILL CONNECTION {int(conn_id)}")
        finally:
            admin.close()
        time.sleep(0.7)  # idle past the pool's ping window: the checkout finds them dead and reconnects
        _record_run(ledger, "second00")
        assert ledger.run("second00")["status"] == "success"
    finally:
        ledger.dispose()


def test_runs_that_queue_no_alert_leave_the_outbox_unread_until_the_process_ends(tmp_path: Path) -> None:
    p = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"}, state_url=f"sqlite:///{tmp_path}/var/state.db")
    for i in range(12):
        p.job(f"job{i:02d}", {"schedule": "* * * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    seen_since(p.state_url, [f"job{i:02d}" for i in range(12)], datetime.now(timezone.utc) - timedelta(minutes=3))
    reads: list[str] = []

    def _seen(_conn, _cur, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM runner_notifications" in statement:
            reads.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", _seen)
    try:
        assert main(["--conf", str(p.root / "conf"), "--due", "-q"], out=io.StringIO()) == 0
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", _seen)
    ran = SlotLedger(p.state_url).history(limit=100)
    assert sorted(r["job"] for r in ran if r["status"] == "success") == [f"job{i:02d}" for i in range(12)]
    # one pass when the process starts (what earlier processes left pending), one when it ends
    assert len(reads) <= 2, reads


def _start_together(ledger: SlotLedger, n: int) -> dict[str, int]:
    """n threads start an attempt each at one moment; the attempt id each was given, by run id."""
    ledger.start_attempt("warm0000", "t", 1)  # tables made, a connection open
    go = threading.Barrier(n)
    got: dict[str, int] = {}

    def start(i: int) -> None:
        go.wait()
        got[f"run{i:05d}"] = ledger.start_attempt(f"run{i:05d}", f"task{i}", 1)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return got


def _owners(url: str, ids: list[int]) -> dict[int, tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {r.id: (r.run_id, r.task) for r in conn.execute(
                sa.select(attempts.c.id, attempts.c.run_id, attempts.c.task).where(attempts.c.id.in_(ids)))}
    finally:
        engine.dispose()


def _mariadb_starts(mdb: PrivateMariaDB, db: str, n: int) -> int:
    """n attempts started together on a MariaDB store, each found under its own id: the INSERTs it took."""
    ledger = SlotLedger(mdb.url(db))
    try:
        before = _status(mdb)
        got = _start_together(ledger, n)
        inserts = _status(mdb)["Com_insert"] - before["Com_insert"]
    finally:
        ledger.dispose()
    assert len(got) == n and len(set(got.values())) == n
    owners = _owners(mdb.url(db), list(got.values()))
    assert all(owners[attempt_id] == (run_id, f"task{int(run_id[3:])}") for run_id, attempt_id in got.items())
    return inserts


def test_attempts_starting_together_on_a_mariadb_store_are_written_together_each_with_its_own_id(
        mdb: PrivateMariaDB, fresh_db: str) -> None:
    inserts = _mariadb_starts(mdb, fresh_db, 60)
    assert inserts < 30, f"{inserts} INSERTs for 60 attempts starting at one moment"


def test_more_attempts_at_once_than_one_statement_carries_are_written_in_turn_oldest_first(
        mdb: PrivateMariaDB, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slots_module, "ATTEMPTS_AT_ONCE", 7)
    assert _mariadb_starts(mdb, fresh_db, 60) >= 60 // 7


def test_attempts_starting_together_on_a_postgresql_store_each_get_their_own_row(
        pg: PrivatePostgres, fresh_pg: str) -> None:
    url = pg.url(fresh_pg)
    ledger = SlotLedger(url)
    try:
        got = _start_together(ledger, 40)
    finally:
        ledger.dispose()
    owners = _owners(url, list(got.values()))
    assert len(got) == 40 and all(owners[a] == (r, f"task{int(r[3:])}") for r, a in got.items())


def test_a_mariadb_store_keeps_microseconds_so_runs_a_moment_apart_keep_their_order(
        mdb: PrivateMariaDB, fresh_db: str) -> None:
    ledger = SlotLedger(mdb.url(fresh_db))
    try:
        for i in range(5):  # five runs within one second
            ledger.start_run(f"quick{i:03d}", f"job{i}", "2026-12-01")
            time.sleep(0.01)
        newest_first = [r["run_id"] for r in ledger.history(limit=5)]
    finally:
        ledger.dispose()
    assert newest_first == [f"quick{i:03d}" for i in reversed(range(5))]
    conn = mdb.connect(db=None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COLUMN_NAME, DATETIME_PRECISION FROM information_schema.COLUMNS WHERE "
                        "TABLE_SCHEMA = %s AND TABLE_NAME = 'runner_runs' AND DATA_TYPE = 'datetime'", (fresh_db,))
            precision = dict(cur.fetchall())
    finally:
        conn.close()
    assert precision == {"slot": 6, "started_at": 6, "ended_at": 6}
