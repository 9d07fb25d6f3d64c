"""Who is told: a job's own `notify` list replaces conf/runner.yml's (an empty list silences the job),
`${VAR}` in a job file's notify URL is expanded, and `on:` picks the events (`success` only when asked).
Real runs in process, a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.core import clean_env, run_main, write_project
from tests.notifykit import HttpReceiver

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env  # a fixture, used through pytestmark
FAILING = "database: warehouse\ntasks:\n  - name: rollup\n    sql: SELECT * FROM missing_table\n"
FINE = "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n"


def test_a_jobs_list_replaces_the_default_and_on_picks_the_events(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    http = HttpReceiver()
    try:
        monkeypatch.setenv("HOOK_PORT", str(http.port))
        own = ("notify:\n  - url: 'json://127.0.0.1:${HOOK_PORT}/job'\n    on: [failure, success]\n")
        write_project(tmp_path, {"plain": FAILING, "plain_ok": FINE, "own": own + FAILING, "own_ok": own + FINE,
                                 "silent": "notify: []\n" + FAILING},
                      runner=f"timezone: UTC\nnotify:\n  - url: json://127.0.0.1:{http.port}/conf\n")
        for job, code in (("plain", 1), ("plain_ok", 0), ("own", 1), ("own_ok", 0), ("silent", 1)):
            assert run_main(tmp_path, "--job", job)[0] == code, job
        told = sorted((path, post["title"].split()[1]) for path in ("/conf", "/job")
                      for post in http.json_posts(path))  # "runner: JOB EVENT ..."
        assert len(http.requests) == len(told)
        # the default list's default events: failure (no success); the job's own list: failure and success
        assert told == [("/conf", "plain"), ("/job", "own"), ("/job", "own_ok")], told
    finally:
        http.close()
