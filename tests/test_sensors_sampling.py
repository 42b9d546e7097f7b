"""Sampling on a real server: emulated chips through the real drivers, unplug/replug recovery, a hung read
bounded by the runner's timeout while the loop and the other sensors carry on, history of local samples."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from server.core.timeutil import parse_iso
from tests.conftest import make_config
from tests.serverthread import ServerThread

DS_ID = "28-0316a2794aff"


def get(srv: ServerThread, path: str) -> Any:
    return json.loads(tornado.httpclient.HTTPClient().fetch(srv.url + path).body)


def topic(srv: ServerThread, name: str) -> dict[str, Any]:
    return get(srv, "/api/state")["topics"][name]


def wait_until(check: Callable[[], bool], timeout_s: float = 8.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(
        tmp_path,
        demo=True,
        sensors=[
            {"id": "lr", "name": "Living room", "type": "bme280", "address": 0x76, "interval_s": 0.2, "timeout_s": 0.3},
            {"id": "out", "name": "Outdoor", "type": "ds18b20", "device": DS_ID, "interval_s": 0.2},
        ],
    )
    server = ServerThread(config).start()
    yield server
    server.stop()


def chip(srv: ServerThread) -> Any:
    assert srv.board is not None
    return srv.board.demo.hardware.bus(1).devices[0x76]


def test_readings_published_per_contract(srv: ServerThread) -> None:
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok" and topic(srv, "sensor/out")["status"] == "ok")
    data = topic(srv, "sensor/lr")["data"]
    assert set(data) == {"name", "temperature_c", "humidity_pct", "pressure_hpa", "measured_at", "source"}
    assert data["name"] == "Living room"
    assert data["source"] == "i2c:bme280@0x76"
    assert 15 < data["temperature_c"] < 30
    assert 20 < data["humidity_pct"] < 70
    assert 990 < data["pressure_hpa"] < 1030
    assert data["measured_at"].endswith(("+01:00", "+02:00"))
    out = topic(srv, "sensor/out")["data"]
    assert out["source"] == f"w1:ds18b20/{DS_ID}"
    assert out["humidity_pct"] is None
    assert out["pressure_hpa"] is None


def test_unplug_goes_unavailable_after_three_failures_and_recovers(srv: ServerThread) -> None:
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok")
    unplugged_at = time.time()
    chip(srv).unplug()
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "unavailable")
    state = topic(srv, "sensor/lr")
    assert "nothing answers at i2c-1 0x76" in state["error"]
    assert "check the wiring and the address" in state["error"]
    health = get(srv, "/healthz")["sources"]["sensor:lr"]
    assert health["consecutive_failures"] >= 3
    # The last good value is kept (with its own time) and nothing newer is invented while the chip is gone.
    assert parse_iso(state["data"]["measured_at"]) <= unplugged_at + 1
    assert state["data"]["source"] == "i2c:bme280@0x76"
    chip(srv).replug()
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok")
    assert topic(srv, "sensor/lr")["error"] is None
    assert get(srv, "/healthz")["sources"]["sensor:lr"]["consecutive_failures"] == 0


def test_two_failures_do_not_change_the_status(srv: ServerThread) -> None:
    import errno

    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok")
    chip(srv).fail_next(errno.EIO, 2)  # two bad reads in a row (the first transfer of each fails)
    statuses: list[str] = []

    def failed_twice_then_recovered() -> bool:
        statuses.append(topic(srv, "sensor/lr")["status"])
        health = get(srv, "/healthz")["sources"]["sensor:lr"]
        return health["last_error"] is not None and health["consecutive_failures"] == 0

    wait_until(failed_twice_then_recovered, timeout_s=10)
    assert set(statuses) == {"ok"}
    assert get(srv, "/healthz")["sources"]["sensor:lr"]["last_error"].startswith("nothing answers")


def test_hung_bus_is_bounded_and_stalls_nothing_else(srv: ServerThread) -> None:
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok")
    chip(srv).hang(1.5)
    before = topic(srv, "sensor/out")["data"]["measured_at"]
    wait_until(lambda: topic(srv, "sensor/lr")["status"] != "ok")
    assert "no answer within" in topic(srv, "sensor/lr")["error"] or "still waiting" in topic(srv, "sensor/lr")["error"]
    started = time.monotonic()
    get(srv, "/healthz")
    assert time.monotonic() - started < 0.2  # the loop is not blocked by the hung read
    wait_until(lambda: topic(srv, "sensor/out")["data"]["measured_at"] != before)  # the other sensor carries on
    chip(srv).hang(0)
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok", timeout_s=12)


def test_local_samples_reach_the_history(srv: ServerThread) -> None:
    wait_until(lambda: topic(srv, "sensor/lr")["status"] == "ok")
    since = topic(srv, "sensor/lr")["data"]["measured_at"]
    wait_until(lambda: len(get(srv, f"/api/sensors/lr/history?since={since.replace('+', '%2B')}")["points"]) >= 2)
    points = get(srv, f"/api/sensors/lr/history?since={since.replace('+', '%2B')}")["points"]
    assert all(set(p) == {"t", "temperature_c", "humidity_pct", "pressure_hpa"} for p in points)
    assert points == sorted(points, key=lambda p: p["t"])


def test_demo_defaults_show_three_local_sensors(tmp_path: Path) -> None:
    remote = [{"id": "balcony", "name": "Balcony", "token": "${BALCONY_TOKEN}"}]  # no secret needed in demo
    server = ServerThread(make_config(tmp_path, demo=True, remote_sensors=remote))
    server.start()
    try:
        names = ("sensor/living_room", "sensor/bedroom", "sensor/outdoor", "sensor/balcony")
        wait_until(lambda: all(topic(server, n)["status"] == "ok" for n in names), timeout_s=10)
        sources = [topic(server, n)["data"]["source"] for n in names]
        assert sources == ["i2c:bme280@0x76", "i2c:sht3x@0x44", f"w1:ds18b20/{DS_ID}", "lan (demo)"]
        for sensor in ("living_room", "balcony"):
            history = get(server, f"/api/sensors/{sensor}/history")
            assert 250 <= len(history["points"]) <= 1000  # a day of demo history for the sparkline
        assert get(server, "/healthz")["history"]["status"] == "ok"
    finally:
        server.stop()
    assert not list((tmp_path / "var").glob("demo-sysfs-*"))  # the fake sysfs tree is removed at stop
