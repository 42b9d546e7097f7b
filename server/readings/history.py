"""Sensor history in SQLite: one writer thread with batched commits, retention, and downsampled queries
(GET /api/sensors/{id}/history is server/web/history.py).

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
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.config import HistoryConfig
from server.readings.reading import Reading

log = logging.getLogger(__name__)

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 2  # 2: temperature may be absent (a humidity-only device)
MAX_PENDING = 50_000  # readings kept in memory while the disk refuses writes; the oldest go first
PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 86400.0
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor_id TEXT NOT NULL,
    measured_at_ms INTEGER NOT NULL,          -- epoch milliseconds, UTC
    temperature_c REAL,
    humidity_pct REAL,
    pressure_hpa REAL,
    battery_pct REAL,
    source TEXT,
    PRIMARY KEY (sensor_id, measured_at_ms)   -- a repeated reading (device retry, hub echo) is stored once
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hourly (
    sensor_id TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,                 -- start of the hour, epoch milliseconds
    n INTEGER NOT NULL,
    t_n INTEGER NOT NULL DEFAULT 0, t_min REAL, t_max REAL, t_sum REAL NOT NULL DEFAULT 0,
    h_n INTEGER NOT NULL DEFAULT 0, h_min REAL, h_max REAL, h_sum REAL NOT NULL DEFAULT 0,
    p_n INTEGER NOT NULL DEFAULT 0, p_min REAL, p_max REAL, p_sum REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor_id, hour_ms)
) WITHOUT ROWID;
"""

# Version 1 → 2: temperature became optional. SQLite cannot drop a NOT NULL, so both tables are copied once:
# renamed, created anew from SCHEMA, copied over, dropped (in one transaction).
RENAME_V1 = """
ALTER TABLE readings RENAME TO readings_v1;
ALTER TABLE hourly RENAME TO hourly_v1;
"""
COPY_V1 = """
INSERT INTO readings SELECT * FROM readings_v1;
INSERT INTO hourly (sensor_id, hour_ms, n, t_n, t_min, t_max, t_sum, h_n, h_min, h_max, h_sum, p_n, p_min, p_max, p_sum)
    SELECT sensor_id, hour_ms, n, n, t_min, t_max, t_sum, h_n, h_min, h_max, h_sum, p_n, p_min, p_max, p_sum
    FROM hourly_v1;
DROP TABLE readings_v1;
DROP TABLE hourly_v1;
"""

INSERT_READING = """
INSERT OR IGNORE INTO readings
    (sensor_id, measured_at_ms, temperature_c, humidity_pct, pressure_hpa, battery_pct, source)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

# min(coalesce(a, b), coalesce(b, a)) is NULL only when both are: SQLite's min() is NULL if any argument is.
UPSERT_HOURLY = """
INSERT INTO hourly
    (sensor_id, hour_ms, n, t_n, t_min, t_max, t_sum, h_n, h_min, h_max, h_sum, p_n, p_min, p_max, p_sum)
VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sensor_id, hour_ms) DO UPDATE SET
    n = n + 1,
    t_n = t_n + excluded.t_n, t_sum = t_sum + excluded.t_sum,
    t_min = min(coalesce(t_min, excluded.t_min), coalesce(excluded.t_min, t_min)),
    t_max = max(coalesce(t_max, excluded.t_max), coalesce(excluded.t_max, t_max)),
    h_n = h_n + excluded.h_n, h_sum = h_sum + excluded.h_sum,
    h_min = min(coalesce(h_min, excluded.h_min), coalesce(excluded.h_min, h_min)),
    h_max = max(coalesce(h_max, excluded.h_max), coalesce(excluded.h_max, h_max)),
    p_n = p_n + excluded.p_n, p_sum = p_sum + excluded.p_sum,
    p_min = min(coalesce(p_min, excluded.p_min), coalesce(excluded.p_min, p_min)),
    p_max = max(coalesce(p_max, excluded.p_max), coalesce(excluded.p_max, p_max))
