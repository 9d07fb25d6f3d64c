"""jobs/NAME.yml: one job file into a frozen Job, reporting every problem in it at once.

Two layers: shape and types first (unknown keys, wrong types), then meaning (unknown databases,
dependency cycles, parameters a statement uses but nobody sets). Nothing here touches a database.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from runner.config import notify as notify_keys
from runner.config.checks import Checker, display
from runner.config.exact import exact
from runner.config.plan import (SCHEDULED_FIX, find_cycle, path_leaves_project, refused_override, unfilled_paths,
                                unknown_placeholders, unset_params)
from runner.config.sqltext import placeholders, split_statements
from runner.config.yamlfile import KeyPath, YamlDoc, read_text, read_yaml
from runner.errors import ConfigError, Problem
from runner.model import ExportSpec, IncrementalSpec, Job, LoadSpec, Project, Statement, Task

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
MAX_NAME = 128  # the ledger's job and task columns

JOB_KEYS = {"description", "schedule", "timezone", "database", "params", "retry", "timeout", "max_parallel",
            "tasks", "catch_up", "catch_up_window", "rerun_abandoned", "notify", "late_after", "ping", "enabled"}
TASK_KEYS = {"name", "description", "sql", "sql_file", "export", "load", "depends_on", "database", "timeout",
             "retry", "idempotent", "retry_timeouts"}
EXPORT_KEYS = {"query", "path", "format", "compress", "outside_project"}
LOAD_KEYS = {"source", "query", "table", "mode", "key", "incremental", "create", "batch_rows"}
PARAM_TYPES = (str, int, float, bool, type(None), date)  # date covers datetime; float: written with a point


SUFFIXES = (".yml", ".yaml")  # a job file is NAME.yml or NAME.yaml


def is_job_name(name: str) -> bool:
    """Whether `name` can name a job (its file is jobs/<name>.yml)."""
    return bool(_NAME.fullmatch(name)) and len(name) <= 128


def job_names(project: Project) -> list[str]:
    """The stems of every NAME.yml and NAME.yaml in the jobs folder, also those no job can be named after
    and those that are not files (load_job says why)."""
    try:
        return sorted({p.stem for p in project.jobs_dir.iterdir() if p.suffix in SUFFIXES})
    except OSError:
        return []


def job_path(project: Project, name: str) -> Path:
    """The job's file: NAME.yml, or NAME.yaml when only that exists."""
    path = project.jobs_dir / f"{name}.yml"
    other = project.jobs_dir / f"{name}.yaml"
    return other if not path.is_file() and other.is_file() else path


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a job or task, or None."""
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long; at most {MAX_NAME}"
    if not _NAME.match(name):
        return "may hold only ASCII letters, digits and _ . - (and not start with . or -)"
    return None


def load_job(project: Project, name: str) -> Job:
    """Read and validate one job (only its own file). Raises ConfigError with every problem in its file."""
    bad_name = name_problem(name)
    try:
        path = job_path(project, name)
        exists = "/" not in name and path.exists()
    except OSError:  # a name too long for the file system
        path, exists = project.jobs_dir / f"{name}.yml", False
    shown = display(path, project.root) if len(name) <= MAX_NAME else f"{display(project.jobs_dir, project.root)}/"
    if not exists:
        known = [n for n in job_names(project) if name_problem(n) is None]
        listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "") or "none"
        raise ConfigError(Problem(shown, "", f"unknown job '{_short(name)}': no file {_short(name)}.yml in "
                                             f"{project.jobs_dir} (jobs: {listed}); see --list"))
    if bad_name is not None:
        raise ConfigError(Problem(shown, "", f"the file name cannot be a job name: it {bad_name}; rename the file "
                                             f"(e.g. {_suggest(name)}{path.suffix})"))
    twin = path.with_suffix(".yaml")
    if path.suffix == ".yml" and twin.is_file():
        raise ConfigError(Problem(display(twin, project.root), "", f"job {name} has two files, {path.name} and "
                                  f"{twin.name}: keep one (which one runs would be a guess)"))
    problems: list[Problem] = []
    job = _build_job(project, name, path, problems)
    if problems or job is None:
        raise ConfigError(problems)
    return job


def _short(name: str) -> str:
    return name if len(name) <= 60 else name[:57] + "..."


def _suggest(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".-") or "job")[:MAX_NAME]


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
    wrong = _cron_problem(schedule) if schedule is not None else None
    if wrong is not None:
        c.add(("schedule",), f"invalid cron expression {schedule!r}: {wrong}")
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
        timeout=c.duration(m, "timeout", (), None, above_zero=True),
        max_parallel=c.typed(m, "max_parallel", (), int, 1, lambda v: v >= 1, "a whole number >= 1"),
        catch_up=c.typed(m, "catch_up", (), str, "latest", lambda v: v in ("latest", "none"), "latest or none"),
        catch_up_window=c.duration(m, "catch_up_window", (), 86400.0) or 0.0,
        rerun_abandoned=c.typed(m, "rerun_abandoned", (), bool, False),
        notify=notify_keys.notify_list(c, m["notify"], ("notify",), os.environ) if m.get("notify") is not None
        else None,
        late_after=c.duration(m, "late_after", (), None, above_zero=True),
        ping=notify_keys.ping_url(c, m.get("ping"), ("ping",), os.environ),
        enabled=c.typed(m, "enabled", (), bool, True),
    )
    if job.late_after is not None and not schedule:
        c.add(("late_after",), "late_after needs a schedule: a job without one has no slot to be late for")
    _hide_secrets(job)
    tasks = _build_tasks(project, job, doc, c, m.get("tasks"))
    _check_meaning(project, job, tasks, c)
    problems.extend(c.problems)
    return Job(**{**job.__dict__, "tasks": tuple(tasks)})


def _hide_secrets(job: Job) -> None:
    """The credentials in a job's notify and ping URLs are masked in every log line from now on."""
    from runner import logs

    for url in [*(t.url for t in job.notify or ()), *([job.ping] if job.ping else [])]:
        logs.REDACTOR.add(notify_keys.url_secrets(url))


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


