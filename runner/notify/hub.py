"""What a process that runs jobs tells, and to whom: the alerts of its runs (outbox rows written
with each outcome, sent by the courier), missed, abandoned and late slots, dead-man pings, and the
metrics (served by the daemon, or written to the textfile after every run).

cli and schedule give each Runner `hub.watchers()`, and `close()` the hub before the process exits:
the alerts it queued, and those earlier processes left pending, are sent (or stay pending) by then.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from runner import clock, logs
from runner.model import Job, NotifyTarget, Project, targets_of
from runner.notify.courier import Courier
from runner.notify.events import is_late, late_slot, routed, run_events
from runner.notify.pings import Pinger
from runner.run.executor import Runner, RunRequest, RunResult, RunWatcher
from runner.state.ledger import Ledger
from runner.state.outbox import Outbox

if TYPE_CHECKING:
    from runner.cron import Schedule

log = logging.getLogger("runner.notify")

Pools = Callable[[], Iterable[tuple[str, Any]]]


def alert(job: str, event: str, target: NotifyTarget, run_id: str | None, slot: datetime | None,
          detail: str | None = None) -> dict[str, Any]:
    return dict(job=job, event=event, run_id=run_id, slot=slot, target=target.label, target_key=target.key,
                detail=detail)


class Hub:
    def __init__(self, project: Project, ledger: Ledger, jobs: Mapping[str, Job] | None = None,
                 serve_metrics: bool = False, send: Any = None):
        self.project = project
        self.ledger = ledger
        self.outbox = Outbox(ledger)
        self.pool_sources: list[Pools] = []
        self.metrics = None
        self.textfile = None
        self.server = None
        s = project.settings
        if s.metrics_listen or s.metrics_textfile:
            from runner.metrics.registry import RunMetrics

            self.metrics = RunMetrics(pools=self._pools)
            if s.metrics_textfile and not (serve_metrics and s.metrics_listen):
                from runner.metrics.textfile import TextfileWriter

                self.textfile = TextfileWriter(self.metrics, s.metrics_textfile)
        self._counted_since_write = False  # alerts counted after the textfile was last written
        self.courier = Courier(project, ledger, jobs, self._notified if self.metrics else None, send)
        self.pinger = Pinger(s.ping_timeout)
        self._late_settled: dict[str, datetime] = {}  # per job, the latest slot whose `late` is settled

    def _notified(self, target: str, ok: bool) -> None:
        assert self.metrics is not None
        self.metrics.notified(target, ok)
        self._counted_since_write = True

    def _pools(self) -> list[tuple[str, Any]]:
        return [p for source in self.pool_sources for p in source()]

    def update(self, project: Project, jobs: Mapping[str, Job]) -> None:
        """After the daemon reloaded conf and jobs."""
        self.project = self.courier.project = project
        self.courier.jobs = dict(jobs)

    def watchers(self) -> list[RunWatcher]:
        out: list[RunWatcher] = [self.metrics] if self.metrics is not None else []
        return out + [_Alerts(self)]  # after the metrics: it writes the textfile

    # -- lifecycle
    def start(self) -> None:
        """Alerts earlier processes left pending are sent while this one works."""
        self.courier.kick()

    def serve(self) -> None:
        """The daemon: /metrics on `metrics.listen`."""
        listen = self.project.settings.metrics_listen
        if self.metrics is None or listen is None:
            return
        from prometheus_client import start_http_server

        host, port = listen
        self.server, _ = start_http_server(port, addr=host, registry=self.metrics.registry)
        self.metrics.seed_last_success(self.ledger.last_successes(sorted(self.courier.jobs)))
        log.info("metrics served on http://%s:%d/metrics", host, port)

    def look(self) -> None:
        """The daemon's periodic look: targets and ping hosts that failed get one more try."""
        self.courier.retry_down()
        self.pinger.retry_down()
        self.courier.kick()

    def close(self) -> None:
        self.pinger.close()
        self.courier.close()
        if self._counted_since_write:  # the courier sends after the run's write: its counts go in now
            self._write_textfile()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.metrics is not None:
            self.metrics.close()

    def after_run(self, sent: bool) -> None:
        """A run or a record of missed slots ended: the textfile is written, and the courier is asked for
        a pass when it queued alerts (`sent`); what earlier processes left pending was asked for at
        start, and the daemon's look asks again."""
        if sent:
            self.courier.kick()
        self._write_textfile()

    def _write_textfile(self) -> None:
        if self.textfile is None:
            return
        self._counted_since_write = False
        try:
            self.textfile.write()
        except OSError as exc:
            log.warning("metrics textfile %s could not be written: %s", self.textfile.path, exc)

    # -- what the scheduler finds
    def _targets(self, job: Job, event: str) -> list[NotifyTarget]:
        return [t for t in targets_of(self.project.settings, job) if event in t.on]

    def missed_alerts(self, job: Job) -> Callable[[str, datetime | None], list[dict[str, Any]]] | None:
        targets = self._targets(job, "missed")
        return (lambda run_id, slot: [alert(job.name, "missed", t, run_id, slot) for t in targets]) if targets else None

    def abandoned_alerts(self, job: Job) -> Callable[[str, datetime | None], list[dict[str, Any]]] | None:
        targets = self._targets(job, "abandoned")
        return (lambda run_id, slot: [alert(job.name, "abandoned", t, run_id, slot) for t in targets]) \
            if targets else None

    def recorded(self, job: Job, missed: int = 0, abandoned: Sequence[str] = ()) -> None:
        """Missed slots and abandoned runs (by their trigger) were recorded: counted, and told."""
        if self.metrics is not None:
            self.metrics.slots_missed(job.name, missed)
            for trigger in abandoned:
                self.metrics.abandoned(job.name, trigger)
        told = (missed and self._targets(job, "missed")) or (abandoned and self._targets(job, "abandoned"))
        if missed or abandoned:
            self.after_run(sent=bool(told))

    def check_late(self, jobs: Sequence[Job], first_slots: Mapping[str, datetime | None],
                   schedules: Callable[[Job], "Schedule"], now: datetime | None = None) -> list[tuple[str, datetime]]:
        """Raise `late` for each job whose slot is `late_after` past its time without a success, once per
        slot; the (job, slot)s raised."""
        now = now or clock.now()
        raised = []
        for job in jobs:
            if job.late_after is None or not job.schedule:
                continue
            targets = self._targets(job, "late")
            if not targets:
                continue
            slot = late_slot(schedules(job), now, job.late_after)
            if slot is None or self._late_settled.get(job.name) == slot:
                continue
            statuses = [status for _, status, _ in self.outbox.slot_runs(job.name, slot)]
            if "success" in statuses or self.outbox.late_raised(job.name, slot):
                self._late_settled[job.name] = slot
                continue
            if not is_late(statuses, slot, first_slots.get(job.name)):
                continue
            runs = self.outbox.slot_runs(job.name, slot)
            run_id = runs[-1][0] if runs else None
            if self.outbox.raise_late(job.name, slot, [alert(job.name, "late", t, run_id, slot) for t in targets]):
                with logs.bound(job=job.name):
                    log.warning("job %s is late: slot %s has no successful run %.0fs after its time", job.name,
                                slot.isoformat(), job.late_after)
                raised.append((job.name, slot))
            self._late_settled[job.name] = slot
        if raised:
            self.courier.kick()
        return raised


