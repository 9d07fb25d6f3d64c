"""The slot book on a real SQLite state store: claims that only one can win, batches that fall back to
one claim at a time, and attempt rows written together by many threads each getting its own id."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.run.executor import new_run_id
from runner.state.ledger import attempts
from runner.state.slots import Claim, MissedRecord, SlotLedger, SlotTaken

SLOT = datetime(2026, 11, 21, 2, 30, tzinfo=timezone.utc)


@pytest.fixture
def book(tmp_path: Path) -> SlotLedger:
    return SlotLedger(f"sqlite:///{tmp_path / 'state.db'}")


def test_a_slot_is_claimed_once(book: SlotLedger, tmp_path: Path) -> None:
    other = SlotLedger(f"sqlite:///{tmp_path / 'state.db'}")  # another process, as far as the store knows
    book.claim("nightly", SLOT, new_run_id(), "2026-11-21", "daemon")
    with pytest.raises(SlotTaken, match="slot 2026-11-21T02:30:00\\+00:00 was claimed by another process"):
        other.claim("nightly", SLOT, new_run_id(), "2026-11-21", "cron")
    assert [r["trigger"] for r in book.slot_runs("nightly")] == ["daemon"]


def test_a_batch_with_one_slot_taken_claims_the_others(book: SlotLedger) -> None:
    book.claim("b", SLOT, new_run_id(), "2026-11-21", "cron")
    claims = [Claim(job, SLOT, new_run_id(), "2026-11-21", "daemon") for job in ("a", "b", "c")]
    won = book.claim_many(claims)
    assert [c.job for c in won] == ["a", "c"]
    assert {job: [r["trigger"] for r in book.slot_runs(job)] for job in "abc"} == {
        "a": ["daemon"], "b": ["cron"], "c": ["daemon"]}


def test_missed_slots_are_recorded_with_the_claims_and_a_taken_one_is_left_alone(book: SlotLedger) -> None:
    """Missed slots of several jobs go in the claims' transaction; when one of those slots was claimed
    meanwhile, the rest are still recorded (each on its own) and the claims still won."""
    earlier = [SLOT - timedelta(days=d) for d in (3, 2, 1)]
    book.claim("a", earlier[1], new_run_id(), "2026-11-19", "cron")  # taken by another process
    stretch = MissedRecord("b", "due", "missed (test)", first=SLOT - timedelta(days=40), last=earlier[2], count=39,
                           run_date="2026-11-20", schedule="30 2 * * *", timezone="UTC")
    listed = MissedRecord("a", "due", "missed (test)", listed=tuple((t, t.date().isoformat()) for t in earlier))
    claims = [Claim(job, SLOT, new_run_id(), "2026-11-21", "due") for job in ("a", "b")]
    assert [c.job for c in book.claim_many(claims, [listed, stretch])] == ["a", "b"]
    assert [(r["slot"], r["status"], r["trigger"]) for r in book.slot_runs("a")] == [
        (earlier[0], "missed", "due"), (earlier[1], "running", "cron"), (earlier[2], "missed", "due"),
        (SLOT, "running", "due")]
    assert [(r["slot"], r["status"]) for r in book.slot_runs("b")] == [(earlier[2], "missed"), (SLOT, "running")]
    [span] = book.missed_spans("b")
    assert (span["first_slot"], span["last_slot"], span["slots"]) == (SLOT - timedelta(days=40), earlier[2], 39)


def test_a_takeover_needs_the_abandoned_run_to_still_hold_the_claim(book: SlotLedger) -> None:
    first, second = new_run_id(), new_run_id()
    book.claim("j", SLOT, first, "2026-11-21", "daemon")
    book.claim("j", SLOT, second, "2026-11-21", "daemon", takes_over=first)
    with pytest.raises(SlotTaken, match=f"no longer claimed by run {first}"):
        book.claim("j", SLOT, new_run_id(), "2026-11-21", "daemon", takes_over=first)
    assert [(r["run_id"], r["status"]) for r in book.slot_runs("j")] == [(first, "abandoned"), (second, "running")]


def test_attempts_started_together_are_written_together_each_with_its_own_id(book: SlotLedger) -> None:
    runs = [new_run_id() for _ in range(60)]
    ids: dict[str, int] = {}
    barrier = threading.Barrier(len(runs))

    def start(run_id: str) -> None:
        barrier.wait()
        ids[run_id] = book.start_attempt(run_id, f"task-{run_id[:6]}", 1)

    threads = [threading.Thread(target=start, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(set(ids.values())) == len(runs)
    for run_id, attempt_id in ids.items():
        (attempt,) = book.attempts_of(run_id)
        assert attempt.task == f"task-{run_id[:6]}" and attempt.status == "running"
    with book.engine.connect() as conn:
        by_id = {row.id: row.run_id for row in conn.execute(attempts.select())}
    assert all(by_id[i] == r for r, i in ids.items())


def test_job_slots_reads_every_job_at_once(book: SlotLedger) -> None:
    book.claim("a", SLOT, new_run_id(), "2026-11-21", "daemon")
    later = new_run_id()
    book.claim("a", SLOT + timedelta(days=1), later, "2026-11-22", "daemon")
    state = book.jobs_slots(["a", "none"])
    assert state["a"].last == SLOT + timedelta(days=1)
    assert {u.run_id for u in state["a"].unfinished} == {later} | {r["run_id"] for r in book.slot_runs("a")}
    assert state["none"].last is None and state["none"].unfinished == ()


def test_job_slots_names_the_run_holding_the_latest_claim_and_counts_the_slot_failures(book: SlotLedger) -> None:
    book.claim("a", SLOT - timedelta(days=1), new_run_id(), "2026-11-20", "cron")
    first, second = new_run_id(), new_run_id()
    book.claim("a", SLOT, first, "2026-11-21", "cron")
    book.finish_run(first, "failed", 1, 0, "task t failed")
    book.claim("a", SLOT, second, "2026-11-21", "due", takes_over=first)
    book.finish_run(second, "interrupted", 1, 0, "interrupted: KeyboardInterrupt")
    state = book.job_slots("a")
    assert (state.last, state.last_run, state.last_status, state.last_failures) == (SLOT, second, "interrupted", 2)
    assert state.last_ended is not None and state.last_ended.tzinfo is not None
    assert list(book.earlier_runs("a", SLOT, new_run_id()).items()) == [(second, "interrupted"), (first, "failed")]
