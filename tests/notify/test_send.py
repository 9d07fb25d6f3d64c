"""One send through Apprise to a real HTTP receiver, in a fresh interpreter whose import of Apprise is
slow, and so is the loading of its plugins (as on a loaded host or a cold disk cache: a finder on
sys.meta_path waits before each import goes on): the target's timeout bounds the send, not the
import, so a receiver that is up is not taken for one that is down."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.fixtures.core import REPO, subprocess_env
from tests.notifykit import HttpReceiver, free_port

SEND = textwrap.dedent("""
    import importlib.abc, sys, time

    class SlowApprise(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "apprise":
                time.sleep(float(sys.argv[2]))
            elif name.startswith("apprise.plugins."):  # loaded at the first instantiate
                time.sleep(float(sys.argv[2]) / 50)
            return None

    sys.meta_path.insert(0, SlowApprise())
    from runner.model import NotifyTarget
    from runner.notify.courier import send_apprise
    from runner.notify.messages import Message

    ok, error = send_apprise(NotifyTarget(url=sys.argv[1], label="hook", timeout=1.0),
                             Message(title="runner: test", body="body", kind="info"))
    print(ok, error)
""")


def send(url: str, import_seconds: float) -> str:
    done = subprocess.run([sys.executable, "-c", SEND, url, str(import_seconds)], cwd=REPO, capture_output=True,
                          text=True, env=subprocess_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_slow_import_of_apprise_does_not_count_against_the_timeout() -> None:
    http = HttpReceiver()
    try:
        said = send(f"json://127.0.0.1:{http.port}/hook", 2.5)  # the import alone is longer than timeout + 0.5 s
        assert said.startswith("True"), said
        assert [p["title"] for p in http.json_posts()] == ["runner: test"]
    finally:
        http.close()


def test_a_receiver_that_is_down_is_still_reported_down() -> None:
    said = send(f"json://127.0.0.1:{free_port()}/hook", 0.0)
    assert said.startswith("False"), said
