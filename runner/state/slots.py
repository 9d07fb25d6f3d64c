"""Slots in the state store: each scheduled run is keyed by (job, slot) and claimed by one process only.

`runner_slots` has PRIMARY KEY (job, slot). A scheduled run starts by inserting its claim and its run
row in one transaction, so on several hosts sharing a MySQL state store only one insert can win and
the others skip quietly; there is never a claim without a run row. Missed slots get a claim and a
`missed` run row; a run left `running` by a process that died is marked `abandoned`, and a re-run
takes the slot's claim over from it in the transaction that starts the re-run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa

from runner import clock
from runner.db.engines import create_tables
from runner.errors import RunnerError
from runner.model import FAILED
from runner.state.ledger import HOST, Ledger, Timestamp, alert_row, attempts, notifications, runs

# The alerts of an event that has no run of its own yet: (run id, slot) -> outbox rows.
AlertsOf = Callable[[str, datetime | None], Sequence[dict[str, Any]]]
_ALERT = notifications.insert()

slots = sa.Table(
    "runner_slots", sa.MetaData(),
    sa.Column("job", sa.String(128), primary_key=True),
    sa.Column("slot", Timestamp, primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("claimed_at", Timestamp, nullable=False),
)

# A stretch of missed slots recorded as one `missed` run (too many to record one by one): which slots.
missed_slots = sa.Table(
    "runner_missed_slots", sa.MetaData(),
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("job", sa.String(128), nullable=False, index=True),
    sa.Column("first_slot", Timestamp, nullable=False),
    sa.Column("last_slot", Timestamp, nullable=False),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("schedule", sa.String(255), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
)

# Abandoned runs are looked up by (job, status) under the lock before every scheduled run.
_running_index = sa.Index("ix_runner_runs_job_status", runs.c.job, runs.c.status)

# Built once: these run for every scheduled slot (a statement built per call costs its cache key each time).
_latest = sa.select(slots.c.job, sa.func.max(slots.c.slot).label("slot")).where(
    slots.c.job.in_(sa.bindparam("b_jobs", expanding=True))).group_by(slots.c.job).subquery("latest")
_earlier = runs.alias("earlier")
_FAILURES = sa.select(sa.func.count()).where(
    _earlier.c.job == _latest.c.job, _earlier.c.slot == _latest.c.slot, _earlier.c.status.in_(FAILED),
).correlate(_latest).scalar_subquery()
# The latest claimed slot of each job, the run holding its claim, and how often the slot failed.
_LAST_SLOTS = sa.select(_latest.c.job, _latest.c.slot, runs.c.run_id, runs.c.status, runs.c.ended_at,
                        _FAILURES.label("failures")).select_from(
    _latest.join(slots, sa.and_(slots.c.job == _latest.c.job, slots.c.slot == _latest.c.slot))
    .outerjoin(runs, runs.c.run_id == slots.c.run_id))
# SQLite reads MAX(slot) ... GROUP BY job by scanning every claim of the jobs (40 ms per job at 100k claims);
# the MAX of one job is a single index lookup. So on SQLite the latest slots are looked up job by job,
# then its claim and run (MySQL's GROUP BY reads one index entry per job already).
_MAX_SLOT = sa.select(sa.func.max(slots.c.slot)).where(slots.c.job == sa.bindparam("b_job"))
_HELD_FAILURES = sa.select(sa.func.count()).where(
    _earlier.c.job == slots.c.job, _earlier.c.slot == slots.c.slot, _earlier.c.status.in_(FAILED),
).correlate(slots).scalar_subquery()
_CLAIM_OF = sa.select(slots.c.job, slots.c.slot, runs.c.run_id, runs.c.status, runs.c.ended_at,
                      _HELD_FAILURES.label("failures")).select_from(
    slots.outerjoin(runs, runs.c.run_id == slots.c.run_id)).where(
    slots.c.job == sa.bindparam("b_job"), slots.c.slot == sa.bindparam("b_slot"))
_UNFINISHED = sa.select(runs.c.job, runs.c.run_id, runs.c.slot, runs.c.host, runs.c.pid, runs.c.trigger,
                        runs.c.started_at).where(runs.c.job.in_(sa.bindparam("b_jobs", expanding=True)),
                                                 runs.c.status == "running")
_EARLIER = sa.select(runs.c.run_id, runs.c.status).where(
    runs.c.job == sa.bindparam("b_job"), runs.c.slot == sa.bindparam("b_slot"),
    runs.c.run_id != sa.bindparam("b_run_id"), runs.c.status.in_(("abandoned", "failed", "interrupted")),
).order_by(runs.c.started_at.desc())
_CLAIM = slots.insert()
_TAKE_OVER = slots.update().where(slots.c.job == sa.bindparam("b_job"), slots.c.slot == sa.bindparam("b_slot"),
                                  slots.c.run_id == sa.bindparam("b_run_id"))
_ABANDON = runs.update().where(runs.c.run_id == sa.bindparam("b_run_id"), runs.c.status == "running")
_RUN = runs.insert()
_SPAN = missed_slots.insert()
_START_ATTEMPTS = attempts.insert().returning(attempts.c.id, sort_by_parameter_order=True)


ATTEMPTS_AT_ONCE = 500  # attempt starts written in one statement (below SQLAlchemy's 1,000 rows a page)


class _DriverInsert:
    """An INSERT of many rows handed to the driver's executemany as tuples of values already bound the
    way SQLAlchemy binds them. On SQLite, SQLAlchemy's processing of each row took longer than SQLite's
    insert of it, and the claims of the 1,000 jobs due at one moment are written at the slot's time."""

    def __init__(self, table: sa.Table, dialect: sa.Dialect):
        compiled = table.insert().compile(dialect=dialect, column_keys=[c.key for c in table.c])
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or ())
        self._bind = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in self.names]

    def execute(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert `rows` (dicts by column name); values equal in every row are bound once."""
        common = {}
        for i, name in enumerate(self.names):
            first = rows[0][name]
            if all(r[name] == first for r in rows):
                common[i] = self._value(i, first)
        varied = [i for i in range(len(self.names)) if i not in common]
        template = [common.get(i) for i in range(len(self.names))]
        params = []
        for r in rows:
            row = list(template)
            for i in varied:
                row[i] = self._value(i, r[self.names[i]])
            params.append(tuple(row))
        conn.exec_driver_sql(self.sql, params)

    def _value(self, i: int, value: Any) -> Any:
        bind = self._bind[i]
        return value if bind is None or value is None else bind(value)


class SlotTaken(RunnerError):
    """Another process claimed this slot first (it ran it, or is running it)."""


@dataclass(frozen=True)
class Unfinished:
    """A run of the job recorded as running."""

    run_id: str
    slot: datetime | None
    host: str
    pid: int
    trigger: str
    started_at: datetime


@dataclass(frozen=True)
class Claim:
    """A slot's claim: the run that holds it."""
    job: str
    slot: datetime
    run_id: str
    run_date: str
    trigger: str


@dataclass(frozen=True)
class MissedRecord:
    """Missed slots of a job to record: each of `listed` (slot, run date) in a row of its own, or (with
    nothing listed) a stretch of `count` slots of `schedule` from `first` to `last` in one row."""

    job: str
    trigger: str
    reason: str
    listed: tuple[tuple[datetime, str], ...] = ()
    first: datetime | None = None
    last: datetime | None = None
    count: int = 0
    run_date: str = ""
    schedule: str = ""
    timezone: str = ""
    alerts: AlertsOf | None = field(default=None, compare=False)  # the outbox rows of each missed run


def _missed_rows(rec: MissedRecord, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                             list[dict[str, Any]], list[dict[str, Any]]]:
    """The claims, `missed` run rows, stretch rows and alerts (one per missed run row, so a stretch of a
    day of slots is one alert) that record `rec`."""
    base = dict(job=rec.job, trigger=rec.trigger, host=HOST, pid=os.getpid())
    done = dict(started_at=now, ended_at=now, status="missed", attempts=0, rows=0)
    if rec.listed:
        claims = [dict(base, slot=_naive(slot), run_id=uuid.uuid4().hex, claimed_at=now) for slot, _ in rec.listed]
        runs_ = [dict(base, **done, slot=c["slot"], run_id=c["run_id"], run_date=d, error=rec.reason)
                 for c, (_, d) in zip(claims, rec.listed)]
        return claims, runs_, [], _alerts(rec, [(c["run_id"], slot) for c, (slot, _) in zip(claims, rec.listed)])
    assert rec.first is not None and rec.last is not None
    run_id = uuid.uuid4().hex
    text = (f"{rec.count} slots missed, {_fmt(rec.first)} to {_fmt(rec.last)} (every slot of \"{rec.schedule}\" "
            f"{rec.timezone} in between): {rec.reason}")
    claim = dict(base, slot=_naive(rec.last), run_id=run_id, claimed_at=now)
    run = dict(base, **done, slot=claim["slot"], run_id=run_id, run_date=rec.run_date, error=text)
    span = dict(run_id=run_id, job=rec.job, first_slot=_naive(rec.first), last_slot=_naive(rec.last),
                slots=rec.count, schedule=rec.schedule, timezone=rec.timezone)
    return [claim], [run], [span], _alerts(rec, [(run_id, rec.last)])


def _alerts(rec: MissedRecord, missed_runs: list[tuple[str, datetime]]) -> list[dict[str, Any]]:
    if rec.alerts is None:
        return []
    return [alert_row(a) for run_id, slot in missed_runs for a in rec.alerts(run_id, slot)]


@dataclass(frozen=True)
class JobSlots:
    """What the ledger says of a job's slots: the latest claimed, and runs left unfinished."""
    last: datetime | None  # the latest slot with a claim (run, running, missed or abandoned)
    unfinished: tuple[Unfinished, ...]
    last_run: str | None = None  # the run holding the latest slot's claim
    last_status: str | None = None
    last_ended: datetime | None = None
    last_failures: int = 0  # runs of the latest slot that failed or were interrupted


@dataclass
class _Ticket:
    """An attempt row waiting to be written with others."""

    row: dict[str, Any]
    id: int | None = None
    error: Exception | None = None


class _Turns:
    """Writers of one process take turns (SQLite has one writer at a time, and its busy handler sleeps
    in steps of up to 100 ms), and writes that start a run go before the bookkeeping of runs already
    under way, so that the jobs due at one moment reach their first tasks first. Re-entrant."""

    def __init__(self) -> None:
        lock = threading.Lock()
        self._first = threading.Condition(lock)
        self._later = threading.Condition(lock)
        self._owner: int | None = None
        self._depth = 0
        self._firsts_waiting = 0
        self._laters_waiting = 0

    @contextlib.contextmanager
    def turn(self, first: bool) -> Iterator[None]:
        me = threading.get_ident()
        with self._first:
            if self._owner == me:
                self._depth += 1
            elif first:
                self._firsts_waiting += 1
                while self._owner is not None:
                    self._first.wait()
                self._firsts_waiting -= 1
                self._owner, self._depth = me, 1
            else:
                self._laters_waiting += 1
                while self._owner is not None or self._firsts_waiting:
                    self._later.wait()
                self._laters_waiting -= 1
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._first:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    if self._firsts_waiting:
                        self._first.notify()
                    elif self._laters_waiting:
                        self._later.notify()


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None)


