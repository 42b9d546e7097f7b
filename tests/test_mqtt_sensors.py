"""Sensors over MQTT against a real Mosquitto: Zigbee2MQTT, Tasmota and ESPHome payloads become readings on the page
and in the history; broken ones become errors naming the field; a broker that is down, refuses us or cannot be
trusted never stops the dashboard and is reported in /healthz without a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.config import parse_config
from server.readings.history import DB_NAME
from tests.conftest import free_port, make_config, require_tool
from tests.mqttbroker import Broker, Client, Page, get_json, health, mqtt_settings, topic_state, wait_until
from tests.serverthread import ServerThread

FEATURES = ("server.sensing", "server.mqtt")
SENSORS = [
    {"id": "kitchen", "name": "Kitchen", "preset": "zigbee2mqtt", "topic": "zigbee2mqtt/kitchen", "max_age_s": 600},
    {"id": "hall", "name": "Hall", "preset": "tasmota", "topic": "tele/hall/SENSOR"},
    {
        "id": "garage",
        "name": "Garage",
        "preset": "esphome",
        "topic": "garage/sensor/temperature/state",
        "humidity_topic": "garage/sensor/humidity/state",
    },
]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def device(broker: Broker) -> Iterator[Client]:
    c = Client(broker.port, "test-device").connect()
    yield c
    c.close()


@pytest.fixture
def srv(tmp_path: Path, broker: Broker) -> Iterator[ServerThread]:
    cfg = make_config(tmp_path, mqtt=mqtt_settings(broker.port, sensors=SENSORS))
    server = ServerThread(cfg).start()
    assert wait_until(lambda: health(server.url)["mqtt"]["connected"], 10), health(server.url)
    yield server
    server.stop()


def history_rows(srv: ServerThread, sensor_id: str) -> list[tuple[Any, ...]]:
    assert srv.board is not None
    conn = sqlite3.connect(Path(srv.board.data_dir) / DB_NAME)
    try:
        return conn.execute(
            "SELECT temperature_c, humidity_pct, pressure_hpa, battery_pct, source FROM readings"
            " WHERE sensor_id = ? ORDER BY measured_at_ms",
            (sensor_id,),
        ).fetchall()
    finally:
        conn.close()


def test_three_presets_become_readings_on_the_page_and_in_the_history(
    srv: ServerThread, device: Client, broker: Broker
) -> None:
    async def scenario() -> None:
        page = Page(srv.ws_url)
        snapshot = await page.open()
        assert snapshot["topics"]["sensor/kitchen"]["status"] == "waiting"  # declared: waiting, not missing

        device.publish(
            "zigbee2mqtt/kitchen",
            json.dumps({"temperature": 21.83, "humidity": 45.4, "pressure": 1008.9, "battery": 91, "linkquality": 120}),
        )
        kitchen = await page.until(lambda u: u["topic"] == "sensor/kitchen")
        assert kitchen["status"] == "ok"
        assert kitchen["data"]["temperature_c"] == 21.83
        assert kitchen["data"]["humidity_pct"] == 45.4
        assert kitchen["data"]["pressure_hpa"] == 1008.9
        assert kitchen["data"]["battery_pct"] == 91
        assert kitchen["data"]["name"] == "Kitchen"
        assert kitchen["data"]["source"] == "mqtt:zigbee2mqtt/kitchen"

        tasmota = {"Time": "2026-11-25T14:05:00", "AM2301": {"Temperature": 70.7, "Humidity": 38.2}, "TempUnit": "F"}
        device.publish("tele/hall/SENSOR", json.dumps(tasmota))
        hall = await page.until(lambda u: u["topic"] == "sensor/hall")
        assert hall["data"]["temperature_c"] == 21.5  # from °F
        assert hall["data"]["humidity_pct"] == 38.2

        # ESPHome: two topics a few ms apart → one reading with both.
        device.publish("garage/sensor/temperature/state", "4.5")
        device.publish("garage/sensor/humidity/state", "81.2")
        garage = await page.until(lambda u: u["topic"] == "sensor/garage")
        assert garage["data"]["temperature_c"] == 4.5
        assert garage["data"]["humidity_pct"] == 81.2
        assert garage["data"]["source"] == "mqtt:garage/sensor/temperature/state"
        page.close()

    asyncio.run(scenario())
    # Stored durably in the same history as wired and POSTed readings (before the message was acknowledged).
    expected = {
        "kitchen": [(21.83, 45.4, 1008.9, 91.0, "mqtt:zigbee2mqtt/kitchen")],
        "hall": [(21.5, 38.2, None, None, "mqtt:tele/hall/SENSOR")],
        "garage": [(4.5, 81.2, None, None, "mqtt:garage/sensor/temperature/state")],
    }
    assert wait_until(lambda: {k: history_rows(srv, k) for k in expected} == expected), {
        k: history_rows(srv, k) for k in expected
    }
    # And the history endpoint knows MQTT sensors.
    points = get_json(srv.url + "/api/sensors/kitchen/history")["points"]
    assert [p["temperature_c"] for p in points] == [21.83]


def test_broken_payloads_show_an_error_naming_the_field_and_nothing_stops(srv: ServerThread, device: Client) -> None:
    device.publish("zigbee2mqtt/kitchen", json.dumps({"temperature": 20.5, "humidity": 40}))
    assert wait_until(lambda: topic_state(srv.url, "sensor/kitchen")["status"] == "ok")
    cases = [
        (
            b"{not json",
            "zigbee2mqtt/kitchen: payload: not valid JSON: "
            "Expecting property name enclosed in double quotes (line 1, column 2)",
        ),
        (
            json.dumps({"battery": 40}).encode(),  # a humidity-only device is fine; no quantity at all is not
            'zigbee2mqtt/kitchen: field "temperature" is missing (nor humidity, pressure): '
            "set temperature_field (or humidity_field) if it has another name",
        ),
        (
            json.dumps({"temperature": "hot"}).encode(),
            'zigbee2mqtt/kitchen: field "temperature" → temperature_c: expected a number, got a string',
        ),
        (
            b'{"temperature": NaN}',
            'zigbee2mqtt/kitchen: field "temperature" → temperature_c: NaN is not a finite number',
        ),
        (
            json.dumps({"temperature": 21, "humidity": 104.5}).encode(),
            'zigbee2mqtt/kitchen: field "humidity" → humidity_pct: 104.5 % is outside the plausible range 0..100 %',
        ),
        (
            json.dumps({"temperature": -85}).encode(),
            'zigbee2mqtt/kitchen: field "temperature" → '
            "temperature_c: -85 °C is outside the plausible range -60..85 °C",
        ),
    ]
    for payload, message in cases:
        device.publish("zigbee2mqtt/kitchen", payload)
        state = wait_until(lambda m=message: (s := topic_state(srv.url, "sensor/kitchen"))["error"] == m and s)
        assert state, (message, topic_state(srv.url, "sensor/kitchen"))
        assert state["status"] == "error"
        assert state["data"]["temperature_c"] == 20.5  # the last good value is kept, never a made-up one
    assert wait_until(lambda: history_rows(srv, "kitchen") == [(20.5, 40.0, None, None, "mqtt:zigbee2mqtt/kitchen")])

    device.publish("garage/sensor/temperature/state", "nan")  # ESPHome's word for a failed read
    state = wait_until(
        lambda: (
            topic_state(srv.url, "sensor/garage")["status"] == "unavailable" and topic_state(srv.url, "sensor/garage")
        )
    )
    assert state["error"] == 'garage/sensor/temperature/state: ESPHome reports no value ("nan"): the sensor read failed'

    report = health(srv.url)["mqtt"]
    assert report["sensors"]["kitchen"]["last_error"].endswith("outside the plausible range -60..85 °C")
    assert report["handler_errors"] == 0
    device.publish("zigbee2mqtt/kitchen", json.dumps({"temperature": 21.0}))
    assert wait_until(lambda: topic_state(srv.url, "sensor/kitchen")["status"] == "ok")
    assert topic_state(srv.url, "sensor/kitchen")["data"]["temperature_c"] == 21.0


def test_retained_readings_need_a_time_and_devices_going_offline_show(broker: Broker, tmp_path: Path) -> None:
    dev = Client(broker.port, "z2m").connect()
    measured = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 120))
    # Retained before Homeboard starts: one with Zigbee2MQTT's last_seen, one that cannot say how old it is.
    dev.publish("zigbee2mqtt/kitchen", json.dumps({"temperature": 19.0, "last_seen": measured}), retain=True)
    dev.publish("tele/hall/SENSOR", json.dumps({"AM2301": {"Temperature": 22.0}}), retain=True)
    cfg = make_config(tmp_path, mqtt=mqtt_settings(broker.port, sensors=SENSORS))
    srv = ServerThread(cfg).start()
    try:
        kitchen = wait_until(lambda: (s := topic_state(srv.url, "sensor/kitchen"))["status"] == "ok" and s)
        assert kitchen, topic_state(srv.url, "sensor/kitchen")
        assert kitchen["data"]["temperature_c"] == 19.0
        assert kitchen["data"]["measured_at"].startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() - 120)))
        hall = topic_state(srv.url, "sensor/hall")
        assert hall["data"] is None  # not shown as "now": its age is unknown
        assert hall["status"] == "waiting"
        assert wait_until(lambda: health(srv.url)["mqtt"]["sensors"]["hall"]["ignored_retained"] == 1)

        dev.publish("zigbee2mqtt/kitchen/availability", json.dumps({"state": "offline"}), retain=True)
        state = wait_until(lambda: (s := topic_state(srv.url, "sensor/kitchen"))["status"] == "unavailable" and s)
        assert state["error"] == "zigbee2mqtt/kitchen/availability: the device is offline"
        assert state["data"]["temperature_c"] == 19.0
        dev.publish("tele/hall/LWT", "Offline", retain=True)
        assert wait_until(
            lambda: topic_state(srv.url, "sensor/hall")["error"] == "tele/hall/LWT: the device is offline"
        )
        # Back online: shown as such at once (a sleepy Zigbee sensor's next reading may be an hour away), with
        # its last reading, which is 2 minutes old and so not stale (max_age_s 3600).
        dev.publish("zigbee2mqtt/kitchen/availability", json.dumps({"state": "online"}), retain=True)
        back = wait_until(lambda: (s := topic_state(srv.url, "sensor/kitchen"))["status"] == "ok" and s)
        assert (back["error"], back["stale"], back["data"]["temperature_c"]) == (None, False, 19.0)
        dev.publish("tele/hall/LWT", "Online", retain=True)  # never read: waiting again, not "offline"
        assert wait_until(lambda: topic_state(srv.url, "sensor/hall")["status"] == "waiting")
    finally:
        srv.stop()
        dev.close()


def test_a_broker_that_is_down_never_stops_the_dashboard_and_is_joined_when_it_comes(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")  # not started yet: nothing listens on its port
    cfg = make_config(tmp_path, mqtt=mqtt_settings(broker.port, sensors=SENSORS[:1]))
    started = time.monotonic()
    srv = ServerThread(cfg).start()
    try:
        assert time.monotonic() - started < 5
        assert topic_state(srv.url, "sensor/kitchen")["status"] == "waiting"  # the page is served
        report = wait_until(lambda: (h := health(srv.url))["mqtt"]["last_error"] and h)
        assert report["status"] == "degraded"
        assert report["mqtt"]["connected"] is False
        assert report["mqtt"]["last_error"] == "connection refused (is the broker running, and on this port?)"
        assert report["mqtt"]["broker"] == f"127.0.0.1:{broker.port}"

        broker.start()
        assert wait_until(lambda: health(srv.url)["mqtt"]["connected"], 10)  # reconnect_max_s is 0.5 here
        dev = Client(broker.port).connect()
        dev.publish("zigbee2mqtt/kitchen", json.dumps({"temperature": 18.5}))
        assert wait_until(lambda: topic_state(srv.url, "sensor/kitchen")["status"] == "ok")
        assert health(srv.url)["mqtt"]["last_error"] is None
        dev.close()

        broker.stop()  # and down again, mid-run
        report = wait_until(lambda: (h := health(srv.url))["mqtt"]["connected"] is False and h)
        assert report["mqtt"]["last_error"].startswith("disconnected")
        assert topic_state(srv.url, "sensor/kitchen")["data"]["temperature_c"] == 18.5
    finally:
        srv.stop()
        broker.stop()


def test_credentials_are_used_and_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    passwd = require_tool("mosquitto_passwd")
    secret = "pw-0f3c9e61-never-shown"
    pwfile = tmp_path / "passwd"
    subprocess.run([passwd, "-b", "-c", str(pwfile), "homeboard", secret], check=True, capture_output=True)
    pwfile.chmod(0o600)
    broker = Broker(tmp_path / "broker", extra_conf=f"allow_anonymous false\npassword_file {pwfile}\n").start()
    caplog.set_level(logging.DEBUG)
    servers = []
    try:
        # The password comes as ${MQTT_PASSWORD}, from the environment, as config.yaml says it should.
        wrong = parse_config(
            {
                "data_dir": str(tmp_path / "a"),
                "mqtt": mqtt_settings(broker.port, username="homeboard", password="${MQTT_PASSWORD}", name="a"),
            },
            env={"MQTT_PASSWORD": "wrong-" + secret},
        )
        srv = ServerThread(wrong).start()
        servers.append(srv)
        report = wait_until(lambda: (h := health(srv.url))["mqtt"]["last_error"] and h)
        assert report["mqtt"]["connected"] is False
        assert report["mqtt"]["last_error"] == "the broker refused the connection: Not authorized"
        right = parse_config(
            {
                "data_dir": str(tmp_path / "b"),
                "mqtt": mqtt_settings(broker.port, username="homeboard", password="${MQTT_PASSWORD}", name="b"),
            },
            env={"MQTT_PASSWORD": secret},
        )
        srv2 = ServerThread(right).start()
        servers.append(srv2)
        assert wait_until(lambda: health(srv2.url)["mqtt"]["connected"])
        for s in servers:
            text = json.dumps(health(s.url)) + json.dumps(topic_state(s.url, "display") or {})
            assert secret not in text
    finally:
        for s in servers:
            s.stop()
        broker.stop()
    assert secret not in caplog.text
    assert "Not authorized" in caplog.text  # said once, with what to check


def _make_ca_and_server_cert(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    openssl = require_tool("openssl")
    d = tmp_path / "pki"
    d.mkdir()
    ca_key, ca, key, csr, cert = d / "ca.key", d / "ca.pem", d / "server.key", d / "server.csr", d / "server.pem"
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    other = d / "other-ca.pem"
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Other CA",
        "-keyout",
        str(d / "o.key"),
        "-out",
        str(other),
    )
    return ca, cert, key, other


def test_tls_to_a_broker_whose_certificate_is_checked(tmp_path: Path) -> None:
    ca, cert, key, other_ca = _make_ca_and_server_cert(tmp_path)
    port = free_port()
    broker = Broker(tmp_path / "broker", port=port)
    broker.conf = lambda: (  # type: ignore[method-assign]
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n"
        f"user root\nlog_dest file {broker.log_path}\n"
    )
    broker.start()
    servers = []
    try:
        trusted = make_config(
            tmp_path / "a",
            mqtt=mqtt_settings(port, name="a", host="localhost", tls={"ca_certs": str(ca)}, sensors=SENSORS[:1]),
        )
        srv = ServerThread(trusted).start()
        servers.append(srv)
        assert wait_until(lambda: health(srv.url)["mqtt"]["connected"]), health(srv.url)
        assert health(srv.url)["mqtt"]["tls"] is True

        untrusted = make_config(
            tmp_path / "b", mqtt=mqtt_settings(port, name="b", host="localhost", tls={"ca_certs": str(other_ca)})
        )
        srv2 = ServerThread(untrusted).start()
        servers.append(srv2)
        report = wait_until(lambda: (h := health(srv2.url))["mqtt"]["last_error"] and h)
        assert report["mqtt"]["connected"] is False
        assert report["mqtt"]["last_error"].startswith("TLS: the broker's certificate is not trusted")
        assert report["mqtt"]["last_error"].endswith("check mqtt.tls.ca_certs")
    finally:
        for s in servers:
            s.stop()
        broker.stop()


def test_a_broker_that_never_answers_holds_up_neither_start_nor_stop(tmp_path: Path) -> None:
    # A loopback listener whose accept queue is full: a connect to it hangs, like a broker host that is gone.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    port = silent.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    cfg = make_config(tmp_path, mqtt=mqtt_settings(port, sensors=SENSORS[:1]))
    started = time.monotonic()
    srv = ServerThread(cfg).start()
    try:
        assert time.monotonic() - started < 5
        assert topic_state(srv.url, "sensor/kitchen")["status"] == "waiting"
        assert health(srv.url)["mqtt"]["connected"] is False
    finally:
        stopping = time.monotonic()
        srv.stop()
        stop_s = time.monotonic() - stopping
        silent.close()
        for c in fillers:
            c.close()
    assert stop_s < 4, f"stop took {stop_s:.1f} s"  # systemd's budget is 5 s for the whole server
