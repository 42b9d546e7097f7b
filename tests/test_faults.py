"""Fault suite (quick): hostile upstreams, a hung loop, SIGTERM under load, a corrupt database at start.

Each runs a real `python -m server` process. The long versions run under `make soak`.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from server.demo import world
from tests.fakeapi import FakeApi, Recorded, Reply
from tests.procutil import ServerProcess

SITE_ID = 9192


def get_json(url: str, timeout_s: float = 2) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.load(r)


def wait_until(predicate, timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


class Upstream:
    """WeatherAPI and SL in their real formats, switchable into a failure mode."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.api = FakeApi()
        self.api.route("/weather/v1/forecast.json", self.weather)
        self.api.route(f"/sl/v1/sites/{SITE_ID}/departures", self.departures)
        self.api.start()

    def _fault(self) -> Reply | None:
        if self.mode == "down":
            return Reply(
                503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", {"Content-Type": "text/html"}
            )
        if self.mode == "garbage":
            return Reply(200, b'{"location": {"name": "Stockh', {"Content-Type": "application/json"})
        if self.mode == "429":
            return Reply(429, {"message": "slow down"}, {"Retry-After": "3"})
        if self.mode == "slow":
            return Reply(200, b"", drip_bytes=b'{"location":' + b" " * 200, drip_interval_s=0.2)
        return None

    def weather(self, req: Recorded) -> Reply:
        fault = self._fault()
        if fault:
            return fault
        return Reply(200, world.forecast_payload(time.time(), 3, query="Stockholm", alerts=True, aqi=False))

    def departures(self, req: Recorded) -> Reply:
        return self._fault() or Reply(200, world.departures_payload(SITE_ID, time.time()))

    def config(self, interval_s: float) -> dict:
        """A server config polling this upstream for weather and departures every `interval_s`."""
        return {
            "sources": {
                "weather": {"api_key": "k", "base_url": self.api.url("/weather/v1"), "interval_s": interval_s},
                "departures": {"site_id": SITE_ID, "base_url": self.api.url("/sl/v1"), "interval_s": interval_s},
            }
        }


def test_upstreams_down_garbage_429_and_slow_then_recovery(tmp_path: Path) -> None:
    up = Upstream()
    interval_s = 2
    doc = up.config(interval_s)
    srv = ServerProcess(tmp_path, doc)
    try:
        srv.wait_ready()

        def topics() -> dict:
            return get_json(srv.url + "/api/state")["topics"]

        wait_until(lambda: all(topics()[t]["status"] == "ok" for t in ("weather", "departures")), 10, "first data")
        for mode in ("down", "garbage", "429", "slow"):
            up.mode = mode
            n_before = len(up.api.requests)
            t0 = time.monotonic()
            # The server keeps serving fast while the upstream misbehaves.
            # A drip is cut by the pollers' overall deadline (20-30 s), everything else at once.
            wait_until(
                lambda: all(topics()[t]["status"] == "error" for t in ("weather", "departures")),
                40 if mode == "slow" else 15,
                f"{mode}: error shown",
            )
            state = topics()["weather"]
            assert state["data"] is not None, "the last good value stays"
            assert state["error"], mode
            wait_until(lambda: topics()["weather"]["stale"], 3 * interval_s + 10, f"{mode}: stale shown")
            for _ in range(10):
                t_req = time.monotonic()
                get_json(srv.url + "/api/state")
                assert time.monotonic() - t_req < 0.5
            failing_s = time.monotonic() - t0
            requests = len(up.api.requests) - n_before
            # Two sources, back-off doubling from 2 s: far fewer requests than one per interval each.
            assert requests <= 2 * (failing_s / interval_s), (mode, requests, failing_s)
            health = get_json(srv.url + "/healthz")
            assert health["status"] == "degraded"
            up.mode = "ok"
            # Recovery at the next scheduled retry: at most the back-off cap (8 intervals) away.
            wait_until(
                lambda: all(
                    topics()[t]["status"] == "ok" and not topics()[t]["stale"] for t in ("weather", "departures")
                ),
                8 * interval_s + 5,
                f"{mode}: recovery",
            )
        assert "Traceback" not in srv.log()
    finally:
        assert srv.stop() == 0
        up.api.stop()


