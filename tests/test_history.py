"""History: durable store, batching, group commit, dedupe, retention, downsampling, corruption, disk full,
and the HTTP endpoint on a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tornado.httpclient

from server.config import HistoryConfig
from server.readings.history import DB_NAME, SCHEMA_VERSION, History, HistoryError
from server.readings.reading import Reading
from tests.conftest import make_config
from tests.serverthread import ServerThread

TZ = ZoneInfo("Europe/Stockholm")
NOW = 1_795_000_000.0  # a fixed "now" for retention tests (2026-11-18)


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


def rows(path: Path, sql: str = "SELECT count(*) FROM readings") -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def reading(sensor: str, t_s: float, temperature_c: float | None = 20.0, **kw: Any) -> Reading:
    return Reading(sensor, t_s, temperature_c, **kw)


def make(tmp_path: Path, clock: Callable[[], float] = time.time, **config: Any) -> History:
    return History(str(tmp_path / DB_NAME), HistoryConfig(**config), TZ, clock=clock)


def test_store_is_committed_when_it_returns(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path, commit_interval_s=30)
        await history.open()
        await history.store(reading("a", time.time(), 21.5, humidity_pct=40.0, source="lan"))
        # Another connection sees it: it is in the database, not in a buffer (the interval is 30 s).
        assert rows(tmp_path / DB_NAME, "SELECT sensor_id, temperature_c, humidity_pct, source FROM readings") == [
            ("a", 21.5, 40.0, "lan")
        ]
        await history.close()

    run(scenario)
    assert rows(tmp_path / DB_NAME, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(tmp_path / DB_NAME, "PRAGMA journal_mode") == [("wal",)]


def test_fire_and_forget_readings_are_batched(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path, commit_interval_s=0.5)
        await history.open()
        t0 = time.time()
        for i in range(50):
            history.record(reading("a", t0 + i))
        await asyncio.sleep(0.1)
        assert rows(tmp_path / DB_NAME) == [(0,)]  # not yet: waiting for the batch
        await asyncio.sleep(0.8)
        assert rows(tmp_path / DB_NAME) == [(50,)]
        assert history.commits == 1
        await history.close()

    run(scenario)


def test_concurrent_stores_share_commits(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        t0 = time.time()
        await asyncio.gather(*(history.store(reading(f"s{i % 7}", t0 + i / 1000)) for i in range(500)))
        assert rows(tmp_path / DB_NAME) == [(500,)]
        assert history.commits < 100  # group commit: one fsync for many acknowledged readings
        await history.close()

    run(scenario)


def test_duplicates_are_stored_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        r = reading("a", time.time(), 20.0)
        await history.store(r)
        await history.store(r)  # a device retrying after a lost 201
        history.record(reading("a", time.time() + 1))
        await history.close()
        assert history.duplicates == 1

    run(scenario)
    assert rows(tmp_path / DB_NAME) == [(2,)]
    assert rows(tmp_path / DB_NAME, "SELECT sum(n) FROM hourly") == [(2,)]  # the aggregate counted it once


def test_week_of_minutes_is_downsampled_oldest_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        now = time.time()
        for i in range(7 * 1440):
            history.record(reading("a", now - i * 60, 20.0 + (i % 2), humidity_pct=None, pressure_hpa=1000.0))
        await history.store(reading("a", now + 1, 20.5))
        points = await history.query("a", now - 7 * 86400, now + 2)
        assert 900 <= len(points) <= 1000
        times = [p["t"] for p in points]
        assert times == sorted(times)
        assert all(20.0 <= p["temperature_c"] <= 21.0 for p in points)
        assert all(p["humidity_pct"] is None and p["pressure_hpa"] == 1000.0 for p in points[:-1])
        few = await history.query("a", now - 7 * 86400, now + 2, max_points=24)
        assert len(few) <= 24
        assert all(p["temperature_c"] == pytest.approx(20.5, abs=0.02) for p in few[1:-1])  # means of 0/1 steps
        assert await history.query("a", now, now - 10) == []
        assert await history.query("nobody", now - 86400, now) == []
        await history.close()

    run(scenario)


def test_retention_keeps_hourly_min_mean_max(tmp_path: Path) -> None:
    clock = [NOW]

    async def scenario() -> None:
        history = make(tmp_path, clock=lambda: clock[0], raw_days=7, hourly_days=30)
        await history.open()
        # 10 days of readings every 10 min; the temperature cycles 10..15 within each hour.
        for i in range(10 * 144):
            t = NOW - 10 * 86400 + i * 600
            history.record(reading("a", t, 10.0 + (i % 6), humidity_pct=50.0 + (i % 6)))
        await history.store(reading("a", NOW, 12.5))
        await history.prune()
        oldest_ms = rows(tmp_path / DB_NAME, "SELECT min(measured_at_ms) FROM readings")[0][0]
        assert oldest_ms >= (NOW - 7 * 86400) * 1000
        hour = rows(
            tmp_path / DB_NAME, "SELECT n, t_min, t_max, t_sum / n, h_min, h_max FROM hourly ORDER BY hour_ms LIMIT 1"
        )
        assert hour == [(6, 10.0, 15.0, 12.5, 50.0, 55.0)]
        points = await history.query("a", NOW - 10 * 86400, NOW)
        old = [p for p in points if p["t"] < "2026-11-09"]
        assert old
        assert all(p["temperature_c"] == 12.5 for p in old)  # hourly means of 10..15
        assert all(p["humidity_pct"] == 52.5 for p in old)
        clock[0] = NOW + 40 * 86400
        await history.store(reading("a", clock[0], 12.5))
        await history.prune()
        assert rows(tmp_path / DB_NAME, "SELECT count(*) FROM hourly") == [(1,)]
        await history.close()

    run(scenario)


def test_garbage_file_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 500)

    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        assert history.health()["status"] == "ok"
        assert history.moved_aside is not None
        assert history.moved_aside.startswith(DB_NAME + ".corrupt.")
        await history.store(reading("a", time.time()))
        await history.close()

    run(scenario)
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt." in p.name]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes().startswith(b"this is not a database")
    assert rows(tmp_path / DB_NAME) == [(1,)]


def test_damaged_pages_after_an_unclean_stop_are_detected(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME

    async def fill() -> None:
        history = make(tmp_path)
        await history.open()
        t0 = time.time()
        for i in range(20000):
            history.record(reading(f"s{i % 5}", t0 + i, 20.0 + i % 7, humidity_pct=40.0, pressure_hpa=1000.0))
        await history.store(reading("x", t0))
        await history.close()

    run(fill)
    # An unclean stop: a process commits into the WAL and dies without a checkpoint.
    code = (
        "import os, sqlite3; c = sqlite3.connect(os.environ['DB']); c.execute('PRAGMA wal_autocheckpoint=0');"
        "c.execute(\"INSERT INTO readings VALUES ('z', 1, 1.0, NULL, NULL, NULL, NULL)\"); c.commit(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "DB": str(path)}, check=True)
    assert (tmp_path / (DB_NAME + "-wal")).stat().st_size > 0
    with open(path, "r+b") as f:  # damage pages in the middle of the file
        size = f.seek(0, 2)
        for offset in (size // 3, size // 2):
            f.seek(offset - offset % 4096)
            f.write(os.urandom(4096))

    async def reopen() -> None:
        history = make(tmp_path)
        await history.open()
        assert history.moved_aside is not None
        await history.store(reading("a", time.time()))
        assert history.health()["status"] == "ok"
        await history.close()

    run(reopen)
    assert rows(path) == [(1,)]
    assert any(".corrupt." in p.name for p in tmp_path.iterdir())


def test_newer_schema_is_moved_aside_not_misread(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        assert history.moved_aside is not None
        await history.close()

    run(scenario)
    assert rows(tmp_path / DB_NAME, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_disk_full_degrades_then_writes_resume(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path, commit_interval_s=0.2)
        await history.open()
        await history.store(reading("a", time.time()))
        conn = history._conn
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from now on
        t0 = time.time()
        for i in range(2000):
            history.record(reading("b", t0 + i))
        with pytest.raises(HistoryError, match="database or disk is full"):
            await history.store(reading("c", t0))
        health = history.health()
        assert health["status"] == "degraded"
        assert "full" in health["error"]
        assert health["pending"] >= 2000
        conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        await history.store(reading("c", t0 + 1))
        assert history.health()["status"] == "ok"
        assert history.health()["pending"] == 0
        await history.close()

    run(scenario)
    assert rows(tmp_path / DB_NAME, "SELECT sensor_id, count(*) FROM readings GROUP BY sensor_id") == [
        ("a", 1),
        ("b", 2000),
        ("c", 2),  # the refused store was kept for the retry too: its device's own retry is then a duplicate
    ]


def test_unopenable_database_degrades_instead_of_crashing(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).mkdir()  # a directory where the file should be

    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        assert history.health()["status"] == "degraded"
        assert "unable to open" in history.health()["error"]
        with pytest.raises(HistoryError):
            await history.store(reading("a", time.time()))
        await history.close()

    run(scenario)


def test_close_flushes_and_checkpoints(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path, commit_interval_s=60)
        await history.open()
        for i in range(10):
            history.record(reading("a", time.time() + i))
        await history.close()

    run(scenario)
    assert rows(tmp_path / DB_NAME) == [(10,)]
    wal = tmp_path / (DB_NAME + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


# ------------------------------------------------------------------------------ the HTTP endpoint


@pytest.fixture
def srv(tmp_path: Path) -> Any:
    config = make_config(tmp_path, remote_sensors=[{"id": "balcony", "token": "t0ken-balcony"}])
    server = ServerThread(config).start()
    yield server
    server.stop()


def fetch(srv: ServerThread, path: str) -> tuple[int, dict[str, Any]]:
    response = tornado.httpclient.HTTPClient().fetch(srv.url + path, raise_error=False)
    return response.code, json.loads(response.body)


def test_history_endpoint(srv: ServerThread) -> None:
    history = srv.board.history  # type: ignore[union-attr]
    now = time.time()
    srv.call(lambda: history.store(reading("balcony", now - 3600, 4.5, humidity_pct=80.0, pressure_hpa=None)))
    srv.call(lambda: history.store(reading("balcony", now - 30 * 3600, -3.0)))
    code, body = fetch(srv, "/api/sensors/balcony/history")
    assert code == 200
    assert body["sensor_id"] == "balcony"
    assert body["points"] == [
        {"t": body["points"][0]["t"], "temperature_c": 4.5, "humidity_pct": 80.0, "pressure_hpa": None}
    ]  # the default window is the last 24 h
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 2 * 86400))
    code, body = fetch(srv, f"/api/sensors/balcony/history?since={since}")  # '+' unencoded arrives as a space
    assert code == 200
    assert [p["temperature_c"] for p in body["points"]] == [-3.0, 4.5]
    code, body = fetch(srv, f"/api/sensors/balcony/history?since={since.replace('+', '%2B')}&max_points=1")
    assert len(body["points"]) == 1


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("/api/sensors/attic/history", 404, "unknown sensor"),
        ("/api/sensors/balcony/history?since=yesterday", 400, "since: expected an ISO 8601 time"),
        ("/api/sensors/balcony/history?until=2026-11-25T14:05:00", 400, "until: expected an ISO 8601 time with offset"),
        ("/api/sensors/balcony/history?since=2026-11-25T14:05:00Z&until=2026-11-24T14:05:00Z", 400, "not be later"),
        ("/api/sensors/balcony/history?max_points=5000", 400, "max_points"),
        ("/api/sensors/balcony/history?max_points=x", 400, "max_points"),
    ],
)
def test_history_endpoint_errors(srv: ServerThread, query: str, code: int, message: str) -> None:
    status, body = fetch(srv, query)
    assert status == code
    assert message in body["error"]


def test_store_after_close_fails_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        await history.close()
        with pytest.raises(HistoryError, match="stopping"):
            await asyncio.wait_for(history.store(reading("a", time.time())), 2)

    run(scenario)


def test_corruption_found_while_running_starts_a_fresh_database(tmp_path: Path) -> None:
    t0 = time.time() - 3 * 86400  # inside the raw retention

    async def fill() -> None:
        history = make(tmp_path)
        await history.open()
        for i in range(30000):
            history.record(reading(f"s{i % 3}", t0 + i, 20.0))
        await history.store(reading("x", t0))
        await history.close()

    run(fill)

    async def scenario() -> None:
        history = make(tmp_path)
        await history.open()
        with open(tmp_path / DB_NAME, "r+b") as f:  # the card goes bad under the running server
            size = f.seek(0, 2)
            for page in range(2, size // 4096):
                f.seek(page * 4096)
                f.write(os.urandom(4096))
        await history.store(reading("s1", t0 + 15000.5, 21.0))  # lands inside the damaged b-tree
        assert history.moved_aside is not None
        assert history.health()["status"] == "ok"
        await history.close()

    run(scenario)
    assert rows(tmp_path / DB_NAME, "SELECT sensor_id, temperature_c FROM readings") == [("s1", 21.0)]
