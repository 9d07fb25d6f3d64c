"""systemd: the unit that runs the daemon (`--systemd-unit`), and the sd_notify protocol it speaks.

The unit is `Type=notify`: the daemon says READY=1 once its scheduler runs, WATCHDOG=1 from the
scheduler's own loop (an APScheduler job, so a wedged loop stops the pings and systemd restarts the
daemon), and STOPPING=1 on SIGTERM. sd_notify is a datagram to the unix socket $NOTIFY_SOCKET
(a name starting with @ is in the abstract namespace); without it nothing is sent.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys
from pathlib import Path

from runner.errors import UsageError
from runner.model import Project
from runner.schedule.crontab import check_one_line

WATCHDOG_SEC = 60


def sd_notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not started by systemd or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_every() -> float | None:
    """Seconds between WATCHDOG=1 pings: a third of $WATCHDOG_USEC (systemd wants one at least every
    half of it), or None when systemd watches no watchdog of this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 3


def _quote(arg: str) -> str:
    """An ExecStart argument: double-quoted when it holds a space or a quote (systemd's own quoting)."""
    if not arg or any(c in arg for c in " \t\"'\\$%;"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%") + '"'
    return arg


def unit_text(project: Project, python: str | None = None) -> str:
    """The unit file of the daemon for this project."""
    python = python or sys.executable
    if not os.path.isabs(python):
        raise UsageError(f"--python {python}: give the absolute path of the interpreter, e.g. "
                         f"/opt/miniconda3/envs/etl-runner/bin/python")
    root = project.root.resolve()
    check_one_line(python, str(root), str(project.conf_dir), str(project.jobs_dir))
    args = [python, "-m", "runner", "--scheduler", "--conf", str(project.conf_dir)]
    if project.jobs_dir.resolve() != (project.conf_dir.parent / "jobs").resolve():
        args += ["--jobs", str(project.jobs_dir)]
    try:
        user = pwd.getpwuid(root.stat().st_uid).pw_name
    except (KeyError, OSError):
        user = None
    stop = int(project.settings.stop_grace) + 30
    lines = [
        "# The runner's scheduler daemon, written by `python -m runner --systemd-unit`.",
        f"# Install: python -m runner --systemd-unit > /etc/systemd/system/runner-{_name(root)}.service",
        f"#          systemctl daemon-reload && systemctl enable --now runner-{_name(root)}",
        "[Unit]",
        f"Description=runner: scheduled SQL jobs of {root}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"WorkingDirectory={str(root).replace('%', '%%')}",  # a path as it is: no quotes here
        "ExecStart=" + " ".join(_quote(a) for a in args),
        "ExecReload=/bin/kill -HUP $MAINPID",
        *([f"User={user}"] if user and user != "root" else ["# User=etl   (the daemon need not run as root)"]),
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=10s",
        f"WatchdogSec={WATCHDOG_SEC}s",
        "KillSignal=SIGTERM",
        f"# stop_grace is {project.settings.stop_grace:g}s: running jobs get that long to finish after SIGTERM",
        f"TimeoutStopSec={stop}s",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _name(root: Path) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in root.name).strip("-")
    return name or "runner"



