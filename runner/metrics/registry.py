"""The runner's metrics in one prometheus-client registry, fed by the runs of this process.

Names and labels are pinned (dashboards and alert rules rely on them): see NAMES. `trigger` is one
of daemon, cron, due, manual, rerun.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from runner.db import engines as db_engines
from runner.run.executor import RunRequest, RunResult

log = logging.getLogger("runner.metrics")

prometheus_client.disable_created_metrics()  # no *_created series: the textfile merge adds counters up

NAMES = (
    "runner_runs_total", "runner_last_success_timestamp_seconds", "runner_last_run_timestamp_seconds",
    "runner_run_duration_seconds", "runner_task_attempts_total", "runner_task_retries_total", "runner_rows_total",
    "runner_slots_missed_total", "runner_notifications_total", "runner_pool_connections",
    "runner_pool_wait_seconds",
)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, float("inf"))
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))

Pools = Callable[[], Iterable[tuple[str, Any]]]


def unix(dt: datetime) -> float:
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)).timestamp()


class PoolCollector:
    """runner_pool_connections{database,state}: in_use, idle and overflow connections of every pool,
    read at scrape time."""

    def __init__(self, pools: Pools):
        self.pools = pools

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("runner_pool_connections", "Connections of the database's pool by state",
                                   labels=["database", "state"])
        for database, pool in self.pools():
            if not hasattr(pool, "checkedout"):
                continue
            family.add_metric([database, "in_use"], pool.checkedout())
            family.add_metric([database, "idle"], pool.checkedin())
            family.add_metric([database, "overflow"], max(0, pool.overflow()))
        yield family


class RunMetrics:
    """The metrics of this process's runs; a RunWatcher (runs call it), and counted by the notifier."""

    def __init__(self, pools: Pools | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("runner_runs", "Runs by outcome and what started them", ["job", "status", "trigger"],
                            registry=r)
        self.last_success = Gauge("runner_last_success_timestamp_seconds",
                                  "When the job's latest successful run ended (Unix seconds)", ["job"], registry=r)
        self.last_run = Gauge("runner_last_run_timestamp_seconds",
                              "When the job's latest run with this status ended (Unix seconds)", ["job", "status"],
                              registry=r)
        self.duration = Histogram("runner_run_duration_seconds", "Duration of runs", ["job"], buckets=RUN_BUCKETS,
                                  registry=r)
        self.attempts = Counter("runner_task_attempts", "Task attempts by outcome (success, retried, failed)",
                                ["job", "task", "outcome"], registry=r)
        self.retries = Counter("runner_task_retries", "Task attempts retried, by the error number that caused it",
                               ["job", "task", "errno"], registry=r)
        self.rows = Counter("runner_rows", "Rows the tasks wrote, loaded, exported or returned", ["job", "task"],
                            registry=r)
        self.missed = Counter("runner_slots_missed", "Scheduled slots recorded as missed", ["job"], registry=r)
        self.notifications = Counter("runner_notifications", "Alerts sent (sent) or not (failed), by target",
                                     ["target", "outcome"], registry=r)
        self.pool_wait = Histogram("runner_pool_wait_seconds", "How long a checkout waited for a pooled connection",
                                   ["database"], buckets=WAIT_BUCKETS, registry=r)
        self._lock = threading.Lock()
        self.pool_collector = None
        if pools is not None:
            self.pool_collector = PoolCollector(pools)
            r.register(self.pool_collector)
        db_engines.checkout_waits.append(self._waited)

    def close(self) -> None:
        if self._waited in db_engines.checkout_waits:
            db_engines.checkout_waits.remove(self._waited)

    def _waited(self, database: str, seconds: float) -> None:
        self.pool_wait.labels(database).observe(seconds)

    # -- RunWatcher
    def started(self, req: RunRequest, run_id: str) -> None:
        pass

    def alerts(self, req: RunRequest, run_id: str, status: str) -> list[dict[str, Any]]:
        return []

    def finished(self, req: RunRequest, result: RunResult) -> None:
        from runner import clock

        job, now = result.job, clock.now().timestamp()
        self.runs.labels(job, result.status, req.trigger).inc()
        self.last_run.labels(job, result.status).set(now)
        if result.ok:
            self.last_success.labels(job).set(now)
        self.duration.labels(job).observe(result.seconds)
        for t in result.tasks:
            if t.attempts == 0:
                continue
            if t.retried:
                self.attempts.labels(job, t.name, "retried").inc(len(t.retried))
            for errno in t.retried:
                self.retries.labels(job, t.name, str(errno) if errno is not None else "none").inc()
            if t.status in ("success", "failed"):
                self.attempts.labels(job, t.name, t.status).inc()
            if t.rows:
                self.rows.labels(job, t.name).inc(t.rows)

    # -- what runs do not tell
    def slots_missed(self, job: str, count: int) -> None:
        if count:
            self.missed.labels(job).inc(count)

    def abandoned(self, job: str, trigger: str) -> None:
        self.runs.labels(job, "abandoned", trigger).inc()

    def notified(self, target: str, ok: bool) -> None:
        self.notifications.labels(target, "sent" if ok else "failed").inc()

    def seed_last_success(self, ended: dict[str, datetime]) -> None:
        """Last successes known from the ledger (a restarted daemon still knows them)."""
        for job, when in ended.items():
            self.last_success.labels(job).set(unix(when))
