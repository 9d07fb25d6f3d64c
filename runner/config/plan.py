"""Pure planning: task order, --from-task, parameters, date ranges. No I/O, no clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from datetime import date, timedelta
from graphlib import CycleError, TopologicalSorter
from typing import Iterable, Mapping, Sequence

from runner.config.exact import param_value
from runner.config.sqltext import placeholders
from runner.errors import Problem, UsageError
from runner.model import Job, Statement, Task

_BUILTIN_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_DATES = 3660


def graph(tasks: Iterable[Task]) -> TopologicalSorter[str]:
    ts: TopologicalSorter[str] = TopologicalSorter()
    for t in tasks:
        ts.add(t.name, *t.depends_on)
    return ts


def find_cycle(tasks: Sequence[Task]) -> list[str]:
    """The tasks of one dependency cycle (first repeated at the end), or [] when there is none."""
    known = {t.name for t in tasks}
    try:
        graph(Task(t.name, t.database, depends_on=tuple(d for d in t.depends_on if d in known))
              for t in tasks).prepare()
    except CycleError as exc:
        return list(reversed(exc.args[1]))
    return []


def order_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Dependency order; among tasks that are ready together, the order of the YAML file."""
    index = {t.name: i for i, t in enumerate(tasks)}
    ts = graph(tasks)
    ts.prepare()
    out: list[str] = []
    while ts.is_active():
        ready = sorted(ts.get_ready(), key=lambda n: index.get(n, len(index)))
        out.extend(ready)
        ts.done(*ready)
    by_name = {t.name: t for t in tasks}
    return [by_name[n] for n in out if n in by_name]


def from_task(ordered: Sequence[Task], start: str | None) -> list[Task]:
    """`--from-task T`: T and every task after it in the plan order."""
    if start is None:
        return list(ordered)
    names = [t.name for t in ordered]
    if start not in names:
        raise UsageError(f"unknown task '{start}' for --from-task (tasks in order: {', '.join(names)})")
    return list(ordered[names.index(start):])


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise UsageError(f"malformed --param {pair!r}: write --param KEY=VALUE, KEY made of letters, "
                             "digits and _")
        out[key] = value
    return out


