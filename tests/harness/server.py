"""What the private test servers (MariaDB, PostgreSQL) share: one server process of ours, stopped
cleanly with the server's own shutdown signal, killed (a crash), restarted on the same port and data
directory, and removed with its folder at the end."""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TypeVar

SHUTDOWN_TIMEOUT = 60.0
_S = TypeVar("_S", bound="PrivateServer")


class PrivateServer:
    """Subclasses set `basedir` and `_proc` (the server's Popen) and implement `start()`."""

    basedir: Path
    shutdown_signal = signal.SIGTERM
    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._proc.pid if self.is_running() and self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Clean shutdown, and wait for the server to exit; SIGKILL after `timeout` seconds."""
        if not self.is_running():
            self._proc = None
            return
        assert self._proc is not None
        self._proc.send_signal(self.shutdown_signal)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL (a crash), and reap the process."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=SHUTDOWN_TIMEOUT)
        self._proc = None
        self._after_kill()

    def _after_kill(self) -> None:
        """What a crash leaves to wait for before the server can start again (nothing by default)."""

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server (killing it if necessary) and delete all its files."""
        try:
            self.stop(timeout=15)
        finally:
            self.kill()
            shutil.rmtree(self.basedir, ignore_errors=True)
            atexit.unregister(self.cleanup)

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
