"""server/core/memory.py: freed heap pages go back to the OS (glibc), on a schedule that stops with the server."""

from __future__ import annotations

import asyncio
import platform
import re
from pathlib import Path

from server.core import memory
from tests.conftest import require


def rss_kb() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def test_trim_gives_freed_heap_back() -> None:
    # Raspberry Pi OS and Debian are glibc systems: the trim is what runs on the Pi.
    require(
        platform.system() == "Linux" and platform.libc_ver()[0] == "glibc", "glibc's malloc_trim is Linux/glibc only"
    )
    trimmer = memory.HeapTrimmer()
    assert trimmer._trim is not None, "glibc's malloc_trim not found"
    keep = []
    blocks = []
    for _ in range(1_500):  # 24 MB in 16 KB heap blocks, each pinned in place by a small block after it
        blocks.append(bytes(16_384))
        keep.append(bytes(600))
    before_free = rss_kb()
    del blocks
    trimmer.trim()
    assert rss_kb() < before_free - 5_000  # most of the 20 MB is back with the OS, not kept in glibc's heap
    assert keep


def test_schedule_starts_and_stops_on_the_loop() -> None:
    async def run() -> None:
        trimmer = memory.HeapTrimmer()
        trimmer.start()
        if trimmer._trim is not None:
            assert trimmer._periodic is not None
            assert trimmer._periodic.is_running()
        trimmer.stop()
        assert trimmer._periodic is None or not trimmer._periodic.is_running()
        assert trimmer._first is None

    asyncio.run(run())
