"""Soak runs (make soak): the fault suite held for minutes, and kill -9 over and over during ingest.

Each test is bounded in time (a few minutes) and talks only to loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from tornado.websocket import websocket_connect

from tests.procutil import ServerProcess
from tests.test_faults import Upstream, get_json, wait_until

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

TOKEN = "soak-token-0123456789"


def _poster(url: str, worker: int, acked: list[int], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        # Unique per worker and attempt; a retried reading keeps its time, so the server may see it twice.
        at_s = time.time() - 3600 + worker * 1e-3 + (n % 1_000_000) * 1e-6
        stamp = datetime.fromtimestamp(at_s).astimezone().isoformat(timespec="milliseconds")
        body = json.dumps({"temperature_c": 20 + (n % 100) / 10, "measured_at": stamp}).encode()
        for _attempt in range(20):
            if stop.is_set():
                return
            req = urllib.request.Request(url, data=body, method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 201:
                        acked.append(int(datetime.fromisoformat(stamp).timestamp() * 1000))
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)  # the server is being restarted: retry the same reading


def test_kill_9_again_and_again_during_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rounds = 12
    doc = {"remote_sensors": [{"id": "balcony", "token": TOKEN}]}
    acked: list[int] = []
    stop = threading.Event()
    srv = ServerProcess(tmp_path, doc)
    port = srv.port
    srv.wait_ready()
    url = f"http://127.0.0.1:{port}/api/sensors/balcony/readings"
    threads = [threading.Thread(target=_poster, args=(url, w, acked, stop), daemon=True) for w in range(5)]
    for t in threads:
        t.start()
    rng = random.Random(1)
    try:
        for _ in range(rounds):
            time.sleep(rng.uniform(1.0, 4.0))
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
            db = sqlite3.connect(tmp_path / "var" / "history.sqlite3")
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()
            srv = _restart_on(tmp_path, doc, port)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        srv.stop()
    db = sqlite3.connect(tmp_path / "var" / "history.sqlite3")
    have = [row[0] for row in db.execute("SELECT measured_at_ms FROM readings WHERE sensor_id='balcony'")]
    assert len(acked) > 200
    assert set(acked) <= set(have), f"{len(set(acked) - set(have))} acknowledged readings lost"
    assert len(have) == len(set(have)), "a reading stored twice"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _restart_on(tmp_path: Path, doc: dict, port: int) -> ServerProcess:
    """A new server process on the same port (the posters keep their URL), waiting until it answers."""
    from tests import procutil

    original = procutil.free_port
    procutil.free_port = lambda: port
    try:
        srv = ServerProcess(tmp_path, doc)
    finally:
        procutil.free_port = original
    srv.wait_ready()
    return srv


def test_upstream_faults_held_for_minutes(tmp_path: Path) -> None:
    up = Upstream()
    interval_s = 5
    doc = up.config(interval_s)
    srv = ServerProcess(tmp_path, doc)
    try:
        srv.wait_ready()
        wait_until(lambda: get_json(srv.url + "/api/state")["topics"]["weather"]["status"] == "ok", 20, "first data")
        for mode in ("down", "garbage", "429", "slow"):
            up.mode = mode
            n0, t0 = len(up.api.requests), time.monotonic()
            worst_s = 0.0
            while time.monotonic() - t0 < 60:
                t_req = time.monotonic()
                get_json(srv.url + "/api/state")
                worst_s = max(worst_s, time.monotonic() - t_req)
                time.sleep(0.5)
            requests = len(up.api.requests) - n0
            # Back-off holds: with 5 s intervals, doubling from 5 s and capped at 40 s, 60 s of failure
            # costs each source a handful of requests, not twelve.
            assert requests <= 2 * 7, (mode, requests)
            assert worst_s < 0.5, (mode, worst_s)
            state = get_json(srv.url + "/api/state")["topics"]["weather"]
            assert state["stale"] is True
            assert state["status"] == "error"
            up.mode = "ok"
            wait_until(
                lambda: not get_json(srv.url + "/api/state")["topics"]["weather"]["stale"],
                8 * interval_s + 10,
                f"{mode}: recovery",
            )
    finally:
        assert srv.stop() == 0
        up.api.stop()


def test_server_memory_is_flat_under_updates_and_clients(tmp_path: Path) -> None:
    token = TOKEN
    srv = ServerProcess(tmp_path, {"remote_sensors": [{"id": "balcony", "token": token}]})
    srv.wait_ready()

    def rss_kb() -> int:
        for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def run() -> tuple[int, int]:
        conns = [await websocket_connect(f"ws://127.0.0.1:{srv.port}/ws") for _ in range(20)]

        async def drain(c) -> None:
            while await c.read_message() is not None:
                pass

        readers = [asyncio.ensure_future(drain(c)) for c in conns]
        loop = asyncio.get_running_loop()

        def post_many(n: int) -> None:
            for i in range(n):
                req = urllib.request.Request(
                    srv.url + "/api/sensors/balcony/readings",
                    data=json.dumps({"temperature_c": 20 + (i % 50) / 10}).encode(),
                    method="POST",
                    headers={"Authorization": f"Bearer {token}"},
                )
                urllib.request.urlopen(req, timeout=5).read()
                time.sleep(0.002)

        await loop.run_in_executor(None, post_many, 2000)  # warm-up: caches, allocator arenas
        before = rss_kb()
        for _ in range(5):
            await loop.run_in_executor(None, post_many, 4000)
        after = rss_kb()
        for c in conns:
            c.close()
        for r in readers:
            r.cancel()
        return before, after

    try:
        before, after = asyncio.run(run())
    finally:
        srv.stop()
    assert (after - before) / 1024 < 2.0, f"RSS grew {(after - before) / 1024:.1f} MB over 20,000 updates"
