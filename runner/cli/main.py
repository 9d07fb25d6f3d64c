"""Command line: parse arguments, call one library function, turn named errors into exit codes.

Exit codes: 0 success (or nothing due), 1 a task failed after its retries, 2 usage or configuration
error (nothing ran), 3 skipped because the same job is already running, 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any, Callable, NoReturn, Sequence

from runner import __version__, logs, stop
from runner.config.urls import passwords
from runner.errors import ConfigError, RunnerError, StateStoreError
from runner.model import Project

log = logging.getLogger("runner")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 as well; keep its usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Once(argparse.Action):
    """An option that takes one value: given twice (`--job a --job b`), argparse would keep the last."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None:
            parser.error(f"{option_string} given twice ({before!r} and {values!r}): give it once")
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m runner", description="Run scheduled SQL/ETL jobs written as YAML files.")
    p.add_argument("--job", action=_Once, metavar="NAME", help="run one job now (with --history, --due, --watermarks: only this job)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list jobs with schedule, next run time and pause")
    action.add_argument("--check", action="store_true", help="validate conf and every job; exit 2 on problems")
    action.add_argument("--history", action="store_true", help="show recent runs from the ledger")
    action.add_argument("--crontab", action="store_true",
                        help="print cron lines for every scheduled job (--install/--uninstall: into your crontab)")
    action.add_argument("--scheduler", action="store_true", help="run the scheduler daemon (with its web pages when "
                                                                 "conf/runner.yml has web:)")
    action.add_argument("--serve", action="store_true",
                        help="serve the status pages and API from the state store (web: in conf/runner.yml)")
    action.add_argument("--due", action="store_true",
                        help="run every job (with --job: that job, as its cron line does) whose latest scheduled "
                             "slot has no successful run")
    action.add_argument("--pause", action=_Once, metavar="NAME", help="pause a job on every host sharing the state store")
    action.add_argument("--resume", action=_Once, metavar="NAME", help="resume a paused job (its paused slots are not caught up)")
    action.add_argument("--rerun", action=_Once, metavar="RUN_ID", help="run the failed and skipped tasks of a run again")
    action.add_argument("--watermarks", action="store_true", help="list the watermark of every incremental load")
    action.add_argument("--watermark", action=_Once, metavar="JOB.TASK", help="change one watermark (with --set VALUE or --reset)")
    action.add_argument("--notify-test", action="store_true",
                        help="send a test message to every configured notify target and report each result")
    action.add_argument("--systemd-unit", action="store_true",
                        help="print a systemd unit that runs the scheduler daemon")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="set a job parameter")
    p.add_argument("--date", action=_Once, metavar="YYYY-MM-DD[..YYYY-MM-DD]", help="run date, or an inclusive range")
    p.add_argument("--from-task", action=_Once, metavar="TASK", help="start at this task (and run what follows)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan with bound values (with --due: what is due and why); run nothing")
    p.add_argument("--force", action="store_true", help="run a paused job by hand (--job, --rerun)")
    p.add_argument("--reason", action=_Once, metavar="TEXT", help="why the job is paused (with --pause)")
    p.add_argument("--run", action=_Once, metavar="ID", help="with --history: the whole record of one run (the first 8 "
                                               "characters of its id will do)")
    p.add_argument("--status", action=_Once, metavar="S", help="--history: only runs with this status (failed, success, ...)")
    p.add_argument("--since", action=_Once, metavar="WHEN", help="--history: only runs started since 7d, 12h, 30m or YYYY-MM-DD")
    p.add_argument("--limit", action=_Once, type=int, metavar="N", help="--history: at most N runs (default 30)")
    p.add_argument("--format", action=_Once, choices=("text", "json"), help="output of --list, --history, --check, --watermarks")
    p.add_argument("--set", action=_Once, metavar="VALUE", dest="set_value", help="--watermark: the new value")
    p.add_argument("--reset", action="store_true", help="--watermark: forget it (the next load starts from initial)")
    p.add_argument("--install", action="store_true", help="--crontab: write the lines into your crontab")
    p.add_argument("--uninstall", action="store_true", help="--crontab: remove them from your crontab")
    p.add_argument("--python", action=_Once, metavar="PATH",
                   help="interpreter for --crontab lines and --systemd-unit (default: this one)")
    p.add_argument("--conf", action=_Once, type=Path, metavar="DIR", help="conf folder (default: $RUNNER_CONF or ./conf)")
    p.add_argument("--jobs", action=_Once, type=Path, metavar="DIR", help="jobs folder (default: $RUNNER_JOBS or ./jobs)")
    p.add_argument("--log-format", action=_Once, choices=("text", "json"), help="log format (default from conf/runner.yml)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--version", action="version", version=f"runner {__version__}")
    return p


