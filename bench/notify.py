"""What alerts cost a run: the same one-statement SQLite job run with notifications to a local HTTP
receiver (every run sends one: `on: [success]`) and without, alternated in the same process, and the
median overhead per run (the outcome's outbox row plus the send, waited for). Then five runs whose
receiver stalls (accepts, never answers): the time they add over the same five runs without alerts
is the target's timeout once, not five times.

    .venv/bin/python bench/notify.py [--runs 60] [--timeout 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner.config.jobs import load_job  # noqa: E402
from runner.config.project import load_project  # noqa: E402
from runner.notify.hub import Hub  # noqa: E402
from runner.run.executor import Runner, RunRequest  # noqa: E402
from runner.state.ledger import Ledger  # noqa: E402
from tests.notifykit import HttpReceiver, Stall  # noqa: E402

TARGET_MS = 5.0


def make_project(root: Path, url: str | None, timeout: float) -> None:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    notify = f"notify:\n  - url: \"{url}\"\n    on: [success]\n    timeout: {timeout}s\n" if url else ""
    (root / "conf" / "runner.yml").write_text(f"state_url: 'sqlite:///var/state.db'\n{notify}")
    (root / "conf" / "databases.yml").write_text("warehouse: {url: 'sqlite:///var/warehouse.db'}\n")
    (root / "jobs" / "one.yml").write_text("database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n")


class Setup:
    def __init__(self, root: Path, url: str | None, timeout: float):
        make_project(root, url, timeout)
        self.project = load_project(root / "conf")
        self.job = load_job(self.project, "one")
        ledger = Ledger(self.project.settings.state_url)
        self.hub = Hub(self.project, ledger, {"one": self.job}) if url else None
        self.runner = Runner(self.project, ledger=ledger, watchers=self.hub.watchers() if self.hub else ())

    def run(self) -> tuple[float, float]:
        """(seconds the run took, seconds until its alert was sent as well)."""
        start = time.perf_counter()
        result = self.runner.run(RunRequest(self.job, date.today()))
        ran = time.perf_counter() - start
        if self.hub is not None:
            self.hub.courier.flush()
        assert result.ok, result.error
        return ran, time.perf_counter() - start

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()
        self.runner.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=1.0)
    args = ap.parse_args()
    receiver = HttpReceiver()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Setup(Path(tmp) / "plain", None, args.timeout)
        told = Setup(Path(tmp) / "told", f"json://127.0.0.1:{receiver.port}/hook", args.timeout)
        for _ in range(5):  # warm up: imports (Apprise), schema, page cache
            plain.run(), told.run()
        base, with_alerts, with_sends = [], [], []
        for _ in range(args.runs):
            base.append(plain.run()[0])
            ran, sent_too = told.run()
            with_alerts.append(ran)
            with_sends.append(sent_too)
        plain.close()
        told.close()
        sent = len(receiver.requests)

        stall = Stall()
        quiet = Setup(Path(tmp) / "quiet", None, args.timeout)
        stalled = Setup(Path(tmp) / "stalled", f"json://127.0.0.1:{stall.port}/hook", args.timeout)
        start = time.perf_counter()
        for _ in range(5):
            quiet.runner.run(RunRequest(quiet.job, date.today()))
        quiet.close()
        quiet_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(5):
            stalled.runner.run(RunRequest(stalled.job, date.today()))  # the process's runs, not waiting on sends
        stalled.close()  # the process's exit: the last pass is waited for
        stalled_s = time.perf_counter() - start
        stall.close()
    receiver.close()
    b, w, ws = statistics.median(base), statistics.median(with_alerts), statistics.median(with_sends)
    overhead = (w - b) * 1000
    print(f"run without alerts: median {b * 1000:.2f} ms over {args.runs} runs")
    print(f"run with an alert to a local receiver: median {w * 1000:.2f} ms (the run), {ws * 1000:.2f} ms until its "
          f"alert was received too ({sent} alerts received)")
    print(f"overhead per run {overhead:.2f} ms (target <= {TARGET_MS:g} ms) "
          f"{'OK' if overhead <= TARGET_MS else 'ABOVE TARGET'}; the send itself, in the courier's thread: "
          f"{(ws - w) * 1000:.2f} ms")
    added = stalled_s - quiet_s
    print(f"5 runs with a stalled receiver (timeout {args.timeout:g}s): {stalled_s:.2f}s, without alerts "
          f"{quiet_s:.2f}s: added {added:.2f}s (target: the timeout once, <= {args.timeout + 0.6:.1f}s) "
          f"{'OK' if added <= args.timeout + 0.6 else 'ABOVE TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