def _cron_problem(expr: str) -> str | None:
    from runner.cron import problem  # imported here: only jobs with a schedule pay for reading cron

    return problem(expr)


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
    name = c.typed(m, "name", path, str, None, lambda v: bool(_NAME.match(v)) and len(v) <= MAX_NAME,
                   f"letters, digits, _ . - only, at most {MAX_NAME} characters (the run ledger's column)")
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
        timeout=c.duration(m, "timeout", path, None, above_zero=True),
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
    statements = split_statements(sql, doc.file, doc.value_lines.get(path, doc.line(path) or 1))
    if not statements:
        c.add(path, "sql holds no statement (only comments?)")
    return statements


def _sql_file(project: Project, c: Checker, m: dict[str, Any], path: KeyPath) -> tuple[Statement, ...]:
    rel = m["sql_file"]
    if not isinstance(rel, str):
        c.add(path, "sql_file must be a path relative to the project root, e.g. sql/rollup.sql")
        return ()
    file = (project.root / rel).resolve()
    shown = display(file, project.root)
    try:
        text = read_text(file, shown, limit=None, what="SQL file")
    except ConfigError as exc:
        if not file.exists():
            c.add(path, f"cannot read {rel}: No such file or directory; paths are relative to {project.root}")
        else:
            c.problems.extend(exc.problems)
        return ()
    statements = split_statements(text, shown, 1)
    if not statements:
        c.add(path, f"{rel} holds no statement")
    return statements