_ACTIONS = (("due", "--due"), ("history", "--history"), ("scheduler", "--scheduler"), ("list", "--list"),
            ("check", "--check"), ("crontab", "--crontab"), ("pause", "--pause"), ("resume", "--resume"),
            ("rerun", "--rerun"), ("watermarks", "--watermarks"), ("watermark", "--watermark"),
            ("notify_test", "--notify-test"), ("systemd_unit", "--systemd-unit"), ("serve", "--serve"))
_HAND = "a run by hand (--job NAME)"
# Each option and the actions it belongs to ("job": a run by hand); with any other it would be ignored.
_OPTIONS = (
    ("param", "--param", ("job",), _HAND), ("date", "--date", ("job",), _HAND),
    ("from_task", "--from-task", ("job",), _HAND), ("dry_run", "--dry-run", ("job", "due"), f"{_HAND} or --due"),
    ("force", "--force", ("job", "rerun"), f"{_HAND} or --rerun"), ("reason", "--reason", ("pause",), "--pause"),
    ("status", "--status", ("history",), "--history"), ("since", "--since", ("history",), "--history"),
    ("limit", "--limit", ("history",), "--history"),
    ("format", "--format", ("list", "history", "check", "watermarks"), "--list, --history, --check or --watermarks"),
    ("set_value", "--set", ("watermark",), "--watermark JOB.TASK"), ("reset", "--reset", ("watermark",),
                                                                        "--watermark JOB.TASK"),
    ("install", "--install", ("crontab",), "--crontab"), ("uninstall", "--uninstall", ("crontab",), "--crontab"),
)
# Actions that --job narrows down; the others name their job themselves, or have none.
_JOB_FILTERS = ("history", "due", "watermarks", "notify_test")


def action_of(args: argparse.Namespace) -> str | None:
    """The action asked for: a dest of _ACTIONS, "job" for a run by hand, None when nothing was said."""
    action = next((dest for dest, _ in _ACTIONS if getattr(args, dest) not in (None, False)), None)
    return action or ("job" if args.job else None)


_NAMED = (("job", "--job"), ("pause", "--pause"), ("resume", "--resume"), ("rerun", "--rerun"),
          ("watermark", "--watermark"), ("run", "--run"), ("status", "--status"), ("since", "--since"),
          ("from_task", "--from-task"), ("date", "--date"), ("python", "--python"))


def empty_option(args: argparse.Namespace) -> str | None:
    """An option given an empty value (`--run ""`, a shell variable that was not set): read as absent it
    would widen what is asked (every run, every job), so it is refused."""
    for dest, option in _NAMED:
        value = getattr(args, dest)
        if value is not None and not value.strip():
            return f"{option} was given an empty value: give it one (is a shell variable unset?)"
    return None


def misused_option(args: argparse.Namespace) -> str | None:
    """Why an option was given with an action that has no use for it, or None when all fit.
    (Without --job or an action, the parser has already asked what to do.)"""
    action = action_of(args)
    flag = dict(_ACTIONS).get(action or "", "")
    for dest, option, actions, belongs in _OPTIONS:
        if getattr(args, dest) not in (None, False, []) and action not in actions:
            if actions == ("job",) or dest == "dry_run":
                return f"{option} is for {belongs} and cannot be combined with {flag}"
            return f"{option} goes with {belongs}, not with {flag or '--job'}"
    if args.python and action not in ("crontab", "systemd_unit"):
        return "--python only goes with --crontab or --systemd-unit (the interpreter they start)"
    if args.run and action != "history":
        return "--run ID goes with --history (the whole record of that run)"
    if args.job and action not in ("job", *_JOB_FILTERS):
        if action in ("pause", "resume", "rerun", "watermark"):
            return f"{flag} names its job itself; leave out --job"
        return ("--job runs one job; it cannot be combined with --list, --check, --crontab, --scheduler, "
                "--systemd-unit or --serve")
    if action == "watermark" and (args.set_value is None) == (not args.reset):
        return "--watermark JOB.TASK needs one of --set VALUE or --reset"
    if args.install and args.uninstall:
        return "--crontab takes one of --install or --uninstall"
    if args.limit is not None and not 1 <= args.limit <= MAX_LIMIT:  # a huge one overflows the database's integer
        return f"--limit takes a whole number from 1 to {MAX_LIMIT:,}"
    return None


