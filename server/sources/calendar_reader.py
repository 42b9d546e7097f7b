"""The calendar reader child process (server/sources/calendar_ics.py), seen from the server.

It is started as soon as a feed's answer is in and is fed the download chunk by chunk as it arrives, so the
server never holds a feed whole; when the download is complete, its stdin is closed, and it is waited for with a
deadline while its answer is read with a cap. Every way it can end becomes a message a person can act on; a
reader that went over one of its own limits (memory, CPU, events) says which, so the feed's last good events stay
on the wall with that reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import select
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.sources.calendar_ics import (
    CPU_LIMIT_S,
    EXIT_FEED_ERROR,
    EXIT_NO_MEMORY,
    MAX_OCCURRENCES,
    MEMORY_LIMIT_BYTES,
)
from server.sources.calendar_text import MAX_TEXT_CHARS

log = logging.getLogger(__name__)

PARSE_TIMEOUT_S = 60.0  # from the end of the download; the reader's CPU limit is lower
# The most an answer within the reader's caps can be: every occurrence with a title and a place of MAX_TEXT_CHARS
# characters of 4 UTF-8 bytes or 2 JSON bytes each, and its dates. Anything more is not the reader speaking.
MAX_ANSWER_BYTES = MAX_OCCURRENCES * (2 * MAX_TEXT_CHARS * 4 + 256) + 4096
WRITE_STALL_S = 30.0
_STDERR_KEEP_BYTES = 4096  # the end of a traceback, for the log
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `python -m server.…` finds the package


@dataclass(frozen=True)
class ReaderLimits:
    """What the reader may use (it sets them on itself); the defaults are sized for the unit's MemoryHigh."""

    memory_bytes: int = MEMORY_LIMIT_BYTES
    cpu_s: int = CPU_LIMIT_S


READER_LIMITS = ReaderLimits()


