"""Reading the history: one reader thread with its own connection, and the downsampled query behind
GET /api/sensors/{id}/history (raw readings where retention keeps them, the hourly aggregates before)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import sqlite3
from collections.abc import Callable
from typing import Any

from server.readings.history.schema import HOUR_MS
from server.readings.reading import Reading


def as_iso(ms: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


class HistoryReader:
    """Queries, off the loop and off the writer: a thread of its own, whose connection is opened again when the
    writer has started a fresh database file (`generation()` changed: a corrupt one was moved aside)."""

    def __init__(self, path: str, generation: Callable[[], int]) -> None:
        self.path = path
        self._generation = generation
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hb-history-read")
        self._conn: sqlite3.Connection | None = None
        self._conn_generation = -1

    async def query(
        self, sensor_id: str, since_s: float, until_s: float, max_points: int, *, raw_cutoff_ms: int, tz: dt.tzinfo
    ) -> list[dict[str, Any]]:
        """downsample(), in the reader's thread: epoch seconds in, points with times in `tz` out."""
        since_ms, until_ms = int(since_s * 1000), int(until_s * 1000)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor,
            lambda: downsample(
                self._read_conn(), sensor_id, since_ms, until_ms, max_points, raw_cutoff_ms=raw_cutoff_ms, tz=tz
            ),
        )

    async def latest(self, sensor_id: str) -> Reading | None:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._latest, sensor_id)

    def close(self) -> None:
        """Close the connection in its thread, then stop the thread (blocks until it has)."""
        self._executor.submit(self._close)
        self._executor.shutdown(wait=True)

    def _read_conn(self) -> sqlite3.Connection:
        generation = self._generation()
        if self._conn is None or self._conn_generation != generation:
            if self._conn is not None:
                self._conn.close()
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            self._conn_generation = generation
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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


def downsample(
    conn: sqlite3.Connection,
    sensor_id: str,
    since_ms: int,
    until_ms: int,
    max_points: int,
    *,
    raw_cutoff_ms: int,
    tz: dt.tzinfo,
) -> list[dict[str, Any]]:
    """At most `max_points` points between since and until (epoch ms, both included), oldest first: equal-width
    buckets over the raw readings and, before what retention may have removed (`raw_cutoff_ms`), the hourly rows.
    A point is the mean of its bucket, stood at its readings' mean time."""
    if until_ms < since_ms or max_points < 1:
        return []
    # Raw readings from the first hour that retention has certainly not touched; hourly rows before it.
    boundary = raw_cutoff_ms - raw_cutoff_ms % HOUR_MS + HOUR_MS
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
                "t": as_iso(time_sum / n, tz),
                "temperature_c": _round(t_sum / t_n) if t_n else None,
                "humidity_pct": _round(h_sum / h_n) if h_n else None,
                "pressure_hpa": _round(p_sum / p_n) if p_n else None,
            }
        )
    return points
