"""Serving the web app with waitress: alone (`--serve`, for cron deployments) or in a thread of the
daemon's process.

waitress parses HTTP and reads every request whole, and writes every answer, on its own event loop, so a
slow client or one that sends what is not HTTP costs a socket, never a handler thread; two handler
threads render pages, at a lower CPU priority than the rest of the process, and both the event loop and
the handlers wait while the daemon starts a slot's runs (runner.priority). Nothing here is shared with
the scheduler: in the daemon the web has its own thread, its own connections to the state store,
and an error in it is logged and answered, never raised into the schedule.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from runner import logs, priority
from runner.errors import UsageError
from runner.model import Project, WebSpec
from runner.web.actions import Actions
from runner.web.app import FRESH_FOR, App
from runner.web.site import MAX_BODY, Site

log = logging.getLogger("runner.web")

THREADS = 2  # handler threads: pages are rendered one or two at a time, whatever the number of clients
NICE = 10  # the web's threads yield the processor to the schedule's (Linux: nice is per thread)
LIMITS = dict(
    connection_limit=50,  # beyond this many open connections, new ones wait in the listen backlog
    channel_timeout=30,  # an idle connection is closed after this many seconds
    max_request_header_size=64 * 1024,
    max_request_body_size=MAX_BODY,
    asyncore_use_poll=True,
    ident="runner",
)


def lower_priority() -> None:
    """Give the calling thread a lower CPU priority (a page can wait; a slot cannot)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(NICE, os.getpriority(os.PRIO_PROCESS, tid)))
    except (AttributeError, OSError):  # not on this platform, or not allowed: the web just competes
        pass


class _Niced:
    """The app, run at lower priority in whichever handler thread serves it, after the schedule's
    moments (runner.priority)."""

    def __init__(self, app: App):
        self.app = app
        self._done = threading.local()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not getattr(self._done, "niced", False):
            lower_priority()
            self._done.niced = True
        priority.SCHEDULE.quiet()
        return self.app(environ, start_response)


class _OneLine(logging.Filter):
    """waitress's own errors in one line, without a traceback: a client that hangs up mid-answer, or a
    fault in waitress's handling of it (3.0 trips over a request it could not parse), ends that
    connection only, and the daemon's log stays readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc, text = record.exc_info[1], record.getMessage()
            record.msg = "web: %s (%s: %s); the other connections are served as before"
            record.args = (text, type(exc).__name__, logs.REDACTOR.scrub(str(exc)))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


_ONE_LINE = _OneLine()


class WebServer:
    """One waitress server over the project's app; `run()` serves until `stop()`."""

    def __init__(self, project: Project, spec: WebSpec | None = None, fresh_for: float = FRESH_FOR):
        import waitress.server

        # With two handler threads a request waiting its turn is normal, not worth a warning each time.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        logging.getLogger("waitress").addFilter(_ONE_LINE)  # added once however many servers start
        self.spec = spec or project.settings.web or WebSpec()
        self.actions = Actions()
        self.site = Site(project, self.actions, self.spec)
        host = f"[{self.spec.host}]" if ":" in self.spec.host else self.spec.host
        self._stop = threading.Event()
        self._stopped = threading.Event()
        try:
            self._server: Any = waitress.server.create_server(_Niced(App(self.site, fresh_for)),
                                                              listen=f"{host}:{self.spec.port}", threads=THREADS,
                                                              **LIMITS)
        except OSError as exc:
            raise UsageError(f"web: cannot listen on {host}:{self.spec.port} (web.listen in conf/runner.yml): "
                             f"{exc.strerror or exc}; is another runner serving there? choose another port") from None
        self.port = int(self._server.effective_port)

    @property
    def url(self) -> str:
        return WebSpec(self.spec.host, self.port).url

    def run(self) -> None:
        import waitress.wasyncore as wasyncore

        lower_priority()
        log.info("web: serving %s (%s)", self.url,
                 "actions with the token" if self.spec.token else "read-only: no web.token set")
        try:
            while not self._stop.is_set():
                priority.SCHEDULE.quiet()  # requests wait in their sockets while a slot's runs start
                wasyncore.loop(timeout=1.0, map=self._server._map, use_poll=True, count=1)
        finally:
            for channel in list(self._server._map.values()):
                try:
                    channel.close()
                except OSError:
                    pass
            self._server.task_dispatcher.shutdown(timeout=5)
            self.site.close()
            self._stopped.set()

    def stop(self) -> None:
        """Stop accepting and close every connection (from any thread)."""
        self._stop.set()
        try:
            self._server.pull_trigger()
        except OSError:
            pass

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)


class Background:
    """The web served from a thread of the daemon's process."""

    def __init__(self, server: WebServer):
        self.server = server
        self.thread = threading.Thread(target=self._run, name="runner-web", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except Exception:  # the web stops; the schedule goes on
            log.exception("web: the server stopped after an error; the schedule goes on without it")

    def stop(self, grace: float) -> None:
        self.server.stop()
        self.server.wait_stopped(5.0)
        left = self.server.actions.wait(grace)
        if left:
            log.error("web: %d run(s) started from the web still running after %.0fs: cut off (recorded as "
                      "abandoned by the next runner that takes the job's lock)", left, grace)


def start_background(project: Project) -> Background | None:
    """Serve `web:` of conf/runner.yml from a thread; None (the error logged) when it cannot listen."""
    try:
        server = WebServer(project)
    except Exception as exc:
        log.error("%s; the scheduler runs without its web pages", logs.REDACTOR.scrub(str(exc)))
        return None
    bg = Background(server)
    bg.thread.start()
    return bg


def serve(project: Project) -> int:
    """`--serve`: the pages and API from the state store, until SIGTERM or SIGINT; runs started from the
    web are given `stop_grace` to finish."""
    server = WebServer(project)

    def stop(signum: int, _frame: Any) -> None:
        log.info("web: %s: stopping", signal.Signals(signum).name)
        server.stop()

    def reload(_signum: int, _frame: Any) -> None:
        log.info("web: SIGHUP: nothing to reload (job and conf files are read again whenever they change)")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
    server.run()
    grace = project.settings.stop_grace
    running = server.actions.running()
    if running:
        log.info("web: waiting up to %.0fs for %d run(s) started from the web", grace, running)
    left = server.actions.wait(grace)
    if left:
        log.error("web: %d run(s) started from the web still running after %.0fs: cut off", left, grace)
        return 130
    log.info("web: stopped")
    return 0
