"""Hand memory that Python has freed back to the OS: glibc keeps it otherwise, and the Pi's budget is 40 MB.

Start-up allocates and frees a lot (imports, the YAML parse, the first polls); glibc's malloc keeps freed pages
in its heaps for reuse, so the idle server would carry them for ever (about 1.5 MB on the demo).
`malloc_trim(0)` returns every free page of every heap. It runs once start-up has settled and then hourly
(after a burst of clients has come and gone, for instance); it takes well under a millisecond on the loop.
Only where glibc provides it (Linux); elsewhere it does nothing.

The trim does not collect garbage first: a full collection holds the GIL and the loop for as long as it walks
every object, 70–100 ms with 1000 WebSocket clients connected (measured on a 2-core VM), and every reading
arriving meanwhile waits. Python's own collector runs full collections rarely, when the objects have grown by a
quarter. `freeze_startup()` makes those cheaper: what start-up built (modules, the config, the board) lives for
the whole run, and once frozen no collection walks it again.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

from tornado.ioloop import IOLoop, PeriodicCallback

log = logging.getLogger(__name__)

SETTLE_S = 10.0  # the first trim: start-up is over, the first polls are done
INTERVAL_S = 3600.0


def _malloc_trim() -> ctypes._CFuncPtr | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc is linked in
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def freeze_startup() -> None:
    """Collect start-up's garbage once, then exempt what is left from every later collection.

    For the process that owns the interpreter (`python -m server`), after the board is built and before it
    serves: objects frozen here are never collected, so nothing that comes and goes (a connection) may exist yet.
    """
    gc.collect()
    gc.freeze()


class HeapTrimmer:
    """Once after SETTLE_S, then every INTERVAL_S: give free heap pages back."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._periodic: PeriodicCallback | None = None
        self._first: object | None = None

    def start(self) -> None:
        if self._trim is None:
            return
        self._first = IOLoop.current().call_later(SETTLE_S, self.trim)
        self._periodic = PeriodicCallback(self.trim, INTERVAL_S * 1000)
        self._periodic.start()

    def stop(self) -> None:
        if self._first is not None:
            IOLoop.current().remove_timeout(self._first)
            self._first = None
        if self._periodic is not None:
            self._periodic.stop()

    def trim(self) -> None:
        if self._trim is None:
            return
        self._trim(0)
