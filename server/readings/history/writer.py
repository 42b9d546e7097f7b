"""The history's writer: one thread, batched commits (group commit), retention; the loop-side History API.

Durability: WAL with synchronous=FULL, so a committed batch survives a
power cut, and commits are batched (at most every history.commit_interval_s) so the SD card sees few
fsyncs. `store()` resolves only after the commit that contains its reading: a batch with a waiter is
committed at once together with whatever else is queued (group commit). A corrupt database is moved aside
as `*.corrupt.<ts>` and a fresh one started; a write error (disk full) makes the history "degraded" while
everything else keeps serving, and the writes are retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import math
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.config import HistoryConfig
from server.readings.history.query import HistoryReader, as_iso
from server.readings.history.schema import (
    DAY_MS,
    HOUR_MS,
    INSERT_READING,
    UPSERT_HOURLY,
    is_corruption,
    move_aside,
    open_database,
)
from server.readings.reading import Reading

log = logging.getLogger(__name__)

MAX_PENDING = 50_000  # readings kept in memory while the disk refuses writes; the oldest go first
PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 86400.0


class HistoryError(Exception):
    """A reading could not be stored durably (the database is degraded); the message says why."""


def _row(r: Reading) -> tuple[Any, ...]:
    return (
        r.sensor_id,
        round(r.measured_at_s * 1000),
        r.temperature_c,
        r.humidity_pct,
        r.pressure_hpa,
        r.battery_pct,
        r.source or None,
    )


_STOP = object()


@dataclass(frozen=True)
class _Prune:
    done: concurrent.futures.Future[None]


_Item = tuple[Reading, "concurrent.futures.Future[None] | None"]


class History:
    """The history database. Call from the event loop: open(), record(), store(), query(), close()."""

    def __init__(
        self,
        path: str,
        config: HistoryConfig,
        tz: dt.tzinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.config = config
        self.tz = tz
        self.clock = clock
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumped whenever the writer starts a fresh database file
        self._reader = HistoryReader(path, lambda: self._generation)
        self._conn: sqlite3.Connection | None = None
        self._pending: deque[Reading] = deque()  # kept for a retry after a failed commit
        self._last_prune = -math.inf  # retention runs with the first commit, then hourly
        self._last_checkpoint = time.monotonic()
        self._closed = False
        # Health, written by the writer thread and read by /healthz (plain attribute reads are atomic).
        self.status = "starting"
        self.error: str | None = None
        self.last_commit: float | None = None
        self.stored = 0
        self.duplicates = 0
        self.dropped = 0
        self.commits = 0
        self.moved_aside: str | None = None

    # ------------------------------------------------------------------ loop-side API

    async def open(self) -> None:
        """Start the writer thread and wait until the database is open (or known to be unusable)."""
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(opened,), name="hb-history-write", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(opened)

    def record(self, reading: Reading) -> None:
        """Store eventually (with the next batch); never blocks, never raises."""
        self._queue.put((reading, None))

    async def store(self, reading: Reading) -> None:
        """Store durably: returns once the reading's batch is committed. Raises HistoryError."""
        if self._closed:
            raise HistoryError("history database unavailable: the server is stopping")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((reading, done))
        await asyncio.wrap_future(done)

    async def query(
        self, sensor_id: str, since_s: float, until_s: float, max_points: int = 1000
    ) -> list[dict[str, Any]]:
        """Points between since and until (epoch s), oldest first, downsampled to at most max_points."""
        # Raw readings are there from what retention keeps on; the hourly rows before (the writer prunes both).
        raw_cutoff_ms = int(self.clock() * 1000) - int(self.config.raw_days * DAY_MS)
        return await self._reader.query(
            sensor_id, since_s, until_s, max_points, raw_cutoff_ms=raw_cutoff_ms, tz=self.tz
        )

    async def latest(self, sensor_id: str) -> Reading | None:
        return await self._reader.latest(sensor_id)

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL into the database, stop the threads."""
        self._closed = True  # a store() after this would wait for a writer that is gone
        if self._thread is not None:
            self._queue.put(_STOP)
            thread = self._thread
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            self._thread = None
        self._reader.close()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.status == "ok" else "degraded",
            "db": self.status,
            "error": self.error,
            "last_commit": None if self.last_commit is None else as_iso(self.last_commit * 1000, self.tz),
            "pending": self._queue.qsize() + len(self._pending),
            "stored": self.stored,
            "dropped": self.dropped,
            "moved_aside": self.moved_aside,
        }

    # ------------------------------------------------------------------ writer thread

    def _run(self, opened: concurrent.futures.Future[None]) -> None:
        try:
            self._open_db()
        except (sqlite3.Error, OSError) as err:  # disk full, read-only, permissions: say so, no traceback
            log.error("history: cannot open %s: %s", self.path, err)
            self._degrade(f"cannot open the database: {err}")
        except Exception as err:  # the thread must survive to keep answering store() (with an error)
            log.exception("history: cannot open %s", self.path)
            self._degrade(f"cannot open the database: {err}")
        opened.set_result(None)
        try:
            self._write_loop()
        finally:
            self._close_db()

    def _write_loop(self) -> None:
        interval_s = self.config.commit_interval_s
        batch: list[Reading] = []
        waiters: list[concurrent.futures.Future[None]] = []
        first_at: float | None = None
        stopping = False
        prunes: list[_Prune] = []
        while not stopping:
            timeout = None
            if batch or self._pending:
                timeout = max(0.0, (first_at or time.monotonic()) + interval_s - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            # Drain whatever else is queued: one commit for everything that arrived meanwhile.
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Prune):
                    prunes.append(item)
                elif item is not None:
                    reading, waiter = item
                    batch.append(reading)
                    if waiter is not None:
                        waiters.append(waiter)
                    if first_at is None:
                        first_at = time.monotonic()
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            due = first_at is not None and time.monotonic() - first_at >= interval_s
            retry_due = not batch and self._pending and item is None
            if waiters or due or stopping or retry_due or prunes:
                self._commit(batch, waiters)
                batch, waiters, first_at = [], [], None
                if prunes:
                    self._last_prune = -math.inf
                self._maintain()
                for prune in prunes:
                    prune.done.set_result(None)
                prunes = []

    def _commit(self, batch: list[Reading], waiters: list[concurrent.futures.Future[None]]) -> None:
        readings = [*self._pending, *batch]
        if not readings:
            return
        try:
            try:
                stored = self._write(readings)
            except sqlite3.DatabaseError as err:
                if not is_corruption(err):
                    raise
                log.error("history: the database is corrupt (%s); starting a fresh one", err)
                self._recover_corrupt()
                stored = self._write(readings)
        except Exception as err:  # disk full, I/O error, a bug: the writer must live on and say so
            self._write_failed(readings, waiters, err)
            return
        self._pending.clear()
        self.stored += stored
        self.duplicates += len(readings) - stored
        self.commits += 1
        self.last_commit = self.clock()
        if self.status != "ok":
            if self.status == "degraded":
                log.info("history: writes work again")
            self.status, self.error = "ok", None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _write(self, readings: list[Reading]) -> int:
        conn = self._conn if self._conn is not None else self._open_db()
        stored = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for r in readings:
                row = _row(r)
                if conn.execute(INSERT_READING, row).rowcount != 1:
                    continue  # already stored: the hourly aggregate has it too
                stored += 1
                measured_at_ms = row[1]
                hour_ms = measured_at_ms - measured_at_ms % HOUR_MS
                t, h, p = r.temperature_c, r.humidity_pct, r.pressure_hpa
                conn.execute(
                    UPSERT_HOURLY,
                    (
                        *(r.sensor_id, hour_ms),
                        *(0 if t is None else 1, t, t, t or 0.0),
                        *(0 if h is None else 1, h, h, h or 0.0),
                        *(0 if p is None else 1, p, p, p or 0.0),
                    ),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return stored

    def _write_failed(
        self, readings: list[Reading], waiters: list[concurrent.futures.Future[None]], err: Exception
    ) -> None:
        message = f"write failed: {err}"
        if message != self.error:
            log.error("history: %s (%d readings waiting)", message, len(readings))
        self._degrade(message)
        # Keep what nobody waits for; whoever waits gets the error now (a device retries on a non-2xx).
        self._pending = deque(readings[-MAX_PENDING:], maxlen=None)
        self.dropped += max(0, len(readings) - MAX_PENDING)
        failure = HistoryError(f"history database unavailable: {err}")
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(failure)

    def _degrade(self, message: str) -> None:
        self.status, self.error = "degraded", message

    def _maintain(self) -> None:
        """Retention once an hour, a TRUNCATE checkpoint once a day (the WAL must not grow without end)."""
        now = time.monotonic()
        if self._conn is None or self.status != "ok":
            return
        try:
            if now - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = now
                self._prune()
            if now - self._last_checkpoint >= CHECKPOINT_EVERY_S:
                self._last_checkpoint = now
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            log.warning("history: maintenance failed: %s", err)

    def _prune(self) -> None:
        if self._conn is None:
            return
        now_ms = int(self.clock() * 1000)
        raw_cutoff = now_ms - int(self.config.raw_days * DAY_MS)
        hourly_cutoff = now_ms - int(self.config.hourly_days * DAY_MS)
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            raw = self._conn.execute("DELETE FROM readings WHERE measured_at_ms < ?", (raw_cutoff,)).rowcount
            hourly = self._conn.execute("DELETE FROM hourly WHERE hour_ms < ?", (hourly_cutoff,)).rowcount
        if raw or hourly:
            log.info("history: retention removed %d raw readings and %d hourly rows", raw, hourly)

    async def prune(self) -> None:
        """Apply retention now (after committing what is queued), in the writer thread."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(_Prune(done))
        await asyncio.wrap_future(done)

    # ------------------------------------------------------------------ opening, corruption

    def _open_db(self) -> sqlite3.Connection:
        conn, moved = open_database(self.path)
        if moved is not None:
            self.moved_aside = moved
        self._conn = conn
        self._generation += 1
        self.status, self.error = "ok", None
        return conn

    def _recover_corrupt(self) -> None:
        self._close_db()
        self.moved_aside = move_aside(self.path)
        self._open_db()

    def _close_db(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        conn.close()