def _query(doc: YamlDoc, c: Checker, m: dict[str, Any], path: KeyPath) -> Statement | None:
    q = m.get("query")
    if not isinstance(q, str) or not q.strip():
        c.add(path + ("query",), "needs a query: the SELECT whose rows are moved")
        return None
    stmts = split_statements(q, doc.file, doc.value_lines.get(path + ("query",), doc.line(path) or 1))
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
    outside = c.typed(m, "outside_project", path, bool, False)
    if query is None or out is None:
        return None
    return ExportSpec(query=query, path=out, format=fmt, compress=bool(compress), outside_project=outside)


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
    if not isinstance(key, list) or not all(isinstance(k, str) and k.strip() for k in key) or len(set(key)) < len(key):
        c.add(path + ("key",), f"invalid key {key!r}: a column name or a list of different column names, "
                               "e.g. key: [id]")
        key = None
    if mode == "upsert" and key == []:
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
    return LoadSpec(source=source, query=query, table=table, mode=mode, key=tuple(key or ()), incremental=inc,
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
        if t.export is not None:
            _check_export_path(project, job, t, path + ("export", "path"), c)
        for used, key in ((t.database, ("database",)), (t.load.source if t.load else None, ("load", "source"))):
            db = project.databases.get(used or "")
            if db is not None and db.driver_missing:
                c.add(path + (key if c.doc.line(path + key) else ()),
                      f"task '{t.name}' uses database {used}, which cannot be used: {db.driver_missing}")
        for dep in t.depends_on:
            if dep not in names:
                c.add(path + ("depends_on",), f"task '{t.name}' depends on unknown task '{dep}' "
                                              f"(tasks: {', '.join(names)})")
        if t.load is not None and t.load.incremental is not None and "watermark" not in placeholders(t.load.query.sql):
            c.add(path + ("load", "query"), f"incremental load '{t.name}' has no :watermark in its query, so every "
                                            f"run reads every row again: add WHERE {t.load.incremental.column} > "
                                            ":watermark (or drop incremental)")
    _check_exports(tasks, c)
    cycle = find_cycle(tasks)
    if cycle:
        c.add(("tasks",), f"dependency cycle: {' -> '.join(cycle)}; remove one depends_on")
    _check_params(job, tasks, c)


def _check_export_path(project: Project, job: Job, task: Task, path: KeyPath, c: Checker) -> None:
    """A path that leaves the project, or a job param that would move it, needs outside_project: true."""
    spec = task.export
    assert spec is not None
    if spec.outside_project:
        return
    if path_leaves_project(spec.path, project.root):
        c.add(path, f"the path {spec.path!r} leaves the project folder: write it inside the project, as an absolute "
                    "path, or set outside_project: true")
    for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", spec.path):
        value = job.params.get(m.group(1))
        if isinstance(value, str) and ("/" in value or ".." in value or "\\" in value):
            c.add(("params", m.group(1)), f"the value {value!r} fills {{{m.group(1)}}} in the path of task "
                                          f"'{task.name}' but holds a path separator or '..': give a plain name, or "
                                          "set outside_project: true on the export")


def _check_exports(tasks: list[Task], c: Checker) -> None:
    """Two exports of one job writing the same file would overwrite each other."""
    seen: dict[str, str] = {}
    for i, t in enumerate(tasks):
        if t.export is None:
            continue
        if t.export.path in seen:
            c.add(("tasks", i, "export", "path"), f"task '{t.name}' writes the same file as task "
                                                  f"'{seen[t.export.path]}' ({t.export.path}): give each its own path")
        seen.setdefault(t.export.path, t.name)


def _check_params(job: Job, tasks: list[Task], c: Checker) -> None:
    """A placeholder no built-in fills is always wrong. A `:name` nothing sets is wrong in a scheduled
    job, which runs unattended; a manual run may still pass --param (--check notes it)."""
    for key, name, builtins in unknown_placeholders(job):
        c.add(("params", key), f"unknown placeholder {{{name}}} (built-ins: {', '.join(builtins)})")
    for key in job.params:
        refused = refused_override(key, Job(**{**job.__dict__, "tasks": tuple(tasks)}))
        if refused:
            c.add(("params", key), refused)
    if job.schedule:
        c.problems.extend(m.problem(SCHEDULED_FIX) for m in unset_params(job, tasks))
        for i, t, name in unfilled_paths(job, tasks):
            c.add(("tasks", i, "export", "path"), f"export path {t.export.path} has {{{name}}}, which no built-in "  # type: ignore[union-attr]
                                                  f"or job param fills: {SCHEDULED_FIX.format(name=name)}")
