"""Dead-man pings, healthchecks.io convention: `<url>/start` when a run starts, `<url>` when it
succeeds, `<url>/fail` when it fails (Sentry Crons and Cronitor take the same shape). What the
runner cannot report itself (the host is down, cron is broken) the service notices by the pings
that do not come.

Pings go out in order from a thread of their own, each bounded by `ping_timeout`: a ping never
delays or fails a run. A ping host that does not answer is not tried again by this process (its
silence is what the service reports); the daemon tries again at its next look.
"""

from __future__ import annotations

import logging
import queue
import threading
from urllib.parse import urlsplit

from runner import logs

log = logging.getLogger("runner.ping")


def ping_target(url: str, outcome: str) -> str:
    """The URL to call: `start`, `success` or `fail`."""
    return url if outcome == "success" else f"{url}/{outcome}"


def shown(url: str) -> str:
    """A ping URL fit for logs: its host only (the path is the check's secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/..."


class Pinger:
    def __init__(self, timeout: float = 10.0, user_agent: str = "runner"):
        self.timeout = timeout
        self.user_agent = user_agent
        self.down: set[str] = set()
        self._queue: queue.SimpleQueue[tuple[str, str, str, dict[str, str]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ping(self, url: str, outcome: str, body: str = "") -> None:
        """Queue a ping; returns at once."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="runner-ping", daemon=True)
                self._thread.start()
        self._queue.put((url, outcome, body, logs.current()))

    def close(self) -> None:
        """Send what is queued (each bounded by the timeout) and stop."""
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def retry_down(self) -> None:
        self.down.clear()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            url, outcome, body, fields = item
            with logs.bound(**fields):
                self._send(url, outcome, body)

    def _send(self, url: str, outcome: str, body: str) -> None:
        import urllib.error
        import urllib.request  # only a process with a ping pays for http.client

        host = urlsplit(url).netloc
        if host in self.down:
            log.info("ping %s to %s skipped: it did not answer earlier", outcome, shown(url))
            return
        request = urllib.request.Request(ping_target(url, outcome), data=body.encode()[:10000], method="POST",
                                         headers={"User-Agent": self.user_agent, "Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1000)
            log.debug("ping %s sent to %s", outcome, shown(url))
        except (OSError, urllib.error.URLError, ValueError) as exc:
            self.down.add(host)
            reason = getattr(exc, "reason", None) or exc
            log.warning("ping %s to %s failed: %s; the run goes on (the ping service notices the silence)",
                        outcome, shown(url), logs.REDACTOR.scrub(str(reason)))
