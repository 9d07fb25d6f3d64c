"""`--crontab --install` and `--crontab --uninstall`: the project's cron lines in the user's crontab,
inside a managed block

    # BEGIN runner <project root>
    ...the lines of --crontab...
    # END runner <project root>

Installing replaces only that block (or appends it), keeps every other line as it was and saves the
crontab it replaces under var/crontab-backups/ (mode 600). Cron reads `NAME=value` lines as settings for
the lines after them, so the block says which timezone its first lines assume, and ends by putting
back the SHELL and CRON_TZ in force before it: the user's lines after the block keep their meaning.

The crontab command is `crontab` (it checks the lines and installs them for the current user);
`RUNNER_CRONTAB_COMMAND` names another, e.g. "crontab -u etl" to manage the crontab of user etl as
root.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from datetime import timezone
from pathlib import Path
from typing import IO, Sequence

from runner import clock
from runner.errors import RunnerError
from runner.model import Project
from runner.schedule.crontab import ROOT_ENV, crontab_text, same_zone, system_timezone

COMMAND_ENV = "RUNNER_CRONTAB_COMMAND"
BACKUPS = "var/crontab-backups"
_SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_RESTORED = ("SHELL", "CRON_TZ")
_DEFAULT_SHELL = "/bin/sh"


class CrontabError(RunnerError):
    """The crontab command failed, or the crontab holds a block the runner cannot read safely."""

    exit_code = 2


def markers(root: str) -> tuple[str, str]:
    return f"# BEGIN runner {root}", f"# END runner {root}"


def find_block(lines: Sequence[str], root: str) -> tuple[int, int] | None:
    """(first, last) line index of the project's block, or None; CrontabError when it is not whole."""
    begin, end = markers(root)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip() == end]
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        where = ", ".join(str(i + 1) for i in sorted(starts + ends))
        raise CrontabError(f"the crontab's block for {root} is not one BEGIN line followed by one END line (lines "
                           f"{where}): fix it with crontab -e, then install again")
    return starts[0], ends[0]


def settings_before(lines: Sequence[str]) -> dict[str, str]:
    """The NAME=value settings in force after these crontab lines (the last of each name wins)."""
    found: dict[str, str] = {}
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        m = _SETTING.match(line)
        if m and not line.lstrip()[:1].isdigit() and not line.lstrip().startswith(("*", "@")):
            found[m.group(1)] = m.group(2).strip("'\"")
    return found


def block(root: str, body: str, before: dict[str, str], system_tz: str) -> list[str]:
    """The managed block for `body` (the text of --crontab), placed after lines that set `before`."""
    begin, end = markers(root)
    out = [begin, "# Managed by `python -m runner --crontab --install` (--uninstall removes it): edit the jobs, "
                  "not these lines."]
    inherited_tz = before.get("CRON_TZ")
    if inherited_tz and not same_zone(inherited_tz, system_tz):
        out.append(f"CRON_TZ={system_tz}")  # the lines below assume the system's timezone
    lines = body.rstrip("\n").splitlines()
    out += lines
    mine = settings_before(lines)
    if inherited_tz and not same_zone(inherited_tz, system_tz):
        mine.setdefault("CRON_TZ", system_tz)
    for name in _RESTORED:
        if name not in mine:
            continue
        theirs = before.get(name, system_tz if name == "CRON_TZ" else _DEFAULT_SHELL)
        if mine[name] != theirs:
            out.append(f"{name}={theirs}")  # as it was before the block, for the lines after it
    return out + [end]


def merged(current: str, root: str, body: str, system_tz: str) -> str:
    """The crontab with the project's block put in (replacing its old one in place, or appended)."""
    lines = current.splitlines()
    found = find_block(lines, root)
    if found is None:
        head, tail = lines, []
        while head and not head[-1].strip():
            head = head[:-1]
        head = head + [""] if head else head
    else:
        head, tail = lines[:found[0]], lines[found[1] + 1:]
    return "\n".join(head + block(root, body, settings_before(head), system_tz) + tail) + "\n"


def removed(current: str, root: str) -> tuple[str, bool]:
    """The crontab without the project's block, and whether there was one."""
    lines = current.splitlines()
    found = find_block(lines, root)
    if found is None:
        return current, False
    head, tail = lines[:found[0]], lines[found[1] + 1:]
    if head and not head[-1].strip():
        head = head[:-1]  # the blank line the install put before the block
    text = "\n".join(head + tail)
    return (text + "\n" if text.strip() else ""), True


# ------------------------------------------------------------------------------------- the crontab command

def _command() -> list[str]:
    return shlex.split(os.environ.get(COMMAND_ENV) or "crontab")


def _crontab(args: list[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = _command() + args
    try:
        return subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise CrontabError(f"{cmd[0]} not found: install cron (apt-get install cron, dnf install cronie) or name "
                           f"the crontab command in {COMMAND_ENV}") from None


def read_crontab() -> str:
    done = _crontab(["-l"])
    if done.returncode == 0:
        return done.stdout
    if "no crontab" in done.stderr.lower():
        return ""
    raise CrontabError(f"{shlex.join(_command() + ['-l'])} failed: {done.stderr.strip() or done.returncode}")


def write_crontab(text: str) -> None:
    done = _crontab(["-"], text)
    if done.returncode != 0:
        raise CrontabError(f"{shlex.join(_command())} refused the new crontab, which was not installed (the one "
                           f"in place is unchanged): {' '.join(done.stderr.split())}")


def backup(project: Project, text: str) -> Path | None:
    """Save the crontab about to be replaced (mode 600: it may hold secrets); None when it was empty."""
    if not text.strip():
        return None
    folder = project.root / BACKUPS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = clock.now().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"crontab.{stamp}"
    fd, tmp = tempfile.mkstemp(prefix=".crontab.", dir=folder)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _shown(project: Project, path: Path | None) -> str:
    if path is None:
        return "the crontab was empty, so no backup was made"
    return f"the previous crontab is saved in {path.relative_to(project.root)}"


def install(project: Project, out: IO[str], python: str | None = None) -> int:
    root = os.environ.get(ROOT_ENV) or str(project.root)
    body = crontab_text(project, python=python)  # ConfigError (exit 2) when a job file is invalid
    current = read_crontab()
    new = merged(current, root, body, system_timezone())
    if new == current:
        out.write(f"the crontab already holds these lines for {root}; nothing changed\n")
        return 0
    saved = backup(project, current)
    write_crontab(new)
    if find_block(read_crontab().splitlines(), root) is None:
        raise CrontabError(f"the crontab was written but does not hold the block for {root}: check it with "
                           f"crontab -l ({_shown(project, saved)})")
    jobs = sum(1 for line in body.splitlines() if " --due --job " in line and not line.startswith("#"))
    out.write(f"installed the cron lines of {root} ({jobs} job line(s) and the catch-up line) between "
              f"'{markers(root)[0]}' and '{markers(root)[1]}'; every other line was kept; {_shown(project, saved)}\n")
    return 0


def uninstall(project: Project, out: IO[str]) -> int:
    root = os.environ.get(ROOT_ENV) or str(project.root)
    current = read_crontab()
    new, found = removed(current, root)
    if not found:
        out.write(f"the crontab holds no block for {root}; nothing changed\n")
        return 0
    saved = backup(project, current)
    write_crontab(new)
    out.write(f"removed the cron lines of {root}; every other line was kept; {_shown(project, saved)}\n")
    return 0

