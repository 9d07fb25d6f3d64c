"""The daemon gives back what its threads freed: memory allocated and freed by many threads (each in a
malloc arena of its own, as the job pool's are) stays in the process's RSS until `trim_heap` returns
it to the system."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runner.schedule.daemon import _malloc_trim, trim_heap

THREADS = 8
PER_THREAD = 400  # blocks of 60 KB each (below glibc's mmap threshold, so they come from the arenas)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(_malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_memory_freed_by_many_threads_leaves_the_process_when_the_heap_is_trimmed() -> None:
    allocated, freed = threading.Barrier(THREADS + 1), threading.Barrier(THREADS + 1)
    kept: list[list[bytes]] = []

    def churn() -> None:
        blocks = [bytes(3000) * 20 for _ in range(PER_THREAD)]
        allocated.wait(30)  # all alive at once: each thread allocates in an arena of its own
        kept.append(blocks[::50])  # a few survivors pin their arenas' tops, as a pool thread's objects do
        del blocks
        freed.wait(30)

    threads = [threading.Thread(target=churn) for _ in range(THREADS)]
    for t in threads:
        t.start()
    allocated.wait(30)
    peak = _rss_mib()
    freed.wait(30)
    for t in threads:
        t.join()
    before = _rss_mib()
    assert trim_heap() is True
    after = _rss_mib()
    held = THREADS * PER_THREAD * 60_000 / 2**20  # MiB the threads allocated
    assert peak - before < held / 2, "the freed memory left the process before any trim: nothing to show"
    assert before - after > held / 2, f"RSS {before:.1f} -> {after:.1f} MiB after freeing {held:.0f} MiB"
    assert len(kept) == THREADS