def parse_dates(text: str) -> list[date]:
    """`2026-11-01` or `2026-11-01..2026-11-07` (inclusive), in order."""
    first, sep, last = text.partition("..")
    try:
        start = date.fromisoformat(first)
        end = date.fromisoformat(last) if sep else start
    except ValueError:
        raise UsageError(f"malformed --date {text!r}: write YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
    if end < start:
        raise UsageError(f"--date {text!r} ends before it starts: write the earlier date first")
    if start == date.min or end == date.max:  # {yesterday} and {tomorrow} would fall off the calendar
        raise UsageError(f"--date {text!r}: give a date between {date.min + timedelta(days=1)} and "
                         f"{date.max - timedelta(days=1)}")
    days = (end - start).days + 1
    if days > MAX_DATES:
        raise UsageError(f"--date {text!r} spans {days} days; at most {MAX_DATES} per run")
    return [start + timedelta(days=i) for i in range(days)]


_ANY_DATE = date(2000, 1, 1)  # where only the names of the built-ins matter
MANUAL_FIX = "add it to params in the job or pass --param {name}=..."
SCHEDULED_FIX = "add it to params in the job (a scheduled run has no --param)"


def builtin_params(job: Job, run_date: date, run_id: str = "") -> dict[str, str]:
    return {
        "run_date": run_date.isoformat(),
        "yesterday": (run_date - timedelta(days=1)).isoformat(),
        "tomorrow": (run_date + timedelta(days=1)).isoformat(),
        "job": job.name,
        "run_id": run_id,
    }


def resolve_params(job: Job, run_date: date, cli: Mapping[str, str], run_id: str = "") -> dict[str, object]:
    """Built-ins, then the job's params, then --param; `{name}` in a text value refers to a built-in.
    Job params keep their YAML type (a number stays a number, 0.06 is a decimal); --param values are typed
    the same way (exact.param_value), unless quoted or the job's own value of the param is text."""
    builtins = builtin_params(job, run_date, run_id)
    out: dict[str, object] = dict(builtins)
    typed = {k: param_value(v, job.params.get(k), k) if isinstance(v, str) else v for k, v in cli.items()}
    for source, values in (("params", job.params), ("--param", typed)):
        for key, value in values.items():
            out[key] = _fill(value, builtins, f"{job.file} {source}.{key}") if isinstance(value, str) else value
    return out


def _fill(value: str, builtins: Mapping[str, object], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in builtins:
            raise UsageError(f"{where}: unknown placeholder {{{m.group(1)}}} (built-ins: {', '.join(builtins)})")
        return str(builtins[m.group(1)])

    return _BUILTIN_REF.sub(sub, value)


def unknown_placeholders(job: Job) -> list[tuple[str, str, list[str]]]:
    """(param, placeholder, built-in names) for every `{name}` in a text param that no built-in fills."""
    builtins = list(builtin_params(job, _ANY_DATE))
    return [(key, m.group(1), builtins) for key, value in job.params.items() if isinstance(value, str)
            for m in _BUILTIN_REF.finditer(value) if m.group(1) not in builtins]


def fill_path(template: str, params: Mapping[str, object], where: str, root: Path | None = None,
              outside_project: bool = False) -> Path:
    """A path with `{param}` placeholders filled from the run's parameters, absolute (a relative one
    resolved against `root`). Values come from --param too, so they must not move the file: a value
    holding a path separator, a NUL or `..`, or a result outside the folder the template names before
    its first placeholder, is refused (UsageError), unless the job says `outside_project: true`."""
    for m in _BUILTIN_REF.finditer(template):
        value = str(params.get(m.group(1), ""))
        if not outside_project and ("/" in value or "\\" in value or "\0" in value or ".." in value):
            raise UsageError(f"{where}: the value {value!r} of {{{m.group(1)}}} holds a path separator or '..', so "
                             f"it would move the file out of its folder: give a plain name, or set "
                             f"outside_project: true on the export to allow it")
    filled = Path(_fill(template, params, where))
    if not filled.is_absolute():
        filled = (root or Path.cwd()) / filled
    _check_name_lengths(filled, where)
    if not outside_project:
        fixed = Path(template.split("{", 1)[0] + "x").parent  # the folder the template names itself
        base = (fixed if fixed.is_absolute() else (root or Path.cwd()) / fixed).resolve()
        if not filled.resolve().is_relative_to(base):
            raise UsageError(f"{where}: the path {str(filled)!r} leaves {base}: set outside_project: true on the "
                             "export to allow it")
    return filled


MAX_FILE_NAME = 240  # bytes: a file system holds 255, and the export's temporary file adds 14 to the name


def _check_name_lengths(path: Path, where: str) -> None:
    """A name too long for the file system fails the export after the tasks before it ran: said first."""
    for i, part in enumerate(path.parts):
        limit = MAX_FILE_NAME if i == len(path.parts) - 1 else 255
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > limit:
            shown = part if len(part) <= 60 else part[:57] + "..."
            raise UsageError(f"{where}: the name {shown!r} in the path is {size} bytes long; a file system takes at "
                             f"most {limit} here: give a shorter value")


def path_leaves_project(template: str, root: Path) -> bool:
    """A relative path template, as written in the job file, that points outside the project."""
    fixed = template.split("{", 1)[0] + "x"
    if Path(fixed).is_absolute():
        return False
    return not (root / fixed).resolve().is_relative_to(root.resolve())


BUILTIN_NAMES = ("run_date", "yesterday", "tomorrow", "job", "run_id")


def refused_override(name: str, job: Job | None = None) -> str | None:
    """Why `--param name=...` (or a job param of that name) may not be set, or None."""
    if name in BUILTIN_NAMES:
        how = "pass --date YYYY-MM-DD to run for another day" if name in ("run_date", "yesterday", "tomorrow") \
            else "it is set by the runner"
        return f"{name} is built in and cannot be set: {how}"
    if name == "watermark" and job is not None and any(t.load is not None and t.load.incremental is not None
                                                       for t in job.tasks):
        return ("watermark is set by the runner for an incremental load (the highest value loaded so far, kept in "
                "the state store) and cannot be set")
    return None


@dataclass(frozen=True)
class MissingParam:
    """A statement's :name that no parameter of the run supplies."""
    task: str
    name: str
    statement: Statement

    @property
    def where(self) -> str:
        return self.statement.where

    def problem(self, fix: str) -> Problem:
        """The problem as reported: `fix` (MANUAL_FIX or SCHEDULED_FIX) says what to do."""
        return Problem(self.statement.file, f"task {self.task}", f"statement uses :{self.name} but no parameter "
                       f"{self.name} is set: {fix.format(name=self.name)}", self.statement.line)


def missing_params(tasks: Iterable[Task], params: Mapping[str, object]) -> list[MissingParam]:
    """Parameters that a statement uses but no built-in, job param or --param sets."""
    out: list[MissingParam] = []
    for t in tasks:
        stmts = list(t.statements)
        if t.export is not None:
            stmts.append(t.export.query)
        if t.load is not None:
            stmts.append(t.load.query)
        for s in stmts:
            for name in placeholders(s.sql):
                if name not in params and not (name == "watermark" and t.load is not None):
                    out.append(MissingParam(t.name, name, s))
    return out


def unset_params(job: Job, tasks: Iterable[Task]) -> list[MissingParam]:
    """Parameters the tasks use that neither a built-in nor the job's params set (only --param can)."""
    return missing_params(tasks, {**builtin_params(job, _ANY_DATE), **job.params})


def task_statements(task: Task) -> list[Statement]:
    """Every statement a task runs: its SQL, an export's or a load's query."""
    return [*task.statements, *(s.query for s in (task.export, task.load) if s is not None)]


def path_placeholders(template: str) -> list[str]:
    return [m.group(1) for m in _BUILTIN_REF.finditer(template)]


def used_params(job: Job) -> set[str]:
    """The parameters the job can use: those its statements bind and its export paths fill, and its own."""
    used = set(job.params)
    for t in job.tasks:
        for s in task_statements(t):
            used.update(placeholders(s.sql))
        if t.export is not None:
            used.update(path_placeholders(t.export.path))
    return used


def unused_cli_params(job: Job, cli: Mapping[str, str]) -> UsageError | None:
    """--param keys that nothing of the job uses (a misspelt key would otherwise be accepted silently)."""
    used = used_params(job)
    unused = sorted(k for k in cli if k not in used)
    if not unused:
        return None
    known = ", ".join(sorted(used - set(builtin_params(job, _ANY_DATE)))) or "none"
    return UsageError(f"{job.file}: --param {', '.join(unused)}: no statement or export path of job {job.name} "
                      f"uses it (its parameters: {known}); check the spelling")


def unfilled_paths(job: Job, tasks: Sequence[Task]) -> list[tuple[int, Task, str]]:
    """(index, task, placeholder) for each `{name}` of an export path that neither a built-in nor a job
    param fills (only --param can)."""
    known = {*builtin_params(job, _ANY_DATE), *job.params}
    return [(i, t, name) for i, t in enumerate(tasks) if t.export is not None
            for name in path_placeholders(t.export.path) if name not in known]
