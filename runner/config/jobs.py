"""jobs/NAME.yml: one job file into a frozen Job, reporting every problem in it at once.

Two layers: shape and types first (unknown keys, wrong types), then meaning (unknown databases,
dependency cycles, parameters a statement uses but nobody sets). Nothing here touches a database.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from runner.config.checks import Checker, display
from runner.config.exact import exact
from runner.config.plan import SCHEDULED_FIX, find_cycle, unknown_placeholders, unset_params
from runner.config.sqltext import UnparsableStatement, split_statements
from runner.config.yamlfile import KeyPath, YamlDoc, read_yaml
from runner.errors import ConfigError, Problem
from runner.model import ExportSpec, IncrementalSpec, Job, LoadSpec, Project, Statement, Task

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

JOB_KEYS = {"description", "schedule", "timezone", "database", "params", "retry", "timeout", "max_parallel",
            "tasks", "catch_up", "catch_up_window", "rerun_abandoned"}
TASK_KEYS = {"name", "description", "sql", "sql_file", "export", "load", "depends_on", "database", "timeout",
             "retry", "idempotent", "retry_timeouts"}
EXPORT_KEYS = {"query", "path", "format", "compress"}
LOAD_KEYS = {"source", "query", "table", "mode", "key", "incremental", "create", "batch_rows"}
PARAM_TYPES = (str, int, float, bool, type(None), date)  # date covers datetime; float: written with a point


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
        raise ConfigError(Problem(display(path, project.root), "", f"unknown job '{name}': no file {path.name} in "
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
        doc = read_yaml(path, display(path, project.root))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    c = Checker(doc)
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


def _params(c: Checker, params: dict[Any, Any]) -> dict[str, object]:
    """Job parameters with their YAML types: `n: 2` binds the number 2 (LIMIT :n), not the text '2';
    `d: 0.06` binds the decimal 0.06 exactly as written."""
    out: dict[str, object] = {}
    for key, value in params.items():
        if not isinstance(value, PARAM_TYPES):
            c.add(("params", key), f"invalid value {value!r}: a parameter is one value (text, number, true/false, "
                                   "null or a date)")
            continue
        out[str(key)] = exact(value)
    return out


def _valid_cron(expr: str) -> bool:
    from runner.cron import (
        is_valid,  # imported here: only jobs with a schedule pay for croniter
    )

    return is_valid(expr)


def _build_tasks(project: Project, job: Job, doc: YamlDoc, c: Checker, value: Any) -> list[Task]:
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


def _build_task(project: Project, job: Job, doc: YamlDoc, c: Checker, m: dict[str, Any],
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


def _inline_sql(doc: YamlDoc, c: Checker, m: dict[str, Any], path: KeyPath) -> tuple[Statement, ...]:
    sql = m["sql"]
    if not isinstance(sql, str) or not sql.strip():
        c.add(path, "sql must be non-empty text")
        return ()
    statements = _split(c, path, sql, doc.file, doc.value_lines.get(path, doc.line(path) or 1))
    if statements == ():
        c.add(path, "sql holds no statement (only comments?)")
    return statements or ()


def _sql_file(project: Project, c: Checker, m: dict[str, Any], path: KeyPath) -> tuple[Statement, ...]:
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
    statements = _split(c, path, text, display(file, project.root), 1)
    if statements == ():
        c.add(path, f"{rel} holds no statement")
    return statements or ()


def _split(c: Checker, path: KeyPath, text: str, file: str, first_line: int) -> tuple[Statement, ...] | None:
    """The statements of an SQL text, or None (and a problem naming the statement's line) when
    sqlparse cannot parse one of them."""
    try:
        return split_statements(text, file, first_line)
    except UnparsableStatement as exc:
        key = ".".join(str(p) for p in path)
        c.problems.append(Problem(exc.file, key, f"the statement here cannot be parsed ({exc.reason.rstrip('.')}): "
                                                 "nest it less deeply or split it", exc.line))
        return None


def _query(doc: YamlDoc, c: Checker, m: dict[str, Any], path: KeyPath) -> Statement | None:
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


def _export(doc: YamlDoc, c: Checker, value: Any, path: KeyPath) -> ExportSpec | None:
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


def _load(doc: YamlDoc, c: Checker, value: Any, path: KeyPath) -> LoadSpec | None:
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
            inc = IncrementalSpec(column=col, initial=exact(im.get("initial")))
    batch = c.typed(m, "batch_rows", path, int, 10000, lambda v: v >= 1, "a whole number >= 1")
    if query is None or source is None or table is None:
        return None
    return LoadSpec(source=source, query=query, table=table, mode=mode, key=tuple(key), incremental=inc,
                    create=c.typed(m, "create", path, bool, True), batch_rows=batch)


def _check_meaning(project: Project, job: Job, tasks: list[Task], c: Checker) -> None:
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
        for used, key in ((t.database, ("database",)), (t.load.source if t.load else None, ("load", "source"))):
            db = project.databases.get(used or "")
            if db is not None and db.driver_missing:
                c.add(path + (key if c.doc.line(path + key) else ()),
                      f"task '{t.name}' uses database {used}, which cannot be used: {db.driver_missing}")
        for dep in t.depends_on:
            if dep not in names:
                c.add(path + ("depends_on",), f"task '{t.name}' depends on unknown task '{dep}' "
                                              f"(tasks: {', '.join(names)})")
    cycle = find_cycle(tasks)
    if cycle:
        c.add(("tasks",), f"dependency cycle: {' -> '.join(cycle)}; remove one depends_on")
    _check_params(job, tasks, c)


def _check_params(job: Job, tasks: list[Task], c: Checker) -> None:
    """A placeholder no built-in fills is always wrong. A `:name` nothing sets is wrong in a scheduled
    job, which runs unattended; a manual run may still pass --param (--check notes it)."""
    for key, name, builtins in unknown_placeholders(job):
        c.add(("params", key), f"unknown placeholder {{{name}}} (built-ins: {', '.join(builtins)})")
    if job.schedule:
        c.problems.extend(m.problem(SCHEDULED_FIX) for m in unset_params(job, tasks))
