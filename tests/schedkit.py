"""Helpers of the scheduling tests: a project folder with scheduled jobs, `python -m runner` as a real
subprocess, waiting on the ledger, and reading slots back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.faultkit import dump_yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass
class SchedProject:
    """conf/ and jobs/ in a folder; the state store is SQLite beside them unless `state_url` is given."""

    root: Path
    databases: dict[str, str]
    state_url: str = "sqlite:///var/state.db"
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "conf").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(exist_ok=True)
        (self.root / "conf" / "runner.yml").write_text(yaml.safe_dump(
            {"timezone": "UTC", "state_url": self.state_url, "stop_grace": 20, **self.settings}))
        (self.root / "conf" / "databases.yml").write_text(yaml.safe_dump(
            {name: {"url": url} for name, url in self.databases.items()}))

    def job(self, name: str, doc: dict[str, Any]) -> None:
        (self.root / "jobs" / f"{name}.yml").write_text(dump_yaml(doc))

    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runner", "--conf", str(self.root / "conf"), *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*args), cwd="/", capture_output=True, text=True, timeout=timeout,
                              env=_env())

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        out = open(log, "w") if log else subprocess.PIPE
        return subprocess.Popen(self.args(*args), cwd="/", stdout=out, stderr=subprocess.STDOUT, text=True,
                                env=_env())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    """Poll `check` until it returns something true (a real process is being waited on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def seen_since(url: str, jobs: list[str], when: Any) -> None:
    """Record that the state store saw these jobs at `when` (a deploy before their latest slot), so the
    first --due or daemon look catches that slot up as it would for a job long in service."""
    from runner.state.jobstate import JobState
    from runner.state.ledger import Ledger

    ledger = Ledger(url)
    try:
        JobState(ledger).see(jobs, when)
    finally:
        ledger.dispose()