class ReaderError(Exception):
    """The reader gave no usable answer. `limit`: it went over one of its limits (the same bytes would again);
    `peak_rss_kb`: its peak memory when it said (it refused a feed over its caps)."""

    def __init__(self, message: str, *, limit: bool = False, peak_rss_kb: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.peak_rss_kb = peak_rss_kb


def _child_env() -> dict[str, str]:
    """The reader needs no secret: not the server's environment (API keys, tokens), only what Python uses."""
    keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONTZPATH", "HOME", "SYSTEMROOT")
    return {key: os.environ[key] for key in keep if key in os.environ}


class Reader:
    """One run of the reader for one download: write() the body's chunks, then finish() for the result."""

    def __init__(self, zone: str, first: dt.date, last: dt.date, limits: ReaderLimits = READER_LIMITS) -> None:
        command = [sys.executable, "-m", "server.sources.calendar_ics", "--zone", zone]
        command += ["--from", first.isoformat(), "--until", last.isoformat()]
        command += ["--memory-mb", str(limits.memory_bytes // 2**20), "--cpu-s", str(limits.cpu_s)]
        self.limits = limits
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                cwd=_PROJECT_ROOT,
                env=_child_env(),
            )
        except OSError as err:
            raise ReaderError(f"could not start the calendar reader ({err.strerror})") from None
        if self.proc.stdin is None or self.proc.stdout is None or self.proc.stderr is None:
            raise ReaderError("could not start the calendar reader (no pipes)")
        self._stdin, self._stdout, self._stderr_pipe = self.proc.stdin, self.proc.stdout, self.proc.stderr
        os.set_blocking(self._stdin.fileno(), False)  # write() waits with a timeout, never for ever
        self.digest = hashlib.sha256()  # of the body: a feed refused for a limit is not read again unchanged
        self._stderr = bytearray()
        self._timed_out = self._too_big = False
        self._timeout_s = 0.0

    def write(self, chunk: bytes) -> None:
        """Pass one chunk of the download on. Raises ReaderError if the reader has stopped or stalls."""
        self.digest.update(chunk)
        view = memoryview(chunk)
        try:
            while view:
                # The reader reads its stdin as fast as it comes; one that does not within WRITE_STALL_S is stuck.
                if not select.select([], [self._stdin], [], WRITE_STALL_S)[1]:
                    self.abort()
                    raise ReaderError(f"the calendar reader stopped reading for {WRITE_STALL_S:g} s; will retry")
                try:
                    view = view[os.write(self._stdin.fileno(), view) :]
                except BlockingIOError:
                    continue  # the pipe filled up between select and write
        except (BrokenPipeError, ValueError):  # it ended (a limit?) while the download went on
            raise self._ended(self._collect(timeout_s=5.0)) from None

    def finish(self, timeout_s: float = PARSE_TIMEOUT_S) -> dict[str, Any]:
        """End of the download: the reader's answer, or ReaderError."""
        try:
            self._stdin.close()
        except BrokenPipeError:
            pass  # it has ended already: its exit status says why
        output = self._collect(timeout_s)
        try:
            result = json.loads(output)
        except ValueError:
            result = None
        if self.proc.returncode == 0 and isinstance(result, dict) and isinstance(result.get("events"), list):
            return result
        raise self._ended(output, result)

    def abort(self) -> None:
        """The download failed, or its answer is not wanted: stop the reader (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self._stdin, self._stdout, self._stderr_pipe):
            try:
                pipe.close()
            except OSError:
                pass  # a pipe the dead child left unread

    # -- the child's end

    def _collect(self, timeout_s: float) -> bytes:
        """Read stdout (capped) and stderr (its end) until the reader exits; kill it after `timeout_s`."""
        self._timeout_s = timeout_s
        deadline_s = time.monotonic() + timeout_s
        out = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(self._stdout, selectors.EVENT_READ, out)
            sel.register(self._stderr_pipe, selectors.EVENT_READ, self._stderr)
            while sel.get_map():
                left_s = deadline_s - time.monotonic()
                if left_s <= 0:
                    self._timed_out = True
                    break
                for key, _ in sel.select(left_s):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    key.data.extend(data)
                    if key.data is out and len(out) > MAX_ANSWER_BYTES:
                        self._too_big = True
                        break
                    if key.data is self._stderr and len(self._stderr) > 2 * _STDERR_KEEP_BYTES:
                        del self._stderr[:-_STDERR_KEEP_BYTES]
                if self._too_big:
                    break
        self.abort()  # reaps it; kills it first if it is still running (deadline, answer too big)
        return bytes(out)

    def _ended(self, output: bytes, result: Any = None) -> ReaderError:
        code = self.proc.returncode
        if self._too_big:
            too_big = f"the calendar reader's answer was larger than {MAX_ANSWER_BYTES // 1000} kB"
            return ReaderError(too_big, limit=True)
        if self._timed_out:
            return ReaderError(f"reading the calendar file took longer than {self._timeout_s:g} s; will retry")
        if result is None:
            try:
                result = json.loads(output)
            except ValueError:
                result = None
        message = result.get("error") if isinstance(result, dict) else None
        if code == EXIT_FEED_ERROR and isinstance(message, str):
            peak = result.get("peak_rss_kb")
            return ReaderError(
                message, limit=result.get("limit") is True, peak_rss_kb=peak if isinstance(peak, int) else None
            )
        memory = f"reading the calendar needs more than {self.limits.memory_bytes // 2**20} MB of memory"
        if code == EXIT_NO_MEMORY:
            return ReaderError(memory, limit=True)
        if code == -signal.SIGXCPU:  # RLIMIT_CPU's soft limit (its hard one, a few seconds on, is SIGKILL)
            return ReaderError(f"reading the calendar took more than {self.limits.cpu_s} s of CPU", limit=True)
        if code == -signal.SIGKILL:  # not ours (the deadline is handled above): the kernel, short of memory
            return ReaderError("the calendar reader was stopped by the system (out of memory?)", limit=True)
        tail = self._stderr.decode("utf-8", "replace")
        if "MemoryError" in tail or "Cannot allocate memory" in tail:
            return ReaderError(memory, limit=True)
        last_line = (tail.strip().splitlines() or ["no message"])[-1]
        log.warning("calendar reader failed (exit %s): %s", code, last_line[:300])
        return ReaderError(f"the calendar reader failed (exit {code}); will retry")