MAX_LIMIT = 1_000_000  # --history --limit
_RUNS = ("job", "due", "rerun")  # the actions that run tasks: a stop lets the running statement be killed first
_WRITES = ("pause", "resume", "watermark", "crontab")  # the others of them only read
_doing: list[str] = []  # the action of this process, for what a stop says and does


def main(argv: Sequence[str] | None = None, out=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    empty = empty_option(args)
    if empty:
        parser.error(empty)
    action = action_of(args)
    if action is None:
        parser.error("say what to do: --job NAME, --list, --check, --history, --crontab, --scheduler, --due, "
                     "--pause, --resume, --rerun, --watermarks, --watermark, --notify-test, --systemd-unit or --serve")
    misused = misused_option(args)
    if misused:
        parser.error(misused)
    out = out or sys.stdout
    restore = None
    if not (args.scheduler or args.serve) and threading.current_thread() is threading.main_thread():
        _doing[:] = [action]
        restore = _handle_stop_signals()
    try:
        return _run(args, action, out)
    finally:
        if restore is not None:  # main() called in a process that goes on (tests): its handlers back
            restore()


def _run(args: argparse.Namespace, action: str, out: IO[str]) -> int:
    verbosity = -1 if args.quiet else args.verbose
    logs.setup(args.log_format or "text", verbosity)
    try:
        from runner.config.project import load_project

        conf_problems: list = []
        project = load_project(args.conf, args.jobs, collect=conf_problems if args.check else None)
        if args.log_format is None and project.settings.log_format != "text":
            logs.setup(project.settings.log_format, verbosity)
        logs.REDACTOR.add(passwords(project))
        return _dispatch(action, args, project, out, conf_problems, verbosity)
    except ConfigError as exc:
        for p in exc.problems:
            log.error("%s", logs.REDACTOR.scrub(str(p)))
        log.error("configuration invalid: nothing was run (see --check)")
        return exc.exit_code
    except RunnerError as exc:
        log.error("%s", logs.REDACTOR.scrub(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("%s; exit 130", stop.reason())
        return 130
    except Exception as exc:  # a bug: say so plainly, keep the traceback at -v
        from runner.state.failures import failure_of

        store = failure_of(exc)
        if store is not None:
            log.error("%s", logs.REDACTOR.scrub(store))
            return StateStoreError.exit_code
        log.error("unexpected error: %s: %s", type(exc).__name__, logs.REDACTOR.scrub(str(exc)),
                  exc_info=verbosity > 0)
        return 1


def _dispatch(action: str, args: argparse.Namespace, project, out, conf_problems: list, verbosity: int) -> int:
    """One library call per action."""
    from runner.cli import commands

    fmt = args.format or "text"
    if action == "history" and args.run:
        return commands.run_record(project, args.run, out)
    if action == "notify_test":
        from runner.cli.notify import notify_test

        return notify_test(project, out, job=args.job)
    if action == "systemd_unit":
        from runner.schedule.systemd import unit_text

        out.write(unit_text(project, python=args.python))
        return 0
    if action == "history":
        from runner.cli.history import HistoryQuery, history

        return history(project, HistoryQuery(args.job, args.status, args.since, args.limit), out, fmt)
    if action == "due":
        from runner.schedule.due import dry_run_due, run_due

        if args.dry_run:
            return dry_run_due(project, out=out, job=args.job)
        return run_due(project, out=out, job=args.job)
    if action == "job" and args.dry_run:
        return commands.dry_run(project, args.job, params=args.param, dates=args.date,
                                from_task_name=args.from_task, out=out, whole=verbosity > 0)
    if action == "job":
        return commands.run_job(project, args.job, params=args.param, dates=args.date,
                                from_task_name=args.from_task, out=out, force=args.force)
    if action == "list":
        return commands.list_jobs(project, out, fmt)
    if action == "check":
        return commands.check(project, out, conf_problems, fmt)
    if action == "crontab":
        from runner.schedule.crontab import crontab_text
        from runner.schedule.install import install, uninstall

        if args.install:
            return install(project, out, python=args.python)
        if args.uninstall:
            return uninstall(project, out)
        out.write(crontab_text(project, python=args.python))
        return 0
    if action in ("pause", "resume"):
        from runner.cli.jobstate import pause, resume

        return pause(project, args.pause, args.reason or "", out) if action == "pause" else \
            resume(project, args.resume, out)
    if action == "rerun":
        from runner.cli.rerun import rerun

        return rerun(project, args.rerun, out, force=args.force)
    if action == "watermarks":
        from runner.cli.watermarks import list_watermarks

        return list_watermarks(project, args.job, out, fmt)
    if action == "watermark":
        from runner.cli.watermarks import change_watermark

        return change_watermark(project, args.watermark, args.set_value, out)
    if action == "serve":
        from runner.web.server import serve

        return serve(project)
    return _scheduler(project)


def _scheduler(project: Project) -> int:
    """The daemon, and its web pages in a thread of their own when conf/runner.yml has `web:`."""
    from runner.schedule.daemon import run_daemon

    web = None
    if project.settings.web is not None:
        from runner.web.server import start_background

        web = start_background(project)
    try:
        return run_daemon(project)
    finally:
        if web is not None:
            web.stop(project.settings.stop_grace)


STOP_GRACE = 15.0  # after SIGTERM/SIGINT, how long the run may take to stop before the process just exits
_watching: list[bool] = []


def _handle_stop_signals() -> Callable[[], None]:
    """SIGTERM and SIGINT end a run: the running statement is killed on the server, the run is recorded
    as interrupted, the locks are released, exit 130. A second signal, or a run still going after
    STOP_GRACE, ends the process at once (the run is then marked abandoned by the next one).

    Python runs a signal handler in the main thread only, and only between two bytecodes: while the
    main thread waits in the database driver (a long SQLite statement, a socket send) the handler
    would wait with it. So the handlers do nothing, and a thread of its own reads the signals from the
    wakeup fd, which the interpreter writes the moment a signal arrives. Returns what puts the
    handlers there before back."""
    before = {signum: signal.signal(signum, _noted) for signum in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for signum, handler in before.items():
            signal.signal(signum, handler)

    if _watching:
        return restore
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watch_signals, args=(read_end,), name="runner-signals", daemon=True).start()
    _watching.append(True)
    return restore


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler: the signal was already seen on the wakeup fd."""


def _watch_signals(read_end: int) -> None:
    while True:
        for signum in os.read(read_end, 64):
            if signum in (signal.SIGTERM, signal.SIGINT) and signal.getsignal(signum) is _noted:
                _stop_on(signal.Signals(signum).name)


def _stop_on(name: str) -> None:
    if _doing and _doing[0] not in _RUNS:  # nothing to stop cleanly: a read, or one short transaction
        flag = dict(_ACTIONS).get(_doing[0], _doing[0])
        rolled = " (what it had not committed is rolled back)" if _doing[0] in _WRITES else ""
        log.error("%s: exiting now; %s did not finish%s", name, flag, rolled)
        logging.shutdown()
        os._exit(130)
    if stop.requested():
        _give_up(f"{name} again while stopping")
    log.warning("%s: stopping: nothing new starts, the running statement is being stopped", name)
    stop.request(name)
    timer = threading.Timer(STOP_GRACE, _give_up, (f"{name}: the run did not stop within {STOP_GRACE:.0f}s",))
    timer.daemon = True
    timer.start()


def _give_up(why: str) -> None:
    log.error("%s: exiting now; a run already recorded stays 'running' until the next run of the job marks it "
              "abandoned", why)
    logging.shutdown()
    os._exit(130)


def entry() -> None:
    code = main()
    # The process ends here, its work done: engines disposed, files closed, and logging flushes at exit.
    # Its objects (most of them the modules' own) are moved out of the cyclic collector's reach, so the
    # interpreter's teardown does not walk them all again (60-100 ms of every run by hand or by cron).
    # Reference counting still frees them and atexit handlers still run; only cyclic garbage left at this
    # point is not collected, and the process is about to give all its memory back.
    gc.freeze()
    sys.exit(code)

