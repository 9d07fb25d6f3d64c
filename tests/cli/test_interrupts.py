"""Ctrl-C during a verb that runs no task (--history, --list, --pause, ...) ends it at once with exit 130
and says which verb did not finish; it is not held for the 15 s a run gets to kill its statement, and it
does not claim a run stays 'running' when there is none. The state store here is a server that accepts
connections and never answers, so each verb is stuck in the driver when the signal comes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.core import REPO, write_project


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.mark.parametrize("verb, says", [
    (["--history"], "SIGINT: exiting now; --history did not finish\n"),
    (["--list"], "SIGINT: exiting now; --list did not finish\n"),
    (["--pause", "ok", "--reason", "x"], "SIGINT: exiting now; --pause did not finish (what it had not committed "
                                         "is rolled back)"),
    (["--watermarks"], "SIGINT: exiting now; --watermarks did not finish"),
])
def test_ctrl_c_during_a_verb_that_runs_nothing_exits_130_at_once(tmp_path: Path, silent_server: int,
                                                                  verb: list[str], says: str) -> None:
    root = write_project(tmp_path, {"ok": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n"},
                         runner=f"timezone: UTC\nstate_url: mysql+pymysql://etl:s3cret@127.0.0.1:{silent_server}/x\n")
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--conf", str(root / "conf"), *verb], cwd="/", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not _connected(proc.pid, silent_server):  # stuck in the driver, waiting for the server's greeting
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert took < 3, f"exit took {took:.1f}s after SIGINT"
    assert says in err and "stays 'running'" not in err, err
    assert "Traceback" not in err and "s3cret" not in err, err


def _connected(pid: int, port: int) -> bool:
    """Whether process `pid` holds a TCP connection to 127.0.0.1:`port` (read from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{port:04X}") and fields[9] in inodes:
            return True
    return False
