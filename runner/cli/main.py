"""Command line: parse arguments, call one library function, turn named errors into exit codes.

Exit codes: 0 success (or nothing due), 1 a task failed after its retries, 2 usage or configuration
error (nothing ran), 3 skipped because the same job is already running, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn, Sequence

from runner import __version__, logs
from runner.config.urls import passwords
from runner.errors import ConfigError, RunnerError

log = logging.getLogger("runner")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 as well; keep its usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m runner", description="Run scheduled SQL/ETL jobs written as YAML files.")
    p.add_argument("--job", metavar="NAME", help="run one job now (with --history: only this job)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list jobs with schedule and next run time")
    action.add_argument("--check", action="store_true", help="validate conf and every job; exit 2 on problems")
    action.add_argument("--history", action="store_true", help="show recent runs from the ledger")
    action.add_argument("--crontab", action="store_true", help="print cron lines for every scheduled job")
    action.add_argument("--scheduler", action="store_true", help="run the scheduler daemon")
    action.add_argument("--due", action="store_true",
                        help="run every job (with --job: that job, as its cron line does) whose latest scheduled "
                             "slot has no successful run")
    action.add_argument("--notify-test", action="store_true",
                        help="send a test message to every configured notify target and report each result")
    action.add_argument("--systemd-unit", action="store_true",
                        help="print a systemd unit that runs the scheduler daemon")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="set a job parameter")
    p.add_argument("--date", metavar="YYYY-MM-DD[..YYYY-MM-DD]", help="run date, or an inclusive range")
    p.add_argument("--from-task", metavar="TASK", help="start at this task (and run what follows)")
    p.add_argument("--dry-run", action="store_true", help="print the plan with bound values; run nothing")
    p.add_argument("--run", metavar="ID", help="with --history: the whole record of one run (the first 8 "
                                               "characters of its id will do)")
    p.add_argument("--python", metavar="PATH",
                   help="interpreter for --crontab lines and --systemd-unit (default: this one)")
    p.add_argument("--conf", type=Path, metavar="DIR", help="conf folder (default: $RUNNER_CONF or ./conf)")
    p.add_argument("--jobs", type=Path, metavar="DIR", help="jobs folder (default: $RUNNER_JOBS or ./jobs)")
    p.add_argument("--log-format", choices=("text", "json"), help="log format (default from conf/runner.yml)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--version", action="version", version=f"runner {__version__}")
    return p


# Options of a run by hand (--job NAME alone); every other action would silently ignore them.
_RUN_OPTIONS = (("param", "--param"), ("date", "--date"), ("from_task", "--from-task"), ("dry_run", "--dry-run"))
_ACTIONS = (("due", "--due"), ("history", "--history"), ("scheduler", "--scheduler"), ("list", "--list"),
            ("check", "--check"), ("crontab", "--crontab"), ("notify_test", "--notify-test"),
            ("systemd_unit", "--systemd-unit"))


def misused_option(args: argparse.Namespace) -> str | None:
    """Why an option was given with an action that has no use for it, or None when all fit.
    (Without --job or an action, the parser has already asked what to do.)"""
    action = next((flag for dest, flag in _ACTIONS if getattr(args, dest)), None)
    for dest, flag in _RUN_OPTIONS:
        if getattr(args, dest) and action:
            return f"{flag} is for a run by hand (--job NAME) and cannot be combined with {action}"
    if args.python and not (args.crontab or args.systemd_unit):
        return "--python only goes with --crontab or --systemd-unit (the interpreter they start)"
    if args.run and not args.history:
        return "--run ID goes with --history (the whole record of that run)"
    return None


def main(argv: Sequence[str] | None = None, out=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.job or args.list or args.check or args.history or args.crontab or args.scheduler or args.due
            or args.notify_test or args.systemd_unit):
        parser.error("say what to do: --job NAME, --list, --check, --history, --crontab, --scheduler, --due, "
                     "--notify-test or --systemd-unit")
    if args.job and (args.list or args.check or args.crontab or args.scheduler or args.systemd_unit):
        parser.error("--job runs one job; it cannot be combined with --list, --check, --crontab, --scheduler or "
                     "--systemd-unit")
    misused = misused_option(args)
    if misused:
        parser.error(misused)
    out = out or sys.stdout
    if not args.scheduler and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    verbosity = -1 if args.quiet else args.verbose
    logs.setup(args.log_format or "text", verbosity)
    try:
        from runner.cli import commands
        from runner.config.project import load_project

        conf_problems: list = []
        project = load_project(args.conf, args.jobs, collect=conf_problems if args.check else None)
        if args.log_format is None and project.settings.log_format != "text":
            logs.setup(project.settings.log_format, verbosity)
        logs.REDACTOR.add(passwords(project))
        if args.history and args.run:
            return commands.run_record(project, args.run, out)
        if args.history:
            return commands.history(project, args.job, out)
        if args.notify_test:
            from runner.cli.notify import notify_test

            return notify_test(project, out, job=args.job)
        if args.systemd_unit:
            from runner.schedule.systemd import unit_text

            out.write(unit_text(project, python=args.python))
            return 0
        if args.due:
            from runner.schedule.due import run_due

            return run_due(project, out=out, job=args.job)
        if args.job and args.dry_run:
            return commands.dry_run(project, args.job, params=args.param, dates=args.date,
                                    from_task_name=args.from_task, out=out)
        if args.job:
            return commands.run_job(project, args.job, params=args.param, dates=args.date,
                                    from_task_name=args.from_task, out=out)
        if args.list:
            return commands.list_jobs(project, out)
        if args.check:
            return commands.check(project, out, conf_problems)
        if args.crontab:
            from runner.schedule.crontab import crontab_text

            out.write(crontab_text(project, python=args.python))
            return 0
        from runner.schedule.daemon import run_daemon

        return run_daemon(project)
    except ConfigError as exc:
        for p in exc.problems:
            log.error("%s", logs.REDACTOR.scrub(str(p)))
        log.error("configuration invalid: nothing was run (see --check)")
        return exc.exit_code
    except RunnerError as exc:
        log.error("%s", logs.REDACTOR.scrub(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # a bug or an unreachable state store: say so plainly, keep the traceback at -v
        log.error("unexpected error: %s: %s", type(exc).__name__, logs.REDACTOR.scrub(str(exc)),
                  exc_info=verbosity > 0)
        return 1


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a run like Ctrl-C: the ledger records it as interrupted and the locks are released."""
    raise KeyboardInterrupt


def entry() -> None:
    sys.exit(main())