def _fmt(dt: datetime) -> str:
    return _naive(dt).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _aware(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=timezone.utc) if dt is not None and dt.tzinfo is None else dt


class SlotLedger(Ledger):
    """The run ledger with slot claims. A scheduled run is recorded by `claim` (claim and run row in
    one transaction); `Runner.run` then finds it recorded and goes on with its tasks."""

    def __init__(self, url: str, create: bool = True):
        super().__init__(url, create)
        self._turns = _Turns() if self.engine.dialect.name == "sqlite" else None
        self._claimed: set[str] = set()
        self._pending: list[_Ticket] = []
        self._pending_lock = threading.Lock()
        self._starts = threading.Lock()  # a server's turn of attempt starts (SQLite: the writers' turns)
        self._slots_ready = False

    def ensure_schema(self) -> None:
        super().ensure_schema()
        if not self._slots_ready:
            with self._turn(first=False):
                create_tables(self.engine, slots, missed_slots, _running_index)
            self._slots_ready = True

    def reopen(self) -> None:
        self._slots_ready = False
        super().reopen()

    def _record_claim(self, conn: sa.Connection, run_id: str, job: str, run_date: str, trigger: str,
                      slot: datetime | None) -> None:
        if slot is not None:
            conn.execute(_CLAIM, dict(job=job, slot=_naive(slot), run_id=run_id, trigger=trigger, host=HOST,
                                      pid=os.getpid(), claimed_at=_naive(clock.now())))

    def _turn(self, first: bool) -> Any:
        return self._turns.turn(first) if self._turns is not None else contextlib.nullcontext()

    def _write(self, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        with self._turn(first=False):
            return super()._write(stmt, params)

    @contextlib.contextmanager
    def _begin(self, first: bool = False) -> Iterator[sa.Connection]:
        self.ensure_schema()
        with self._turn(first), self.engine.begin() as conn:
            yield conn

    def start_attempt(self, run_id: str, task: str, attempt: int) -> int:
        """The attempts starting at one moment are written together (group commit): the first writer to
        get its turn writes up to ATTEMPTS_AT_ONCE of those waiting, in one statement (on SQLite in the
        process's turn of writers; on MariaDB 10.5+ and PostgreSQL, which have INSERT ... RETURNING, in
        autocommit mode while the other writes go on beside it; MySQL writes each on its own). A
        thousand jobs starting at one slot then reach their first tasks in a few round trips, not a
        thousand. A statement that fails fails the starts it carried, as a failed write of one would."""
        self.ensure_schema()  # connected first: what the server can do is known from then on (and memoized)
        if not getattr(self.engine.dialect, "insert_executemany_returning_sort_by_parameter_order", False):
            return super().start_attempt(run_id, task, attempt)  # SQLite before 3.35 has no RETURNING
        ticket = _Ticket(dict(run_id=run_id, task=task, attempt=attempt, started_at=_naive(clock.now()),
                              status="running"))
        with self._pending_lock:
            self._pending.append(ticket)
        while ticket.id is None and ticket.error is None:  # the oldest waiting go first
            with self._turn(first=True) if self._turns is not None else self._starts:
                if ticket.id is not None or ticket.error is not None:
                    break
                with self._pending_lock:  # one statement: more would commit page by page in autocommit
                    batch, self._pending = self._pending[:ATTEMPTS_AT_ONCE], self._pending[ATTEMPTS_AT_ONCE:]
                try:
                    with self._committing() as conn:
                        ids = conn.execute(_START_ATTEMPTS, [t.row for t in batch]).scalars().all()
                except Exception as exc:
                    for t in batch:
                        t.error = exc
                    continue
                for t, attempt_id in zip(batch, ids):
                    t.id = attempt_id
        if ticket.error is not None:
            raise ticket.error
        assert ticket.id is not None
        return int(ticket.id)


    # -- reading
    def job_slots(self, job: str) -> JobSlots:
        return self.jobs_slots([job])[job]

    def jobs_slots(self, jobs: Sequence[str]) -> dict[str, JobSlots]:
        """The latest claimed slot (with the run holding its claim) and the running runs of each job:
        two queries for all of them."""
        self.ensure_schema()
        names = list(jobs)
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                last = {}
                for job in names:
                    slot = conn.execute(_MAX_SLOT, {"b_job": job}).scalar()
                    if slot is not None:
                        last[job] = conn.execute(_CLAIM_OF, {"b_job": job, "b_slot": slot}).one()
            else:
                last = {r.job: r for r in conn.execute(_LAST_SLOTS, {"b_jobs": names})}
            running = conn.execute(_UNFINISHED, {"b_jobs": names}).all()
        unfinished: dict[str, list[Unfinished]] = {}
        for r in running:
            unfinished.setdefault(r.job, []).append(
                Unfinished(r.run_id, _aware(r.slot), r.host, r.pid, r.trigger, _aware(r.started_at)))
        out = {}
        for job in names:
            held = tuple(unfinished.get(job, ()))
            latest = last.get(job)
            out[job] = JobSlots(None, held) if latest is None else JobSlots(
                _aware(latest.slot), held, latest.run_id, latest.status, _aware(latest.ended_at),
                int(latest.failures or 0))
        return out

    # -- claiming
    @functools.cached_property
    def _fast(self) -> tuple[_DriverInsert, _DriverInsert] | None:
        """On SQLite, the inserts of claims and run rows compiled for the driver (on first use: a run by
        hand never claims many)."""
        if self.engine.dialect.name != "sqlite":
            return None
        return _DriverInsert(slots, self.engine.dialect), _DriverInsert(runs, self.engine.dialect)

    def claim_many(self, claims: Sequence[Claim], missed: Sequence[MissedRecord] = ()) -> list[Claim]:
        """Claim several slots (each with its run row) and record missed ones, in one transaction; the
        claims that were won. When another process claimed one of them first, each is tried on its own."""
        if len(claims) + len(missed) > 1:
            now = _naive(clock.now())
            rows = [dict(run_id=c.run_id, trigger=c.trigger, host=HOST, pid=os.getpid(), job=c.job,
                         slot=_naive(c.slot)) for c in claims]
            lost_claims, lost_runs, spans, alerts = [], [], [], []
            for rec in missed:
                c_, r_, s_, a_ = _missed_rows(rec, now)
                lost_claims += c_
                lost_runs += r_
                spans += s_
                alerts += a_
            try:
                with self._begin(first=True) as conn:
                    all_claims = [dict(r, claimed_at=now) for r in rows] + lost_claims
                    started = [dict(r, run_date=c.run_date, started_at=now, ended_at=None, status="running",
                                    attempts=0, rows=0, error=None) for r, c in zip(rows, claims)]
                    if self._fast is not None:
                        if all_claims:
                            self._fast[0].execute(conn, all_claims)
                        if started:
                            self._fast[1].execute(conn, started)
                    else:
                        if all_claims:
                            conn.execute(_CLAIM, all_claims)
                        if started:
                            conn.execute(_RUN, started)
                    if lost_runs:
                        conn.execute(_RUN, lost_runs)
                    if spans:
                        conn.execute(_SPAN, spans)
                    if alerts:
                        conn.execute(_ALERT, alerts)
                self._claimed.update(c.run_id for c in claims)
                return list(claims)
            except sa.exc.IntegrityError:
                pass
        for rec in missed:
            self._record(rec)
        won = []
        for c in claims:
            try:
                self.claim(c.job, c.slot, c.run_id, c.run_date, c.trigger)
                won.append(c)
            except SlotTaken:
                continue
        return won

    def claim(self, job: str, slot: datetime, run_id: str, run_date: str, trigger: str,
              takes_over: str | None = None, abandoned_alerts: AlertsOf | None = None) -> None:
        """Claim the slot and record its run as running, in one transaction; SlotTaken when another
        process claimed it first. `takes_over`: the abandoned run whose claim this run takes over
        (`abandoned_alerts` tell of it, when it was still recorded as running)."""
        now = _naive(clock.now())
        claim = dict(run_id=run_id, trigger=trigger, host=HOST, pid=os.getpid(), claimed_at=now)
        with self._begin(first=True) as conn:
            if takes_over is None:
                try:
                    conn.execute(_CLAIM, dict(claim, job=job, slot=_naive(slot)))
                except sa.exc.IntegrityError:
                    raise SlotTaken(f"job {job}: slot {slot.isoformat()} was claimed by another process") from None
            else:
                abandoned = conn.execute(_ABANDON, dict(
                    b_run_id=takes_over, status="abandoned", ended_at=now,
                    error=f"abandoned: its process died or lost the job's lock; run again as {run_id} by {HOST} "
                          f"pid {os.getpid()}")).rowcount
                alerts = abandoned_alerts(takes_over, slot) if abandoned and abandoned_alerts else ()
                if alerts:
                    conn.execute(_ALERT, [alert_row(a) for a in alerts])
                taken = conn.execute(_TAKE_OVER, dict(claim, b_job=job, b_slot=_naive(slot),
                                                      b_run_id=takes_over)).rowcount
                if taken != 1:
                    raise SlotTaken(f"job {job}: slot {slot.isoformat()} is no longer claimed by run {takes_over}")
            conn.execute(_RUN, dict(run_id=run_id, job=job, run_date=run_date, slot=_naive(slot), trigger=trigger,
                                    host=HOST, pid=os.getpid(), started_at=now, status="running", attempts=0,
                                    rows=0))
        self._claimed.add(run_id)

    def start_run(self, run_id: str, job: str, run_date: str, trigger: str = "manual",
                  slot: datetime | None = None, status: str = "running") -> None:
        if run_id in self._claimed:  # recorded with its claim
            self._claimed.discard(run_id)
            return
        super().start_run(run_id, job, run_date, trigger, slot, status)

    # -- what did not run
    def abandon(self, run: Unfinished, job: str, alerts: AlertsOf | None = None) -> bool:
        """Mark a run whose process died (or lost the lock) as abandoned, with the alerts that tell of
        it; False if it finished meanwhile."""
        with self._begin() as conn:
            done = conn.execute(_ABANDON, dict(
                b_run_id=run.run_id, status="abandoned", ended_at=_naive(clock.now()),
                error=f"abandoned: run by {run.host} pid {run.pid} ({run.trigger}) never finished and job {job}'s "
                      f"lock was free; found by {HOST} pid {os.getpid()}")).rowcount == 1
            rows = alerts(run.run_id, run.slot) if done and alerts else ()
            if rows:
                conn.execute(_ALERT, [alert_row(a) for a in rows])
        return done

    def _record(self, rec: MissedRecord) -> int:
        """Record `rec` in one transaction; slots claimed meanwhile by another process are left alone
        (a stretch is still recorded, without the claim of its last slot)."""
        claims, runs_, spans, alerts = _missed_rows(rec, _naive(clock.now()))
        try:
            with self._begin() as conn:
                conn.execute(_CLAIM, claims)
                conn.execute(_RUN, runs_)
                if spans:
                    conn.execute(_SPAN, spans)
                if alerts:
                    conn.execute(_ALERT, alerts)
            return len(runs_)
        except sa.exc.IntegrityError:
            pass
        if len(rec.listed) > 1:
            return sum(self._record(MissedRecord(rec.job, rec.trigger, rec.reason, listed=(one,), alerts=rec.alerts))
                       for one in rec.listed)
        if rec.listed:
            return 0
        with self._begin() as conn:
            conn.execute(_RUN, runs_)
            conn.execute(_SPAN, spans)
            if alerts:
                conn.execute(_ALERT, alerts)
        return 1

    def missed_spans(self, job: str) -> list[dict[str, Any]]:
        """The stretches of missed slots recorded as one row each, oldest first."""
        self.ensure_schema()
        q = sa.select(missed_slots).where(missed_slots.c.job == job).order_by(missed_slots.c.first_slot)
        with self.engine.connect() as conn:
            return [{**r._mapping, "first_slot": _aware(r.first_slot), "last_slot": _aware(r.last_slot)}
                    for r in conn.execute(q)]

    def record_paused(self, job: str, paused: Sequence[tuple[datetime, str]], trigger: str, reason: str,
                      paused_before: datetime | None = None) -> int:
        """A claim and a `paused` run row for each (slot, run_date) of a paused job, all in one
        transaction (one by one when another process claimed one of them meanwhile); like a missed
        slot's, the claim keeps the slot from being caught up later. `paused_before`: the slots between
        it and the first listed one fell in the pause too (too many to list; one row says so)."""
        now = _naive(clock.now())
        base = dict(trigger=trigger, host=HOST, pid=os.getpid())
        rows = [dict(base, job=job, slot=_naive(slot), run_id=uuid.uuid4().hex, run_date=date_)
                for slot, date_ in paused]
        run_row = dict(started_at=now, ended_at=now, status="paused", attempts=0, rows=0, error=reason)

        def write(conn: sa.Connection, batch: list[dict[str, Any]]) -> None:
            conn.execute(_CLAIM, [dict(job=r["job"], slot=r["slot"], run_id=r["run_id"], claimed_at=now, **base)
                                  for r in batch])
            conn.execute(_RUN, [dict(r, **run_row) for r in batch])

        recorded = 0
        try:
            with self._begin() as conn:
                write(conn, rows)
            recorded = len(rows)
        except sa.exc.IntegrityError:
            for row in rows:
                try:
                    with self._begin() as conn:
                        write(conn, [row])
                    recorded += 1
                except sa.exc.IntegrityError:
                    continue
        if paused_before is not None and paused:
            self._write(_RUN, dict(base, run_id=uuid.uuid4().hex, job=job, run_date=paused[0][1], slot=None,
                                   **dict(run_row, error=f"{reason}; every slot after "
                                          f"{paused_before.isoformat()} and before {paused[0][0].isoformat()} "
                                          "fell in the pause too")))
        return recorded

    def earlier_runs(self, job: str, slot: datetime, run_id: str) -> dict[str, str]:
        """The runs of the slot before `run_id` that may have committed tasks (run id -> status), newest
        first: a re-run of the slot leaves the tasks they committed alone."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            rows = conn.execute(_EARLIER, {"b_job": job, "b_slot": _naive(slot), "b_run_id": run_id}).all()
        return {r.run_id: r.status for r in rows}

    def slot_holder(self, job: str, slot: datetime) -> str | None:
        """The run holding the slot's claim, or None when the slot has none."""
        self.ensure_schema()
        q = sa.select(slots.c.run_id).where(slots.c.job == job, slots.c.slot == _naive(slot))
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one_or_none()

    def first_slots(self, jobs: Sequence[str]) -> dict[str, datetime | None]:
        """The earliest claimed slot of each job (None for a job that has none)."""
        self.ensure_schema()
        q = sa.select(slots.c.job, sa.func.min(slots.c.slot)).where(slots.c.job.in_(list(jobs))).group_by(slots.c.job)
        with self.engine.connect() as conn:
            found = {job: _aware(first) for job, first in conn.execute(q)}
        return {job: found.get(job) for job in jobs}

    def slot_runs(self, job: str) -> list[dict[str, Any]]:
        """Every run of the job that has a slot, oldest slot first (for reports and tests)."""
        self.ensure_schema()
        q = sa.select(runs).where(runs.c.job == job, runs.c.slot.is_not(None)).order_by(runs.c.slot,
                                                                                       runs.c.started_at)
        with self.engine.connect() as conn:
            return [{**r._mapping, "slot": _aware(r.slot)} for r in conn.execute(q)]


def missed_counts(ledger: Ledger, run_ids: Sequence[str]) -> dict[str, int]:
    """How many slots each of these `missed` runs stands for, when it is a stretch recorded as one row
    (a run not listed stands for its own slot only)."""
    ids = [r for r in run_ids if r]
    if not ids:
        return {}
    q = sa.select(missed_slots.c.run_id, missed_slots.c.slots).where(missed_slots.c.run_id.in_(ids))
    try:
        with ledger.engine.connect() as conn:
            return {r.run_id: int(r.slots) for r in conn.execute(q)}
    except sa.exc.DBAPIError:  # a ledger from before stretches were kept has no such table
        return {}
