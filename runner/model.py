"""Frozen models of the configuration. No I/O here: config.py builds these, everything else reads them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class RetrySpec:
    """How often and how long a task is retried after a retryable error."""

    attempts: int = 5
    max_delay: float = 300.0  # cap of one backoff sleep, seconds
    window: float | None = None  # total time a task may spend retrying, seconds
    base_delay: float = 0.5


@dataclass(frozen=True)
class PoolSpec:
    """A database's connection pool (databases.yml `pool:`)."""
    size: int = 5
    max_overflow: int = 0
    timeout: float = 30.0
    recycle: int = 1800
    pre_ping: bool = True
    ping_skip_ms: int = 500  # a connection used this recently is handed out without a ping
    leak_seconds: float | None = None  # report a connection held longer than this


@dataclass(frozen=True)
class Database:
    """A named database of conf/databases.yml: its url, pool and driver arguments."""
    name: str
    url: str
    pool: PoolSpec = PoolSpec()
    connect_args: Mapping[str, object] = field(default_factory=dict)
    markers: bool = True  # exactly-once commit markers in this database
    driver_missing: str | None = None  # what to install when the url's driver is not installed


@dataclass(frozen=True)
class Statement:
    """One SQL statement and where it was written (for error messages)."""

    sql: str
    file: str
    line: int

    @property
    def first_line(self) -> str:
        """The first line of SQL past leading comments: the line that `line` points at."""
        text = self.sql.strip()
        while True:
            if text.startswith(("--", "#")):
                text = text.partition("\n")[2].lstrip()
            elif text.startswith("/*") and not text.startswith(("/*!", "/*+")) and "*/" in text:
                text = text.partition("*/")[2].lstrip()
            else:
                return text.splitlines()[0] if text else ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ExportSpec:
    """An export task's query and the file it writes."""
    query: Statement
    path: str
    format: str = "csv"  # csv | jsonl
    compress: bool = False
    outside_project: bool = False  # the path may leave the project (and --param values may move it)


@dataclass(frozen=True)
class IncrementalSpec:
    """The watermark column of an incremental task, and its value before the first run."""
    column: str
    initial: object = None


@dataclass(frozen=True)
class LoadSpec:
    """A load task: rows of a query on the source database written into a table of the target."""
    source: str
    query: Statement
    table: str
    mode: str = "append"  # append | replace | upsert
    key: tuple[str, ...] = ()
    incremental: IncrementalSpec | None = None
    create: bool = True
    batch_rows: int = 10000


@dataclass(frozen=True)
class Task:
    """One task of a job file: what it runs, where, after which tasks, and how it is retried."""
    name: str
    database: str
    statements: tuple[Statement, ...] = ()
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetrySpec | None = None
    idempotent: bool = False
    export: ExportSpec | None = None
    load: LoadSpec | None = None
    line: int | None = None
    retry_timeouts: bool = False

    @property
    def kind(self) -> str:
        if self.export is not None:
            return "export"
        if self.load is not None:
            return "load"
        return "sql"


EVENTS = ("failure", "missed", "late", "recovery", "abandoned", "success")
DEFAULT_EVENTS = ("failure", "missed", "late", "recovery", "abandoned")


@dataclass(frozen=True)
class NotifyTarget:
    """Where alerts go: an Apprise URL, the events it wants, and the label it is known by in logs,
    metrics and --history (its `name`, or the scheme and a digest of the URL: never a credential)."""

    url: str
    label: str
    on: tuple[str, ...] = DEFAULT_EVENTS
    timeout: float = 10.0  # seconds one delivery may take, connecting included
    key_path: str = field(default="notify", compare=False)  # where it is written: "notify.0.url"
    line: int | None = field(default=None, compare=False)  # and on which line of its file

    @property
    def key(self) -> str:
        """Identifies the URL in the outbox without storing it (it may hold credentials)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Job:
    """A job file of jobs/: its tasks, schedule, parameters and notifications."""
    name: str
    file: str
    tasks: tuple[Task, ...]
    description: str = ""
    schedule: str | None = None
    timezone: str = "UTC"
    database: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)  # YAML scalars, types kept
    retry: RetrySpec = RetrySpec()
    timeout: float | None = None
    max_parallel: int = 1
    catch_up: str = "latest"  # latest | none
    catch_up_window: float = 86400.0
    rerun_abandoned: bool = False
    enabled: bool = True  # false: the job's slots are recorded as paused, and a run by hand needs --force
    notify: tuple[NotifyTarget, ...] | None = None  # None: the targets of conf/runner.yml
    late_after: float | None = None  # seconds after a slot's time without a success: `late`
    ping: str | None = None  # dead-man URL (healthchecks.io convention)

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)


@dataclass(frozen=True)
class WebSpec:
    """The status pages and API (`web:` in conf/runner.yml). An empty token leaves the site read-only."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


@dataclass(frozen=True)
class Settings:
    """conf/runner.yml, with its defaults."""
    root: Path
    timezone: str = "UTC"
    state_url: str = "sqlite:///var/runner-state.db"
    retry: RetrySpec = RetrySpec()
    log_format: str = "text"
    log_dir: str = "var/log"
    misfire_grace: float = 3600.0  # how late a slot may still start with catch_up: none
    stop_grace: float = 60.0  # how long the daemon lets running jobs finish after SIGTERM
    history_days: int = 400  # runs, attempts and markers older than this are pruned
    env_file: str | None = None  # a dotenv file whose variables fill ${VAR} in conf/ (cron has no environment)
    notify: tuple[NotifyTarget, ...] = ()
    metrics_listen: tuple[str, int] | None = None  # the daemon serves /metrics here
    metrics_textfile: str | None = None  # node_exporter textfile, written at the end of every run
    ping_timeout: float = 10.0
    web: WebSpec | None = None  # served by the daemon when set; `--serve` uses WebSpec() without it


def targets_of(settings: Settings, job: Job) -> tuple[NotifyTarget, ...]:
    """A job's notify list replaces the default one of conf/runner.yml."""
    return job.notify if job.notify is not None else settings.notify


@dataclass(frozen=True)
class Project:
    """Settings and databases of one project (the folder holding conf/)."""

    root: Path
    conf_dir: Path
    jobs_dir: Path
    settings: Settings
    databases: Mapping[str, Database]
    secrets: tuple[str, ...] = ()  # values from env_file kept out of logs and messages


FAILED = ("failed", "interrupted")  # run statuses that ended without success: the slot is still due