def test_hung_event_loop_stops_watchdog_pings_and_abort_shows_where(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    srv = ServerProcess(
        tmp_path, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "HOMEBOARD_DEBUG_ROUTES": "1"}
    )
    try:
        assert sock.recv(1024).startswith(b"READY=1")
        while sock.recv(1024) != b"WATCHDOG=1":
            pass
        blocker = threading.Thread(
            target=lambda: urllib.request.urlopen(srv.url + "/debug/block?s=3", timeout=10).read(), daemon=True
        )
        blocker.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        while sock.recv(1024) != b"WATCHDOG=1":
            pass
        gap_s = time.monotonic() - t0
        assert gap_s > 2.5, f"pings went on while the loop was blocked ({gap_s:.1f} s)"
        blocker.join(10)
        # systemd's watchdog kills with SIGABRT: faulthandler must print the frame that hung.
        blocker = threading.Thread(
            target=lambda: _ignore_errors(lambda: urllib.request.urlopen(srv.url + "/debug/block?s=30", timeout=10)),
            daemon=True,
        )
        blocker.start()
        time.sleep(1)
        srv.proc.send_signal(signal.SIGABRT)
        srv.proc.wait(10)
        log = srv.log()
        assert "Fatal Python error: Aborted" in log
        assert "server/web/handlers.py" in log
        assert " in get" in log
    finally:
        srv.stop()
        sock.close()


def _ignore_errors(fn) -> None:
    try:
        fn()
    except OSError:
        pass


def test_sigterm_under_ingest_load_exits_within_5_s_and_keeps_every_acknowledged_reading(tmp_path: Path) -> None:
    token = "t0ken-for-the-test"
    srv = ServerProcess(tmp_path, {"remote_sensors": [{"id": "balcony", "token": token}]})
    srv.wait_ready()
    acked: list[str] = []
    stop = threading.Event()

    def poster(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            at = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + f".{worker:02d}{n % 10000:04d}+00:00"
            at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60 - n - worker * 10_000))
            body = json.dumps({"temperature_c": 10 + (n % 50) / 10, "measured_at": at}).encode()
            req = urllib.request.Request(
                srv.url + "/api/sensors/balcony/readings",
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 201:
                        acked.append(at)
            except (urllib.error.URLError, OSError):
                if stop.is_set():
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=poster, args=(w,), daemon=True) for w in range(5)]
    for t in threads:
        t.start()
    time.sleep(2)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(10)
    elapsed_s = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(10)
    assert rc == 0, srv.log()
    assert elapsed_s < 5
    assert len(acked) > 20
    db = sqlite3.connect(tmp_path / "var" / "history.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = db.execute("SELECT COUNT(*) FROM readings WHERE sensor_id='balcony'").fetchone()[0]
    from datetime import datetime

    wanted = {int(datetime.fromisoformat(a).timestamp() * 1000) for a in acked}
    have = {row[0] for row in db.execute("SELECT measured_at_ms FROM readings WHERE sensor_id='balcony'")}
    assert wanted <= have, f"{len(wanted - have)} acknowledged readings missing"
    assert stored == len(have), "none twice"
    srv.stop()


def test_corrupt_database_at_start_is_moved_aside_and_the_server_serves(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o700)
    (var / "history.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\xde\xad\xbe\xef" * 4096)
    srv = ServerProcess(tmp_path, {"remote_sensors": [{"id": "balcony", "token": "x"}]})
    try:
        srv.wait_ready()
        assert list(var.glob("history.sqlite3.corrupt.*")), sorted(p.name for p in var.iterdir())
        req = urllib.request.Request(
            srv.url + "/api/sensors/balcony/readings",
            data=b'{"temperature_c": 4.5}',
            method="POST",
            headers={"Authorization": "Bearer x"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 201
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0