def watched_runner(project: Project, ledger: Ledger, jobs: Mapping[str, Job]) -> tuple[Runner, Hub]:
    """A Runner whose runs alert, ping and count like every run by hand, and the started Hub telling of
    them; close the hub (it sends what its runs queued), then the runner."""
    hub = Hub(project, ledger, jobs)
    runner = Runner(project, ledger=ledger, watchers=hub.watchers())
    hub.pool_sources.append(runner.engines.pools)
    hub.start()
    return runner, hub


class _Alerts:
    """The RunWatcher of alerts and pings."""

    def __init__(self, hub: Hub):
        self.hub = hub
        # The run whose outcome queued alerts, on the thread that runs it: the executor asks for a run's
        # alerts and tells that it finished on the same thread; nothing stays behind when it could not
        # write the outcome (and so never told).
        self._queued = threading.local()

    def started(self, req: RunRequest, run_id: str) -> None:
        if req.job.ping:
            self.hub.pinger.ping(req.job.ping, "start", f"{req.job.name} run {run_id} started ({req.trigger})")

    def alerts(self, req: RunRequest, run_id: str, status: str) -> list[dict[str, Any]]:
        targets = targets_of(self.hub.project.settings, req.job)
        if not targets:
            return []
        wants_recovery = status == "success" and any("recovery" in t.on for t in targets)
        previous = self.hub.ledger.previous_outcome(req.job.name, run_id) if wants_recovery else None
        events = run_events(status, req.trigger, previous)
        queued = [alert(req.job.name, event, t, run_id, req.slot) for event, t in routed(events, targets)]
        self._queued.run_id = run_id if queued else None
        return queued

    def finished(self, req: RunRequest, result: RunResult) -> None:
        if req.job.ping:
            outcome = "success" if result.ok else "fail"
            body = f"{result.job} run {result.run_id} {result.status} in {result.seconds:.1f}s"
            if result.error:
                body += "\n" + logs.REDACTOR.scrub(result.error)
            self.hub.pinger.ping(req.job.ping, outcome, body)
        sent = getattr(self._queued, "run_id", None) == result.run_id
        self._queued.run_id = None
        self.hub.after_run(sent=sent)
