"""Load conf/*.yml and jobs/*.yml into frozen models, reporting every problem at once.

Two layers: shape and types first (unknown keys, wrong types), then meaning (unknown databases,
dependency cycles, parameters a statement uses but nobody sets). Nothing here touches a database.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from .errors import ConfigError, Problem
from .model import (Database, ExportSpec, IncrementalSpec, Job, LoadSpec, PoolSpec, Project, RetrySpec,
                    Settings, Statement, Task)
from .sqltext import UnparsableStatement, split_statements
from .yamlfile import KeyPath, YamlDoc, read_yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?"
                       r"\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

JOB_KEYS = {"description", "schedule", "timezone", "database", "params", "retry", "timeout", "max_parallel",
            "tasks", "catch_up", "catch_up_window", "rerun_abandoned"}
TASK_KEYS = {"name", "description", "sql", "sql_file", "export", "load", "depends_on", "database", "timeout",
             "retry", "idempotent", "retry_timeouts"}
RETRY_KEYS = {"attempts", "max_delay", "window", "base_delay"}
POOL_KEYS = {"size", "max_overflow", "timeout", "recycle", "pre_ping", "ping_skip_ms", "leak_seconds"}
DB_KEYS = {"url", "pool", "connect_args", "markers"}
SETTINGS_KEYS = {"timezone", "state_url", "retry", "log_format", "log_dir", "misfire_grace", "stop_grace"}
EXPORT_KEYS = {"query", "path", "format", "compress"}
LOAD_KEYS = {"source", "query", "table", "mode", "key", "incremental", "create", "batch_rows"}
PARAM_TYPES = (str, int, float, bool, type(None), date)  # date covers datetime


def default_conf_dir() -> Path:
    return Path(os.environ.get("RUNNER_CONF") or "conf")


def default_jobs_dir(conf_dir: Path) -> Path:
    env = os.environ.get("RUNNER_JOBS")
    return Path(env) if env else conf_dir.resolve().parent / "jobs"


def parse_duration(value: Any) -> float | None:
    """Seconds from 90, "90s", "10m", "1h30m", "1d" (units d, h, m, s, largest first); None when the text
    is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def expand_vars(text: str, env: Mapping[str, str], missing: list[str]) -> str:
    """Expand ${VAR} and ${VAR:-default} as the shell does: ${VAR} set to empty is empty, the default
    stands in for an unset or empty VAR; names of unset variables without default go to `missing`."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if default is not None:
            return value or default
        if value is None:
            missing.append(name)
            return ""
        return value

    return _VAR.sub(sub, text)


def env_override_name(db_name: str) -> str:
    return "RUNNER_DB_" + re.sub(r"[^A-Za-z0-9]", "_", db_name).upper() + "_URL"


def resolve_url(url: str, root: Path) -> str:
    """Make a relative SQLite file path absolute against the project root (cron starts jobs from /)."""
    m = re.match(r"^(sqlite(?:\+\w+)?):///(.*)$", url)
    if not m or not m.group(2) or m.group(2).startswith((":memory:", "/")) or m.group(2).startswith("file:"):
        return url
    path, _, query = m.group(2).partition("?")
    full = (root / path).resolve()
    return f"{m.group(1)}:///{full}" + (f"?{query}" if query else "")


@dataclass
class _Checker:
    """Collects problems while reading one YAML document."""

    doc: YamlDoc
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: KeyPath, message: str) -> None:
        key = ".".join(str(p) for p in path)
        self.problems.append(Problem(self.doc.file, key, message, self.doc.line(path)))

    def mapping(self, value: Any, path: KeyPath, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping of keys, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(path + (key,), f"unknown key '{key}' (known keys: {', '.join(sorted(allowed))})")
        return value

    def typed(self, m: dict[str, Any], key: str, path: KeyPath, kind: type | tuple[type, ...], default: Any,
              check: Callable[[Any], bool] | None = None, hint: str = "") -> Any:
        if key not in m or m[key] is None:
            return default
        value = m[key]
        ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
        if ok and check is not None:
            ok = check(value)
        if not ok:
            self.add(path + (key,), f"invalid value {value!r}" + (f": {hint}" if hint else ""))
            return default
        return value

    def duration(self, m: dict[str, Any], key: str, path: KeyPath, default: float | None) -> float | None:
        if key not in m or m[key] is None:
            return default
        seconds = parse_duration(m[key])
        if seconds is None:
            self.add(path + (key,), f"invalid duration {m[key]!r}: write seconds or e.g. 90s, 10m, 1h30m, 1d "
                                    "(units d, h, m, s)")
            return default
        return seconds

    def retry(self, value: Any, path: KeyPath, base: RetrySpec) -> RetrySpec:
        m = self.mapping(value, path, RETRY_KEYS)
        attempts = self.typed(m, "attempts", path, int, base.attempts, lambda v: v >= 1, "a whole number >= 1")
        return RetrySpec(attempts=attempts,
                         max_delay=self.duration(m, "max_delay", path, base.max_delay) or 0.0,
                         window=self.duration(m, "window", path, base.window),
                         base_delay=self.duration(m, "base_delay", path, base.base_delay) or 0.0)

    def timezone(self, m: dict[str, Any], path: KeyPath, default: str) -> str:
        tz = self.typed(m, "timezone", path, str, default)
        try:
            ZoneInfo(tz)
        except (ValueError, KeyError, OSError):
            self.add(path + ("timezone",), f"unknown timezone {tz!r}: use an IANA name such as Asia/Shanghai")
            return default
        return tz


# ----------------------------------------------------------------------------------------------- project

def load_project(conf_dir: Path | None = None, jobs_dir: Path | None = None,
                 env: Mapping[str, str] | None = None, collect: list[Problem] | None = None) -> Project:
    """Read conf/runner.yml and conf/databases.yml. Raises ConfigError with every problem found, or,
    given `collect`, adds them there and returns what is valid (so --check can go on to the jobs)."""
    env = os.environ if env is None else env
    conf_dir = (conf_dir or default_conf_dir()).resolve()
    root = conf_dir.parent
    jobs_dir = (jobs_dir or default_jobs_dir(conf_dir)).resolve()
    problems: list[Problem] = []
    if not conf_dir.is_dir():
        raise ConfigError(Problem(str(conf_dir), "", "configuration folder not found: pass --conf DIR or set "
                                  "RUNNER_CONF to the folder holding runner.yml and databases.yml"))
    settings = _load_settings(conf_dir, root, env, problems)
    databases = _load_databases(conf_dir, root, env, problems)
    if problems and collect is None:
        raise ConfigError(problems)
    if collect is not None:
        collect.extend(problems)
    return Project(root=root, conf_dir=conf_dir, jobs_dir=jobs_dir, settings=settings, databases=databases)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _read_expanded(path: Path, root: Path, env: Mapping[str, str], problems: list[Problem]) -> YamlDoc | None:
    try:
        doc = read_yaml(path, _display(path, root))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    doc.data = _expand_tree(doc, doc.data, (), env, problems)
    return doc


def _expand_tree(doc: YamlDoc, value: Any, path: KeyPath, env: Mapping[str, str], problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_tree(doc, v, path + (k,), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(doc, v, path + (i,), env, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        missing: list[str] = []
        out = expand_vars(value, env, missing)
        for name in missing:
            problems.append(Problem(doc.file, ".".join(map(str, path)),
                                    f"environment variable {name} is not set and has no default: export {name}=... "
                                    f"or write ${{{name}:-default}}", doc.line(path)))
        return out
    return value


def _load_settings(conf_dir: Path, root: Path, env: Mapping[str, str], problems: list[Problem]) -> Settings:
    path = conf_dir / "runner.yml"
    # Without runner.yml every setting has its default, but RUNNER_STATE_URL still applies.
    doc = _read_expanded(path, root, env, problems) if path.exists() else YamlDoc(_display(path, root), None)
    if doc is None:
        return Settings(root=root)
    c = _Checker(doc)
    m = c.mapping(doc.data, (), SETTINGS_KEYS)
    base = Settings(root=root)
    env_url = env.get("RUNNER_STATE_URL")
    state_url = env_url or c.typed(m, "state_url", (), str, base.state_url)
    invalid = _invalid_url(state_url, "RUNNER_STATE_URL" if env_url else None)
    if invalid:
        c.add(("state_url",), invalid)
        state_url = base.state_url
    settings = Settings(
        root=root,
        timezone=c.timezone(m, (), base.timezone),
        state_url=resolve_url(state_url, root),
        retry=c.retry(m.get("retry"), ("retry",), base.retry),
        log_format=c.typed(m, "log_format", (), str, base.log_format, lambda v: v in ("text", "json"),
                           "text or json"),
        log_dir=c.typed(m, "log_dir", (), str, base.log_dir),
        misfire_grace=c.duration(m, "misfire_grace", (), base.misfire_grace) or 0.0,
        stop_grace=c.duration(m, "stop_grace", (), base.stop_grace) or 0.0,
    )
    problems.extend(c.problems)
    return settings


def _load_databases(conf_dir: Path, root: Path, env: Mapping[str, str], problems: list[Problem]) -> dict[str, Database]:
    path = conf_dir / "databases.yml"
    if not path.exists():
        problems.append(Problem(_display(path, root), "", "file not found: create it with one entry per database, "
                                "e.g. warehouse: {url: 'sqlite:///var/warehouse.db'}"))
        return {}
    doc = _read_expanded(path, root, env, problems)
    if doc is None:
        return {}
    c = _Checker(doc)
    out: dict[str, Database] = {}
    if not isinstance(doc.data, dict):
        c.add((), "must be a mapping of database names to {url: ...}")
        problems.extend(c.problems)
        return out
    for name, spec in doc.data.items():
        path_ = (name,)
        m = c.mapping(spec, path_, DB_KEYS)
        override = env.get(env_override_name(str(name)))
        url_key = f"{name}.url"
        if override:  # the url it replaces no longer matters, nor the ${VAR}s in it
            problems[:] = [p for p in problems if (p.file, p.key) != (doc.file, url_key)]
        url = override or c.typed(m, "url", path_, str, None)
        if not url:
            if not any((p.file, p.key) == (doc.file, url_key) for p in problems):  # else: unset ${VAR}, said
                c.add(path_ + ("url",), "missing url: give a SQLAlchemy URL such as mysql+pymysql://user:pw@host/db")
                continue
        elif invalid := _invalid_url(url, env_override_name(str(name)) if override else None):
            c.add(path_ + ("url",), invalid)
            continue
        pool = _pool(c, m.get("pool"), path_ + ("pool",))
        connect_args = c.typed(m, "connect_args", path_, dict, {})
        markers = c.typed(m, "markers", path_, bool, True)
        out[str(name)] = Database(name=str(name), url=resolve_url(url, root), pool=pool,
                                  connect_args=connect_args, markers=markers)
    problems.extend(c.problems)
    return out


def _invalid_url(url: str, variable: str | None) -> str | None:
    """What is wrong with a url SQLAlchemy cannot parse (its password hidden; `variable` names the
    environment variable it came from), or None when it parses."""
    if not _unparsable(url):
        return None
    from .db import redact

    source = f" (from {variable})" if variable else ""
    shown = redact(url) if "@" in url else "(not shown: no user@host part to hide a password in)"
    return (f"invalid url {shown}{source}: write dialect+driver://user:password@host:port/database, "
            "e.g. mysql+pymysql://etl:pw@db.example:3306/warehouse")


def _unparsable(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except Exception:  # the parser's own message may quote the url, password included: say it ourselves
        return True
    return False


def _pool(c: _Checker, value: Any, path: KeyPath) -> PoolSpec:
    m = c.mapping(value, path, POOL_KEYS)
    base = PoolSpec()
    positive = (lambda v: v >= 0)
    return PoolSpec(
        size=c.typed(m, "size", path, int, base.size, lambda v: v >= 1, "a whole number >= 1"),
        max_overflow=c.typed(m, "max_overflow", path, int, base.max_overflow, positive, "a whole number >= 0"),
        timeout=c.duration(m, "timeout", path, base.timeout) or 0.0,
        recycle=int(c.duration(m, "recycle", path, base.recycle) or 0),
        pre_ping=c.typed(m, "pre_ping", path, bool, base.pre_ping),
        ping_skip_ms=c.typed(m, "ping_skip_ms", path, int, base.ping_skip_ms, positive, "milliseconds >= 0"),
        leak_seconds=c.duration(m, "leak_seconds", path, base.leak_seconds),
    )


# ----------------------------------------------------------------------------------------------- jobs

def job_names(project: Project) -> list[str]:
    if not project.jobs_dir.is_dir():
        return []
    return sorted(p.stem for p in project.jobs_dir.glob("*.yml"))


def job_path(project: Project, name: str) -> Path:
    return project.jobs_dir / f"{name}.yml"


def load_job(project: Project, name: str) -> Job:
    """Read and validate one job. Raises ConfigError with every problem in its file."""
    path = job_path(project, name)
    if not _NAME.match(name) or not path.is_file():
        known = ", ".join(job_names(project)) or "none"
        raise ConfigError(Problem(_display(path, project.root), "", f"unknown job '{name}': no file {path.name} in "
                                  f"{project.jobs_dir} (jobs: {known}); see --list"))
    problems: list[Problem] = []
    job = _build_job(project, name, path, problems)
    if problems or job is None:
        raise ConfigError(problems)
    return job


def load_jobs(project: Project) -> tuple[dict[str, Job], list[Problem]]:
    """Every job in the jobs folder, and the problems of those that are invalid."""
    jobs: dict[str, Job] = {}
    problems: list[Problem] = []
    for name in job_names(project):
        try:
            jobs[name] = load_job(project, name)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return jobs, problems


def _build_job(project: Project, name: str, path: Path, problems: list[Problem]) -> Job | None:
    try:
        doc = read_yaml(path, _display(path, project.root))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    c = _Checker(doc)
    m = c.mapping(doc.data, (), JOB_KEYS)
    if not m:
        if not c.problems:
            c.add((), "empty job file: give at least tasks: [{name: ..., sql: ...}]")
        problems.extend(c.problems)
        return None
    s = project.settings
    database = c.typed(m, "database", (), str, None)
    retry = c.retry(m.get("retry"), ("retry",), s.retry)
    params = c.typed(m, "params", (), dict, {})
    schedule = c.typed(m, "schedule", (), str, None)
    if schedule is not None and not _valid_cron(schedule):
        c.add(("schedule",), f"invalid cron expression {schedule!r}: five fields, e.g. \"30 2 * * *\", or six "
                             f"with a leading seconds field, e.g. \"*/10 * * * * *\"")
    job = Job(
        name=name,
        file=doc.file,
        tasks=(),
        description=c.typed(m, "description", (), str, ""),
        schedule=schedule,
        timezone=c.timezone(m, (), s.timezone),
        database=database,
        params=_params(c, params),
        retry=retry,
        timeout=c.duration(m, "timeout", (), None),
        max_parallel=c.typed(m, "max_parallel", (), int, 1, lambda v: v >= 1, "a whole number >= 1"),
        catch_up=c.typed(m, "catch_up", (), str, "latest", lambda v: v in ("latest", "none"), "latest or none"),
        catch_up_window=c.duration(m, "catch_up_window", (), 86400.0) or 0.0,
        rerun_abandoned=c.typed(m, "rerun_abandoned", (), bool, False),
    )
    tasks = _build_tasks(project, job, doc, c, m.get("tasks"))
    _check_meaning(project, job, tasks, c)
    problems.extend(c.problems)
    return Job(**{**job.__dict__, "tasks": tuple(tasks)})


def _params(c: _Checker, params: dict[Any, Any]) -> dict[str, object]:
    """Job parameters with their YAML types: `n: 2` binds the number 2 (LIMIT :n), not the text '2'."""
    out: dict[str, object] = {}
    for key, value in params.items():
        if not isinstance(value, PARAM_TYPES):
            c.add(("params", key), f"invalid value {value!r}: a parameter is one value (text, number, true/false, "
                                   "null or a date)")
            continue
        out[str(key)] = value
    return out


def _valid_cron(expr: str) -> bool:
    from .schedule import is_valid  # imported here: only jobs with a schedule pay for croniter

    return is_valid(expr)


def _build_tasks(project: Project, job: Job, doc: YamlDoc, c: _Checker, value: Any) -> list[Task]:
    if not isinstance(value, list) or not value:
        c.add(("tasks",), "a job needs a list of tasks, e.g. tasks: [{name: load, sql: 'SELECT 1'}]")
        return []
    tasks: list[Task] = []
    for i, item in enumerate(value):
        path = ("tasks", i)
        m = c.mapping(item, path, TASK_KEYS)
        if not m:
            continue
        task = _build_task(project, job, doc, c, m, path)
        if task is not None:
            tasks.append(task)
    return tasks


def _build_task(project: Project, job: Job, doc: YamlDoc, c: _Checker, m: dict[str, Any],
                path: KeyPath) -> Task | None:
    name = c.typed(m, "name", path, str, None, lambda v: bool(_NAME.match(v)),
                   "letters, digits, _ . - only")
    if name is None:
        if m.get("name") is None:  # an invalid name was reported by typed() already
            c.add(path + ("name",), "every task needs a name")
        return None
    bodies = [k for k in ("sql", "sql_file", "export", "load") if k in m]
    if len(bodies) != 1:
        c.add(path, f"task '{name}' needs exactly one of sql, sql_file, export, load (found: "
                    f"{', '.join(bodies) or 'none'})")
        return None
    depends = m.get("depends_on") or []
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        c.add(path + ("depends_on",), "must be a list of task names")
        depends = []
    retry = c.retry(m["retry"], path + ("retry",), job.retry) if "retry" in m else None
    statements: tuple[Statement, ...] = ()
    export = load = None
    if "sql" in m:
        statements = _inline_sql(doc, c, m, path + ("sql",))
    elif "sql_file" in m:
        statements = _sql_file(project, c, m, path + ("sql_file",))
    elif "export" in m:
        export = _export(doc, c, m["export"], path + ("export",))
    else:
        load = _load(doc, c, m["load"], path + ("load",))
    return Task(
        name=name,
        database=c.typed(m, "database", path, str, job.database) or "",
        statements=statements,
        depends_on=tuple(depends),
        timeout=c.duration(m, "timeout", path, None),
        retry=retry,
        idempotent=c.typed(m, "idempotent", path, bool, False),
        retry_timeouts=c.typed(m, "retry_timeouts", path, bool, False),
        export=export,
        load=load,
        line=doc.line(path),
    )


def _inline_sql(doc: YamlDoc, c: _Checker, m: dict[str, Any], path: KeyPath) -> tuple[Statement, ...]:
    sql = m["sql"]
    if not isinstance(sql, str) or not sql.strip():
        c.add(path, "sql must be non-empty text")
        return ()
    statements = _split(c, path, sql, doc.file, doc.value_lines.get(path, doc.line(path) or 1))
    if statements == ():
        c.add(path, "sql holds no statement (only comments?)")
    return statements or ()


def _sql_file(project: Project, c: _Checker, m: dict[str, Any], path: KeyPath) -> tuple[Statement, ...]:
    rel = m["sql_file"]
    if not isinstance(rel, str):
        c.add(path, "sql_file must be a path relative to the project root, e.g. sql/rollup.sql")
        return ()
    file = (project.root / rel).resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        c.add(path, f"cannot read {rel}: {exc.strerror}; paths are relative to {project.root}")
        return ()
    statements = _split(c, path, text, _display(file, project.root), 1)
    if statements == ():
        c.add(path, f"{rel} holds no statement")
    return statements or ()


def _split(c: _Checker, path: KeyPath, text: str, file: str, first_line: int) -> tuple[Statement, ...] | None:
    """The statements of an SQL text, or None (and a problem naming the statement's line) when
    sqlparse cannot parse one of them."""
    try:
        return split_statements(text, file, first_line)
    except UnparsableStatement as exc:
        key = ".".join(str(p) for p in path)
        c.problems.append(Problem(exc.file, key, f"the statement here cannot be parsed ({exc.reason.rstrip('.')}): "
                                                 "nest it less deeply or split it", exc.line))
        return None


def _query(doc: YamlDoc, c: _Checker, m: dict[str, Any], path: KeyPath) -> Statement | None:
    q = m.get("query")
    if not isinstance(q, str) or not q.strip():
        c.add(path + ("query",), "needs a query: the SELECT whose rows are moved")
        return None
    stmts = _split(c, path + ("query",), q, doc.file, doc.value_lines.get(path + ("query",), doc.line(path) or 1))
    if stmts is None:
        return None
    if len(stmts) != 1:
        c.add(path + ("query",), "must hold exactly one SELECT statement")
        return None
    return stmts[0]


def _export(doc: YamlDoc, c: _Checker, value: Any, path: KeyPath) -> ExportSpec | None:
    m = c.mapping(value, path, EXPORT_KEYS)
    query = _query(doc, c, m, path)
    out = c.typed(m, "path", path, str, None)
    if out is None:
        c.add(path + ("path",), "needs a path for the file, e.g. reports/{job}_{run_date}.csv")
    fmt = c.typed(m, "format", path, str, "csv", lambda v: v in ("csv", "jsonl"), "csv or jsonl")
    compress = c.typed(m, "compress", path, (bool, str), False, lambda v: v in (True, False, "gzip"),
                       "true, false or gzip")
    if query is None or out is None:
        return None
    return ExportSpec(query=query, path=out, format=fmt, compress=bool(compress))


def _load(doc: YamlDoc, c: _Checker, value: Any, path: KeyPath) -> LoadSpec | None:
    m = c.mapping(value, path, LOAD_KEYS)
    query = _query(doc, c, m, path)
    source = c.typed(m, "source", path, str, None)
    table = c.typed(m, "table", path, str, None)
    if source is None:
        c.add(path + ("source",), "needs source: the database the query runs on")
    if table is None:
        c.add(path + ("table",), "needs table: the target table in this task's database")
    mode = c.typed(m, "mode", path, str, "append", lambda v: v in ("append", "replace", "upsert"),
                   "append, replace or upsert")
    key = m.get("key") or []
    if isinstance(key, str):
        key = [key]
    if mode == "upsert" and not key:
        c.add(path + ("key",), "upsert needs key: the column(s) that identify a row")
    inc = None
    if "incremental" in m:
        im = c.mapping(m["incremental"], path + ("incremental",), {"column", "initial"})
        col = c.typed(im, "column", path + ("incremental",), str, None)
        if col is None:
            c.add(path + ("incremental", "column"), "incremental needs column: the watermark column")
        else:
            inc = IncrementalSpec(column=col, initial=im.get("initial"))
    batch = c.typed(m, "batch_rows", path, int, 10000, lambda v: v >= 1, "a whole number >= 1")
    if query is None or source is None or table is None:
        return None
    return LoadSpec(source=source, query=query, table=table, mode=mode, key=tuple(key), incremental=inc,
                    create=c.typed(m, "create", path, bool, True), batch_rows=batch)


def _check_meaning(project: Project, job: Job, tasks: list[Task], c: _Checker) -> None:
    names = [t.name for t in tasks]
    for i, t in enumerate(tasks):
        path = ("tasks", i)
        if names.count(t.name) > 1 and names.index(t.name) != i:
            c.add(path + ("name",), f"duplicate task name '{t.name}'")
        if not t.database:
            c.add(path, f"task '{t.name}' has no database: set database at the job or task level")
        elif t.database not in project.databases:
            c.add(path + (("database",) if c.doc.line(path + ("database",)) else ()),
                  f"unknown database '{t.database}' in task '{t.name}' (known: "
                  f"{', '.join(project.databases) or 'none'}); add it to conf/databases.yml")
        if t.load is not None and t.load.source not in project.databases:
            c.add(path + ("load", "source"), f"unknown source database '{t.load.source}' (known: "
                                             f"{', '.join(project.databases) or 'none'})")
        for dep in t.depends_on:
            if dep not in names:
                c.add(path + ("depends_on",), f"task '{t.name}' depends on unknown task '{dep}' "
                                              f"(tasks: {', '.join(names)})")
    from .plan import find_cycle  # plan imports nothing from config; kept local to avoid a cycle at import

    cycle = find_cycle(tasks)
    if cycle:
        c.add(("tasks",), f"dependency cycle: {' -> '.join(cycle)}; remove one depends_on")
    _check_params(job, tasks, c)


def _check_params(job: Job, tasks: list[Task], c: _Checker) -> None:
    """A placeholder no built-in fills is always wrong. A `:name` nothing sets is wrong in a scheduled
    job, which runs unattended; a manual run may still pass --param (--check notes it)."""
    from .plan import SCHEDULED_FIX, unknown_placeholders, unset_params

    for key, name, builtins in unknown_placeholders(job):
        c.add(("params", key), f"unknown placeholder {{{name}}} (built-ins: {', '.join(builtins)})")
    if job.schedule:
        c.problems.extend(m.problem(SCHEDULED_FIX) for m in unset_params(job, tasks))