"""


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


def _is_corruption(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return isinstance(err, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def as_iso(ms: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


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
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hb-history-read")
        self._reader_conn: sqlite3.Connection | None = None
        self._reader_generation = -1
        self._generation = 0  # bumped whenever the writer starts a fresh database file
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
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, self._query, sensor_id, int(since_s * 1000), int(until_s * 1000), max_points
        )

    async def latest(self, sensor_id: str) -> Reading | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._latest, sensor_id)

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL into the database, stop the threads."""
        self._closed = True  # a store() after this would wait for a writer that is gone
        if self._thread is not None:
            self._queue.put(_STOP)
            thread = self._thread
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            self._thread = None
        self._reader.submit(self._close_reader)
        self._reader.shutdown(wait=True)

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
                if not _is_corruption(err):
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

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: every (batched) commit is fsynced, so an acknowledged reading survives a power cut too.
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _open_db(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        wal = self.path + "-wal"
        unclean = os.path.exists(wal) and os.path.getsize(wal) > 0  # a clean close leaves an empty WAL
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version} is newer than this program's (corrupt)")
            if unclean:
                result = conn.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise sqlite3.DatabaseError(f"quick_check after an unclean stop: {result} (corrupt)")
            if version == 1:
                log.info("history: updating the database to schema version %d", SCHEMA_VERSION)
                conn.execute("BEGIN IMMEDIATE")
                for script in (RENAME_V1, SCHEMA, COPY_V1):
                    for statement in filter(str.strip, script.split(";")):
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            elif version < SCHEMA_VERSION:
                conn.executescript(SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            if conn is not None:
                conn.close()
            if not _is_corruption(err):
                raise
            log.error("history: %s is unusable (%s); moving it aside and starting a fresh one", self.path, err)
            self._move_aside()
            conn = self._connect()
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._conn = conn
        self._generation += 1
        self.status, self.error = "ok", None
        return conn

    def _move_aside(self) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = f"{self.path}.corrupt.{stamp}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, target + suffix)
        self.moved_aside = os.path.basename(target)

    def _recover_corrupt(self) -> None:
        self._close_db()
        self._move_aside()
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

    # ------------------------------------------------------------------ reader thread

    def _read_conn(self) -> sqlite3.Connection:
        if self._reader_conn is None or self._reader_generation != self._generation:
            if self._reader_conn is not None:
                self._reader_conn.close()
            self._reader_conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            self._reader_generation = self._generation
        return self._reader_conn

    def _close_reader(self) -> None:
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None

    def _latest(self, sensor_id: str) -> Reading | None:
        row = (
            self._read_conn()
            .execute(
                "SELECT sensor_id, measured_at_ms, temperature_c, humidity_pct, pressure_hpa, battery_pct, source "
                "FROM readings WHERE sensor_id = ? ORDER BY measured_at_ms DESC LIMIT 1",
                (sensor_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        sensor_id, measured_at_ms, t, h, p, b, source = row
        return Reading(sensor_id, measured_at_ms / 1000, t, h, p, b, source or "")

    def _query(self, sensor_id: str, since_ms: int, until_ms: int, max_points: int) -> list[dict[str, Any]]:
        if until_ms < since_ms or max_points < 1:
            return []
        conn = self._read_conn()
        # Raw readings from the first hour that retention has certainly not touched; hourly rows before it.
        raw_cutoff = int(self.clock() * 1000) - int(self.config.raw_days * DAY_MS)
        boundary = raw_cutoff - raw_cutoff % HOUR_MS + HOUR_MS
        raw_from = max(since_ms, boundary)
        hourly_until = min(until_ms + 1, boundary)  # exclusive
        n_raw = conn.execute(
            "SELECT count(*) FROM readings WHERE sensor_id = ? AND measured_at_ms BETWEEN ? AND ?",
            (sensor_id, raw_from, until_ms),
        ).fetchone()[0]
        n_hourly = 0
        if since_ms < hourly_until:
            n_hourly = conn.execute(
                "SELECT count(*) FROM hourly WHERE sensor_id = ? AND hour_ms >= ? AND hour_ms < ?",
                (sensor_id, since_ms - since_ms % HOUR_MS, hourly_until),
            ).fetchone()[0]
        # One bucket width for both tables: index = (t - since) // width < max_points for every t <= until.
        width = 1 if n_raw + n_hourly <= max_points else (until_ms - since_ms) // max_points + 1
        buckets: dict[int, list[float]] = {}  # index → [count, time_sum, t_n, t_sum, h_n, h_sum, p_n, p_sum]
        if n_hourly:
            rows = conn.execute(
                # An hour stands at its midpoint (clamped into the window) with the weight of its count.
                "SELECT (min(max(hour_ms + 1800000, ?), ?) - ?) / ? AS b, sum(n), sum((hour_ms + 1800000) * n), "
                "sum(t_n), sum(t_sum), sum(h_n), sum(h_sum), sum(p_n), sum(p_sum) FROM hourly "
                "WHERE sensor_id = ? AND hour_ms >= ? AND hour_ms < ? GROUP BY b",
                (since_ms, until_ms, since_ms, width, sensor_id, since_ms - since_ms % HOUR_MS, hourly_until),
            )
            for b, *sums in rows:
                buckets[b] = [float(x) for x in sums]
        if n_raw:
            rows = conn.execute(
                "SELECT (measured_at_ms - ?) / ? AS b, count(*), sum(measured_at_ms), "
                "count(temperature_c), total(temperature_c), "
                "count(humidity_pct), total(humidity_pct), count(pressure_hpa), total(pressure_hpa) FROM readings "
                "WHERE sensor_id = ? AND measured_at_ms BETWEEN ? AND ? GROUP BY b",
                (since_ms, width, sensor_id, raw_from, until_ms),
            )
            for b, *sums in rows:
                if b in buckets:  # a bucket that straddles the raw/hourly boundary: merge by count
                    buckets[b] = [x + float(y) for x, y in zip(buckets[b], sums, strict=True)]
                else:
                    buckets[b] = [float(x) for x in sums]
        points = []
        for b in sorted(buckets):
            n, time_sum, t_n, t_sum, h_n, h_sum, p_n, p_sum = buckets[b]
            points.append(
                {
                    "t": as_iso(time_sum / n, self.tz),
                    "temperature_c": _round(t_sum / t_n) if t_n else None,
                    "humidity_pct": _round(h_sum / h_n) if h_n else None,
                    "pressure_hpa": _round(p_sum / p_n) if p_n else None,
                }
            )
        return points
