"""QoS 1 end to end against a real Mosquitto with persistence: every reading the broker acknowledged to a device ends
up in Homeboard's history, through a Homeboard restart and broker restarts (persistent session, manual acks
after the durable store)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

from server.readings.history import DB_NAME
from tests.conftest import make_config
from tests.mqttbroker import Broker, Client, health, mqtt_settings, wait_until
from tests.serverthread import ServerThread

T0 = int(time.time()) - 3600  # readings carry their own times (an hour ago, one second apart): each is unique


def reading(i: int) -> bytes:
    measured = dt.datetime.fromtimestamp(T0 + i, dt.UTC).isoformat(timespec="seconds")
    return json.dumps({"temperature_c": round(10 + i / 100, 2), "measured_at": measured}).encode()


def stored_indexes(data_dir: Path) -> set[int]:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        rows = conn.execute("SELECT measured_at_ms FROM readings WHERE sensor_id = 'meter'").fetchall()
    finally:
        conn.close()
    return {round(ms / 1000 - T0) for (ms,) in rows}


def test_nothing_acknowledged_is_lost_across_broker_and_homeboard_restarts(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    cfg = make_config(
        tmp_path,
        mqtt=mqtt_settings(broker.port, sensors=[{"id": "meter", "topic": "home/meter", "preset": "json"}]),
    )
    data_dir = tmp_path / "var"
    device = Client(broker.port, "meter-device", clean=False).connect()
    device.client.reconnect_delay_set(0.1, 0.5)
    srv = ServerThread(cfg).start()
    try:
        assert wait_until(lambda: health(srv.url)["mqtt"]["connected"])
        acked: set[int] = set()

        def send(indexes: range) -> None:
            for i in indexes:
                device.publish("home/meter", reading(i))  # returns once the broker acknowledged it
                acked.add(i)

        send(range(0, 20))  # 1. Homeboard online
        assert wait_until(lambda: stored_indexes(data_dir) >= set(range(20)), 10)

        srv.stop()  # 2. Homeboard away: the broker queues for its persistent session
        send(range(20, 40))

        broker.restart()  # 3. the broker restarts (SIGTERM: persistence written) with the queue in it
        assert device.wait_for(device.client.is_connected, 10)
        send(range(40, 60))

        srv = ServerThread(cfg).start()  # 4. Homeboard back
        assert wait_until(lambda: stored_indexes(data_dir) >= set(range(60)), 15), sorted(
            set(range(60)) - stored_indexes(data_dir)
        )

        # 5. The broker restarts while a device keeps sending (its client queues and resends QoS 1 messages):
        # whatever the broker acknowledged arrives.
        mids = {}
        for i in range(60, 100):
            if i == 70:
                broker.restart()
            mids[device.publish("home/meter", reading(i), wait=False).mid] = i
            time.sleep(0.01)
        assert device.wait_for(lambda: set(mids) <= device.acked_mids, 15), "the device's messages were not all taken"
        acked |= {i for mid, i in mids.items() if mid in device.acked_mids}
        assert acked == set(range(100))
        assert wait_until(lambda: stored_indexes(data_dir) >= acked, 15), sorted(acked - stored_indexes(data_dir))
        assert health(srv.url)["mqtt"]["connected"]
    finally:
        srv.stop()
        device.close()
        broker.stop()
