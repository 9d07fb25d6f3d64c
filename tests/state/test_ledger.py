"""The ledger's state store when several processes open a fresh one at the same moment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.state.ledger import Ledger

OPEN_AND_RECORD = """
import sys
from runner.state.ledger import Ledger
ledger = Ledger(sys.argv[1])
ledger.start_run(sys.argv[2], "race", "2026-11-20")
ledger.finish_run(sys.argv[2], "success", 1, 0)
"""


@pytest.mark.parametrize("round_", range(3))
def test_processes_creating_a_fresh_state_store_together_all_record_their_run(tmp_path: Path, round_: int) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_RECORD, url, f"run{i:02d}"],
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    ledger = Ledger(url)
    try:
        assert sorted(r["run_id"] for r in ledger.history("race")) == [f"run{i:02d}" for i in range(6)]
    finally:
        ledger.dispose()
