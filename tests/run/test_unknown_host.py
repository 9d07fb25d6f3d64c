"""A host name that does not resolve (.invalid never does): on the first connection of a run it is a
typo, reported at once with a hint instead of being retried for the whole window; a host this process
reached before is DNS failing for a while, and is waited out within the window. Real resolver, real runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.db import engines
from tests.faultkit import FaultProject

HOST = "wherehouse.no-such-host.invalid"


@pytest.mark.parametrize("url", [f"mysql+pymysql://etl:pw@{HOST}:3306/wh", f"postgresql://etl:pw@{HOST}:5432/wh"])
def test_a_typo_in_the_host_fails_at_once_with_a_hint(tmp_path: Path, url: str) -> None:
    project = FaultProject(tmp_path, {"wh": {"url": url}})
    job = project.job("typo", {"database": "wh", "retry": {"attempts": 5, "window": 600},
                               "tasks": [{"name": "a", "sql": "SELECT 1"}]})
    started = time.monotonic()
    outcome = project.run(job)
    assert outcome.code == 1
    assert time.monotonic() - started < 10  # not the 10-minute window
    assert [a.status for a in outcome.attempts] == ["failed"]
    assert "(unknown host)" in outcome.output and "during: connecting" in outcome.output
    assert "the host name of the database's url does not resolve: check it for a typo" in outcome.output
    assert "pw@" not in outcome.output


def test_a_host_reached_earlier_in_the_process_is_waited_out(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_reached", {(HOST, 3306)})  # as if a connection had succeeded before
    project = FaultProject(tmp_path, {"wh": {"url": f"mysql+pymysql://etl:pw@{HOST}:3306/wh"}},
                           retry={"attempts": 2, "base_delay": 0.05, "max_delay": 0.2, "window": 1.5})
    job = project.job("flaky", {"database": "wh", "tasks": [{"name": "a", "sql": "SELECT 1"}]})
    outcome = project.run(job)
    assert outcome.code == 1
    statuses = [a.status for a in outcome.attempts]
    assert len(statuses) > 2 and set(statuses[:-1]) == {"retrying"}  # past `attempts`: the window decides
    assert "stopped: the retry window of 1.5s closed" in outcome.output
