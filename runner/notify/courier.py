"""Sends the outbox through Apprise, in a thread of its own so that no run waits for it.

Each pass takes the pending alerts (those of earlier processes too), leases them, and sends each
target its alerts (a job's missed slots waiting together go in one message). A send is bounded by
the target's `timeout`, connecting included; one that fails or times out leaves its alerts pending
and the target is not tried again by this process (the daemon tries again at its next look), so a
receiver that is down or stalls costs its timeout once per process, never once per job. `close`
makes a last pass and waits for it, so that a process sends what it queued before it exits.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Callable, Iterable, Mapping, Sequence

from runner import clock, logs
from runner.config.jobs import load_job
from runner.errors import ConfigError
from runner.model import Job, NotifyTarget, Project, targets_of
from runner.notify.messages import Message, late_message, missed_message, run_message
from runner.state.ledger import HOST, Ledger
from runner.state.outbox import Alert, Outbox
from runner.state.slots import missed_counts

log = logging.getLogger("runner.notify")

EXPIRE = timedelta(days=7)  # an alert not sent for this long is given up (`expired`, logged, in --history)

Send = Callable[[NotifyTarget, Message], "tuple[bool, str]"]


def send_apprise(target: NotifyTarget, message: Message) -> tuple[bool, str]:
    """Send one message with Apprise; (ok, what went wrong). The send is bounded by the target's
    timeout; importing Apprise and loading its plugins (the first send of a process) are not: on a
    loaded host they take seconds, and counted in the timeout they made a receiver that is up look
    down (the alert then arrived all the same, and was sent again later)."""
    try:
        plugin = _plugin(target)
    except Exception as exc:  # a plugin's own bug must not stop the courier
        return False, f"{type(exc).__name__}: {exc}"
    if plugin is None:
        return False, "Apprise does not understand this URL (python -m runner --check says why)"
    return bounded(lambda: _notify(plugin, message), target.timeout)


def privacy_url(url: str) -> str:
    """The URL as Apprise shows it with its secrets hidden (or only its scheme, when Apprise does not
    understand it)."""
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return url.split("://", 1)[0] + "://(not understood by Apprise)"
    return logs.REDACTOR.scrub(plugin.url(privacy=True))


def understood(url: str) -> bool:
    """Whether Apprise knows what to do with the URL (for --check)."""
    import apprise

    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


def bounded(fn: Callable[[], tuple[bool, str]], timeout: float) -> tuple[bool, str]:
    """Run `fn` in a thread and wait for it at most `timeout` seconds (a stalled socket may not
    honour its own timeouts between reads)."""
    box: list[tuple[bool, str]] = []

    def work() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # a plugin's own bug must not stop the courier
            box.append((False, f"{type(exc).__name__}: {exc}"))

    t = threading.Thread(target=work, name="runner-send", daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if not box:
        return False, f"no answer within {timeout:g}s (timeout)"
    return box[0]


def _plugin(target: NotifyTarget) -> Any:
    """The target's Apprise plugin with the target's socket timeouts, or None when Apprise does not
    understand the URL. Nothing is sent yet."""
    import apprise  # imported here: 150 ms that only a process sending alerts pays

    quiet = logging.getLogger("apprise")
    if quiet.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        quiet.setLevel(logging.WARNING)  # "Sent JSON POST notification." after each alert is ours to say
    asset = apprise.AppriseAsset(storage_mode="memory")
    plugin = apprise.Apprise.instantiate(target.url, asset=asset, suppress_exceptions=True)
    if plugin is not None:
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            if hasattr(plugin, attr):
                setattr(plugin, attr, target.timeout)
    return plugin


def _notify(plugin: Any, message: Message) -> tuple[bool, str]:
    import apprise

    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = plugin.notify(body=message.body, title=message.title, notify_type=apprise.NotifyType(message.kind),
                           body_format=apprise.NotifyFormat.TEXT)
        said = captured.getvalue()
    lines = [ln.split(" - ", 2)[-1] for ln in said.splitlines() if ln.strip()]
    return bool(ok), logs.REDACTOR.scrub("; ".join(lines[-3:]) or ("" if ok else "Apprise reported a failure"))


class Courier:
    """Delivers the outbox of one state store for one project."""

    def __init__(self, project: Project, ledger: Ledger, jobs: Mapping[str, Job] | None = None,
                 on_result: Callable[[str, bool], None] | None = None, send: Send | None = None):
        self.project = project
        self.outbox = Outbox(ledger)
        self.ledger = ledger
        self.jobs: dict[str, Job] = dict(jobs or {})
        self.on_result = on_result
        self.send = send or send_apprise
        self.down: set[str] = set()  # targets that failed in this process: not tried again by it
        self._cv = threading.Condition()
        self._wanted = 0
        self._done = 0
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- the thread
    def kick(self) -> None:
        """Ask for a pass (after a run, at the daemon's look); returns at once."""
        with self._cv:
            self._wanted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="runner-notify", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def flush(self) -> None:
        """A pass, waited for."""
        self.kick()
        with self._cv:
            wanted = self._wanted
            while self._done < wanted and self._thread is not None and self._thread.is_alive():
                self._cv.wait(0.5)

    def close(self) -> None:
        """A last pass, waited for: what this process queued is sent (or left pending) before it exits."""
        self.flush()
        with self._cv:
            self._closing = True
            self._cv.notify_all()

    def retry_down(self) -> None:
        """The daemon's look: targets that failed earlier get one more try."""
        with self._cv:
            self.down.clear()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._done >= self._wanted and not self._closing:
                    self._cv.wait()
                if self._closing and self._done >= self._wanted:
                    return
                upto = self._wanted
            try:
                self.deliver()
            except Exception as exc:  # the state store is away: the alerts stay in the outbox
                log.warning("alerts could not be read from the state store (%s: %s); they stay in the outbox",
                            type(exc).__name__, logs.REDACTOR.scrub(str(exc)))
            with self._cv:
                self._done = upto
                self._cv.notify_all()

    # -- one pass
    def deliver(self) -> int:
        """Send what is pending; the number of alerts sent."""
        alerts = self.outbox.pending()
        if not alerts:
            return 0
        now = clock.now().replace(tzinfo=None)
        old = [a for a in alerts if now - a.created_at > EXPIRE]
        if old:
            self.outbox.close(old, "expired", f"not sent within {EXPIRE.days} days; given up")
            for a in old:
                log.error("alert %s of job %s to %s was not sent within %d days and is given up (last error: %s)",
                          a.event, a.job, a.target, EXPIRE.days, a.error or "-", extra={"job": a.job})
        sent = 0
        for group in _groups(a for a in alerts if a not in old):
            first = group[0]
            if first.target_key in self.down:
                continue
            target = self._target(first.job, first.target_key)
            if target is None:
                self.outbox.close(group, "dropped", "its target is no longer in the job's or conf/runner.yml's notify")
                log.warning("alert %s of job %s to %s dropped: that target is no longer configured", first.event,
                            first.job, first.target, extra={"job": first.job})
                continue
            won = self.outbox.lease(group, target.timeout * 2 + 30)
            if not won:
                continue
            try:
                message = self._message(won)
            except Exception as exc:
                self.outbox.failed(won, f"the message could not be written: {type(exc).__name__}: {exc}")
                raise
            ok, error = self.send(target, message)
            if self.on_result is not None:
                self.on_result(target.label, ok)
            fields = {"job": first.job, "run_id": first.run_id, "event": first.event, "target": target.label}
            if ok:
                self.outbox.sent(won)
                sent += len(won)
                log.info("alert %s of job %s sent to %s", first.event, first.job, target.label, extra=fields)
            else:
                self.outbox.failed(won, error)
                self.down.add(target.key)
                log.warning("alert %s of job %s not sent to %s: %s; it stays in the outbox and is sent by the next "
                            "runner process (or the daemon's next look)", first.event, first.job, target.label,
                            error, extra=fields)
        return sent

    def _job(self, name: str) -> Job | None:
        if name not in self.jobs:
            try:
                self.jobs[name] = load_job(self.project, name)
            except ConfigError:
                return None
        return self.jobs[name]

    def _target(self, job_name: str, key: str) -> NotifyTarget | None:
        job = self._job(job_name)
        candidates = list(targets_of(self.project.settings, job)) if job is not None else []
        candidates += list(self.project.settings.notify) + list(job.notify or () if job is not None else ())
        return next((t for t in candidates if t.key == key), None)

    def _message(self, alerts: Sequence[Alert]) -> Message:
        first = alerts[0]
        job = self._job(first.job)
        tz = job.timezone if job is not None else self.project.settings.timezone
        if first.event == "missed":
            runs = {r["run_id"]: r for r in self._runs(a.run_id for a in alerts)}
            stretches = missed_counts(self.ledger, [a.run_id or "" for a in alerts])
            return missed_message(first.job, [a.slot for a in alerts],
                                  [runs[a.run_id]["error"] or "" for a in alerts if a.run_id in runs], HOST, tz,
                                  total=sum(stretches.get(a.run_id or "", 1) for a in alerts))
        if first.event == "late":
            assert first.slot is not None
            runs = [dict(zip(("run_id", "status", "started_at"), r)) for r in self.outbox.slot_runs(first.job,
                                                                                                   first.slot)]
            full = {r["run_id"]: r for r in self._runs(r["run_id"] for r in runs)}
            late_after = job.late_after if job is not None and job.late_after else 0.0
            return late_message(first.job, first.slot, late_after, [full.get(r["run_id"], r) for r in runs], HOST, tz)
        run = next(iter(self._runs([first.run_id])), None)
        if run is None:
            raise LookupError(f"run {first.run_id} of the alert is not in the ledger")
        return run_message(first.event, run, self.ledger.attempt_details(first.run_id or ""), tz)

    def _runs(self, run_ids: Iterable[str | None]) -> list[dict[str, Any]]:
        out = []
        for run_id in dict.fromkeys(r for r in run_ids if r):
            out.extend(r for r in self.ledger.find_runs(run_id, 1) if r["run_id"] == run_id)
        return out


def _groups(alerts: Iterable[Alert]) -> list[list[Alert]]:
    """One message per alert, except a job's missed slots to one target, which go together."""
    groups: OrderedDict[Any, list[Alert]] = OrderedDict()
    for a in alerts:
        key = (a.target_key, a.job, "missed") if a.event == "missed" else a.id
        groups.setdefault(key, []).append(a)
    return list(groups.values())
