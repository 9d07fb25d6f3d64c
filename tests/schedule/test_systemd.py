"""systemd: the unit `--systemd-unit` prints passes `systemd-analyze verify`, and a real daemon
subprocess speaks sd_notify over a real unix datagram socket given as $NOTIFY_SOCKET: READY=1,
WATCHDOG=1 at least every half of $WATCHDOG_USEC, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, run_main, write_project
from tests.schedkit import SchedProject, _env

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark
ANALYZE = shutil.which("systemd-analyze")
# What systemd-analyze says when it cannot work in this container (no systemd as PID 1 / no bus).
CANNOT_RUN = ("not been booted with systemd", "Failed to connect to bus", "Failed to initialize manager",
              "Operation not permitted")


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        pytest.fail("systemd-analyze is missing: scripts/test installs systemd with apt")
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and any(s in done.stderr for s in CANNOT_RUN):
        pytest.skip(f"systemd-analyze verify cannot run in this container: {done.stderr.strip()[:200]}")
    return done


def _complaints(done: subprocess.CompletedProcess[str], unit: Path) -> list[str]:
    return [ln for ln in (done.stdout + done.stderr).splitlines() if unit.name in ln or str(unit) in ln]


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    job = "schedule: '30 2 * * *'\ndatabase: warehouse\ntasks: [{name: a, sql: SELECT 1}]\n"
    write_project(tmp_path, {"nightly": job},
                  runner="timezone: UTC\nstop_grace: 90s\n")
    code, text = run_main(tmp_path, "--systemd-unit")
    assert code == 0
    for line in ("Type=notify", "Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=120s",
                 "WatchdogSec=60s", f"WorkingDirectory={tmp_path}", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text.splitlines(), line
    assert f"-m runner --scheduler --conf {tmp_path / 'conf'}" in text
    unit = tmp_path / "runner-test.service"
    unit.write_text(text)
    done = verify(unit)
    assert done.returncode == 0 and not _complaints(done, unit), done.stdout + done.stderr

    broken = tmp_path / "runner-broken.service"
    broken.write_text(text.replace("Type=notify", "Type=notifyy"))
    assert _complaints(verify(broken), broken), "the check can fail"


def test_a_project_path_with_spaces_is_quoted_in_exec_start(tmp_path: Path) -> None:
    root = tmp_path / "etl jobs"
    write_project(root, {})
    code, text = run_main(root, "--systemd-unit", "--python", "/usr/bin/python3")
    assert code == 0
    assert f'ExecStart=/usr/bin/python3 -m runner --scheduler --conf "{root / "conf"}"' in text
    unit = tmp_path / "runner-spaces.service"
    unit.write_text(text)
    done = verify(unit)
    assert done.returncode == 0 and not _complaints(done, unit), done.stdout + done.stderr
    assert run_main(root, "--systemd-unit", "--python", "python3")[0] == 2


def test_the_daemon_speaks_sd_notify_over_notify_socket(tmp_path: Path) -> None:
    p = SchedProject(tmp_path, {"warehouse": "sqlite:///var/wh.db"})
    p.job("often", {"schedule": "* * * * *", "database": "warehouse", "tasks": [{"name": "a", "sql": "SELECT 1"}]})
    folder = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # a unix socket path has at most 107 bytes
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    usec = 3_000_000
    env = {**_env(), "NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(usec)}
    proc = subprocess.Popen(p.args("--scheduler"), cwd="/", env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    got: list[tuple[float, str]] = []

    def receive(until: float, stop_at: str | None = None) -> None:
        while time.monotonic() < until:
            try:
                got.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                continue
            if stop_at and stop_at in got[-1][1]:
                return
    try:
        receive(time.monotonic() + 30, "READY=1")
        assert any("READY=1" in m for _, m in got), got
        ready_at = next(t for t, m in got if "READY=1" in m)
        receive(ready_at + 7)
        pings = [t for t, m in got if m == "WATCHDOG=1"]
        assert len(pings) >= 4, got
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) <= usec / 1e6 / 2, gaps  # at least every half of WATCHDOG_USEC
        proc.send_signal(signal.SIGTERM)
        receive(time.monotonic() + 20, "STOPPING=1")
        assert any(m.startswith("STOPPING=1") for _, m in got), got
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
