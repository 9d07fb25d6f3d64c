"""A private, throw-away PostgreSQL server for integration tests.

`PrivatePostgres` initialises a fresh cluster with ``initdb`` from the installed server
(``pg_config --bindir``) and runs ``postgres`` from it, listening only on 127.0.0.1 on a port outside
the kernel's ephemeral range, with its Unix socket in its own folder and trust authentication for the
``postgres`` superuser, so nothing of the host's clusters or configuration is used. PostgreSQL
refuses to run as root: under root the server runs as the ``postgres`` account (created by the
Debian package) and its folder belongs to that account.

The server can be stopped, killed (SIGKILL, a crash) and started again on the same port and data
directory, which lets tests simulate outages, as `PrivateMariaDB` does.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.mariadb import HOST, pick_free_port
from tests.harness.server import PrivateServer

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
_MISSING_MESSAGE = ("PostgreSQL server binaries (initdb, postgres) not found: install postgresql "
                    "(apt-get install postgresql), or put pg_config of an installed server on PATH")
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/usr/local/bin"])

# Chosen for a fast start, a small footprint and durability that tests do not need.
_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": HOST,
    "max_connections": "200",
    "shared_buffers": "32MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "lc_messages": "C",
}


def _bindir() -> Path | None:
    """The folder of the installed server's programs: `pg_config --bindir`, else the newest Debian one."""
    pg_config = shutil.which("pg_config", path=_SEARCH_PATH)
    candidates: list[Path] = []
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for path in candidates:
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    return None


def require_postgres() -> Path:
    """The bindir of the installed server; RuntimeError with an installation hint when it is missing
    (the harness fails rather than skips)."""
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError(_MISSING_MESSAGE)
    return bindir


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class PrivatePostgres(PrivateServer):
    """A PostgreSQL server owned by the test session, living in a temp directory.

    Attributes: ``host`` (127.0.0.1), ``port``, ``socket_dir``, ``datadir``, ``basedir``, ``log``.
    """

    user = "postgres"
    shutdown_signal = signal.SIGINT  # fast shutdown: sessions are disconnected, as a restart does

    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None,
                 startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.bindir = require_postgres()
        self.basedir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.datadir = self.basedir / "data"
        self.socket_dir = self.basedir / "sock"
        self.log = self.basedir / "server.log"
        self.host = HOST
        self.port = port if port is not None else pick_free_port()
        self.settings = {**_SERVER_SETTINGS, **(settings or {})}
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as = self._account()
        self.socket_dir.mkdir()
        if self._run_as is not None:
            for path in (self.basedir, self.socket_dir):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        atexit.register(self.cleanup)

    @staticmethod
    def _account() -> pwd.struct_passwd | None:
        """The account the server runs as: None (this one) unless we are root."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("PostgreSQL refuses to run as root and there is no 'postgres' account: "
                               "install postgresql (apt-get install postgresql), which creates it") from None

    # ------------------------------------------------------------------ state
    def url(self, db: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy-style URL for ``db`` over TCP as the superuser."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:@{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres", autocommit: bool = True, **kw: Any) -> Any:
        """A psycopg connection over TCP as the superuser."""
        import psycopg

        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user, "dbname": db,
                                  "connect_timeout": 5, "autocommit": autocommit}
        params.update(kw)
        return psycopg.connect(**params)

    def execute(self, db: str, *statements: str) -> None:
        with self.connect(db) as conn:
            for sql in statements:
                conn.execute(sql)

    def rows(self, db: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(db) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the server (initialising the cluster first if needed); block until it accepts connections."""
        if self.is_running():
            return
        if not (self.datadir / "PG_VERSION").is_file():
            self._initdb()
        self._spawn()
        self._wait_ready()

    def _after_kill(self) -> None:
        # Backends of a killed postmaster linger for a moment; a new one cannot start on the same data
        # directory until they are gone.
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT
        while self._backends() and time.monotonic() < deadline:
            time.sleep(0.05)

    def ensure_healthy(self) -> None:
        """Running, with the settings tests may change (ALTER SYSTEM) reset and the `test` database there."""
        self.start()
        with self.connect() as conn:
            conn.execute("ALTER SYSTEM RESET ALL")
            conn.execute("SELECT pg_reload_conf()")
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'test'").fetchone():
                conn.execute("CREATE DATABASE test")

    def create_database(self, name: str) -> None:
        self.execute("postgres", f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate(self, db: str, like: str) -> list[int]:
        """pg_terminate_backend for every backend of `db` whose running statement matches `like`."""
        return [r[0] for r in self.rows("postgres", "SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                                        "query LIKE %s AND pid <> pg_backend_pid() AND pg_terminate_backend(pid)",
                                        (db, like))]

    # -------------------------------------------------------------- internals
    def _popen_args(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        cmd = [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust",
               "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False,
                                cwd=self.basedir, **self._popen_args())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout.decode(errors='replace')[-4000:]}")

    def _command(self) -> list[str]:
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
               "-k", str(self.socket_dir)]
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _spawn(self) -> None:
        log = open(self.log, "ab")
        try:
            if self._run_as is not None:
                os.chown(self.log, self._run_as.pw_uid, self._run_as.pw_gid)
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True, cwd=self.basedir,
                                          **self._popen_args())
        finally:
            log.close()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                self._fail("postgres exited during startup")
            try:
                psycopg.connect(host=str(self.socket_dir), port=self.port, user=self.user, dbname="postgres",
                                connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        self.kill()
        self._fail(f"postgres not ready after {self.startup_timeout:.0f}s ({last})")

    def _backends(self) -> list[int]:
        """Processes still running out of this data directory."""
        pids = []
        for status in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                if str(self.datadir).encode() in Path(status).read_bytes() or self._is_backend(status):
                    pids.append(int(status.split("/")[2]))
            except OSError:
                continue
        return pids

    def _is_backend(self, cmdline: str) -> bool:
        """A child of our postmaster: its cwd is the data directory."""
        try:
            return os.readlink(cmdline.replace("cmdline", "cwd")) == str(self.datadir)
        except OSError:
            return False

    def _fail(self, reason: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        raise RuntimeError(f"{reason} (port {self.port}, datadir {self.datadir}); tail of {self.log}:\n"
                           f"{_tail(self.log)}")
