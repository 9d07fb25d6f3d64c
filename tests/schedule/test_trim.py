"""The daemon gives back what its threads freed: memory allocated and freed by many threads (each in a
malloc arena of its own, as the job pool's are) stays in the process's RSS until `trim_heap` returns
it to the system."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runner.schedule.daemon import trim_heap


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_memory_freed_by_many_threads_leaves_the_process_when_the_heap_is_trimmed() -> None:
    kept: list[list[bytes]] = []

    def churn() -> None:
        blocks = [bytes(3000) * 20 for _ in range(400)]  # 60 KB each, below the mmap threshold
        kept.append(blocks[::50])  # a few survivors pin their arenas' tops
        del blocks

    threads = [threading.Thread(target=churn) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = _rss_mib()
    assert trim_heap() is True
    after = _rss_mib()
    assert before - after > 50, f"RSS {before:.1f} -> {after:.1f} MiB"
    assert len(kept) == 16
