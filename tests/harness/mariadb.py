"""A private, throw-away MariaDB server for integration tests.

`PrivateMariaDB` initialises a fresh data directory with ``mariadb-install-db``
and runs ``mariadbd`` from the installed binaries with ``--no-defaults``, so the
host's ``/etc/mysql`` configuration never leaks in.  The server listens only on
127.0.0.1, on a port chosen outside the kernel's ephemeral range (so the port
can be reused after a stop without an outgoing connection having grabbed it),
and on its own Unix socket.  ``root`` has an empty password over TCP.

The server can be stopped, killed and started again on the same port and data
directory, which lets tests simulate outages ("database down for N seconds").
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from tests.harness.server import PrivateServer

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
)
_MISSING_MESSAGE = "mariadbd not found: install mariadb-server (apt-get install mariadb-server)"

# Options shared by mariadb-install-db (passed through to the bootstrap server)
# and the running server, chosen for a fast start and a small footprint.
_ENGINE_OPTIONS: tuple[str, ...] = (
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-temp-data-file-path=ibtmp1:4M:autoextend",
    "--skip-name-resolve",
)

_SERVER_OPTIONS: tuple[str, ...] = (
    "--local-infile=1",
    "--max-connections=200",
    "--innodb-lock-wait-timeout=5",
    "--innodb-buffer-pool-load-at-startup=0",
    "--innodb-buffer-pool-dump-at-shutdown=0",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
)

# Global variables tests are allowed to change; ensure_healthy() restores them.
HEALTHY_GLOBALS: dict[str, int] = {
    "wait_timeout": 28800,
    "read_only": 0,
    "max_connections": 200,
}


def _find_binary(*names: str) -> str | None:
    """Return the first of ``names`` found on PATH, /usr/sbin or /usr/bin."""
    for name in names:
        found = shutil.which(name, path=_SEARCH_PATH)
        if found:
            return found
    return None


def require_mariadbd() -> tuple[str, str]:
    """Return the paths of (mariadbd, mariadb-install-db).

    Raises RuntimeError with an installation hint when either is missing; the
    harness deliberately fails rather than skips in that case.
    """
    server = _find_binary("mariadbd", "mysqld")
    installer = _find_binary("mariadb-install-db", "mysql_install_db")
    if server is None or installer is None:
        raise RuntimeError(_MISSING_MESSAGE)
    return server, installer


def _ephemeral_port_range() -> tuple[int, int]:
    """Return the kernel's ephemeral (outgoing) port range."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(port: int) -> bool:
    """True when ``port`` can currently be bound on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_free_port() -> int:
    """Pick a free 127.0.0.1 port that lies outside the ephemeral range.

    Ports outside that range are never handed out as the local port of an
    outgoing connection, so a server can stop and later re-bind the same port.
    """
    low, high = _ephemeral_port_range()
    candidates = [p for p in range(15000, 32000) if not low <= p <= high]
    for port in random.sample(candidates, min(200, len(candidates))):
        if _port_is_free(port):
            return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


def _tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file (empty if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class PrivateMariaDB(PrivateServer):
    """A MariaDB server owned by the test session, living in a temp directory.

    Attributes: ``host`` (always 127.0.0.1), ``port``, ``socket`` (Unix socket
    path), ``datadir``, ``basedir`` (temp directory holding everything),
    ``error_log`` and ``pid`` (None while not running).
    """

    def __init__(self, port: int | None = None, startup_timeout: float = STARTUP_TIMEOUT,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.server_bin, self.install_bin = require_mariadbd()
        # Keep the path short: Unix socket paths are limited to ~107 bytes.
        self.basedir = Path(tempfile.mkdtemp(prefix="mdb-", dir="/tmp"))
        self.datadir = self.basedir / "data"
        self.socket = str(self.basedir / "mysqld.sock")
        self.error_log = self.basedir / "error.log"
        self.host = HOST
        self.port = port if port is not None else pick_free_port()
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._bootstrapped = False
        atexit.register(self.cleanup)

    # ------------------------------------------------------------------ state
    def url(self, db: str = "test") -> str:
        """SQLAlchemy-style URL for ``db`` over TCP as root."""
        return f"mysql+pymysql://root:@{self.host}:{self.port}/{db}"

    def connect(self, db: str | None = "test", **kw: Any) -> pymysql.connections.Connection:
        """Open a pymysql connection over TCP as root; ``kw`` overrides defaults."""
        params: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": "root", "password": "",
            "database": db, "connect_timeout": 5, "charset": "utf8mb4",
        }
        params.update(kw)
        return pymysql.connect(**params)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the server (initialising the datadir first if needed).

        Blocks until it accepts connections; raises RuntimeError, including the
        tail of the error log, if it exits or is not ready within the timeout.
        """
        if self.is_running():
            return
        if not (self.datadir / "mysql").is_dir():
            self._install()
        self._spawn()
        self._wait_ready()
        if not self._bootstrapped:
            self._bootstrap_accounts()
            self._bootstrapped = True

    def ensure_healthy(self) -> None:
        """Make sure the server runs and undo global changes tests may make.

        Starts the server if it is down, restores ``HEALTHY_GLOBALS`` and
        recreates the ``test`` database if it was dropped.
        """
        self.start()
        conn = self.connect(db=None, autocommit=True)
        try:
            with conn.cursor() as cur:
                for name, value in HEALTHY_GLOBALS.items():
                    cur.execute(f"SET GLOBAL {name} = %s", (value,))
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            conn.close()

    # -------------------------------------------------------------- internals
    def _base_args(self) -> list[str]:
        """Options common to install-db and the server: no defaults, our paths."""
        # Its own tmpdir: servers of other test sessions on the machine name their temporary files alike.
        args = ["--no-defaults", f"--datadir={self.datadir}", f"--tmpdir={self.basedir}"]
        if os.geteuid() == 0:
            args.append("--user=root")
        return args + list(_ENGINE_OPTIONS)

    def _install(self) -> None:
        """Create the system tables with mariadb-install-db."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        cmd = [self.install_bin, *self._base_args(),
               "--auth-root-authentication-method=normal", "--skip-test-db"]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=120, check=False)
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace")[-4000:]
            raise RuntimeError(f"mariadb-install-db failed ({result.returncode}):\n{output}")

    def _server_command(self) -> list[str]:
        """Full mariadbd command line."""
        return [
            self.server_bin, *self._base_args(),
            f"--port={self.port}", f"--bind-address={self.host}",
            f"--socket={self.socket}",
            f"--pid-file={self.basedir / 'mysqld.pid'}",
            f"--log-error={self.error_log}",
            *_SERVER_OPTIONS, *self.extra_args,
        ]

    def _spawn(self) -> None:
        """Launch mariadbd in the background; its console output goes to a file."""
        with open(self.basedir / "console.log", "ab") as console:
            self._proc = subprocess.Popen(
                self._server_command(), stdin=subprocess.DEVNULL,
                stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def _wait_ready(self) -> None:
        """Poll the Unix socket until the server answers or the timeout hits."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                self._fail("mariadbd exited during startup")
            try:
                pymysql.connect(unix_socket=self.socket, user="root", password="",
                                connect_timeout=2).close()
                return
            except pymysql.err.MySQLError as exc:
                last_error = exc
                time.sleep(0.05)
        self.kill()
        self._fail(f"mariadbd not ready after {self.startup_timeout:.0f}s ({last_error})")

    def _fail(self, reason: str) -> None:
        """Raise RuntimeError with ``reason`` and the error log tail."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        log = self.error_log if _tail(self.error_log) else self.basedir / "console.log"
        raise RuntimeError(
            f"{reason} (port {self.port}, datadir {self.datadir}); "
            f"tail of {log}:\n{_tail(log)}"
        )

    def _bootstrap_accounts(self) -> None:
        """Give root an empty password over TCP and create the ``test`` database."""
        conn = pymysql.connect(unix_socket=self.socket, user="root", password="",
                               autocommit=True)
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "%"):
                    cur.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}' IDENTIFIED BY ''")
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            conn.close()
        self.connect(db="test").close()
