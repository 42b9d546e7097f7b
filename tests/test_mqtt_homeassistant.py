"""Home Assistant discovery against a real Mosquitto: the messages have the shape Home Assistant's MQTT discovery
schema expects, states are retained, the display switch works from Home Assistant, and entities of a sensor
removed from config are removed from the broker."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sensors.registry import quantities_of
from server import homeboard as homeboard_mod
from server.core.source import SimpleSource, TransientError
from server.display.backends import make_backend
from server.mqtt import retained as retained_mod
from server.mqtt.homeassistant import QUANTITIES
from server.mqtt.retained import FILE_NAME
from tests.conftest import make_config
from tests.mqttbroker import Broker, Client, health, mqtt_settings, topic_state, wait_until
from tests.serverthread import ServerThread

# ------------------------------------------------------------------------------------------ HA's schema
# Transcribed from Home Assistant core, homeassistant/components/mqtt: discovery.py (TOPIC_MATCHER, "~" expansion),
# schemas.py (MQTT_ENTITY_COMMON_SCHEMA, MQTT_AVAILABILITY_SCHEMA, MQTT_ENTITY_DEVICE_INFO_SCHEMA,
# MQTT_ORIGIN_INFO_SCHEMA), sensor.py, switch.py, binary_sensor.py, and the sensor device classes' units.

TOPIC_MATCHER = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
COMMON_KEYS = {
    "availability_topic", "availability", "availability_mode", "availability_template", "payload_available",
    "payload_not_available", "device", "origin", "enabled_by_default", "entity_category", "icon",
    "json_attributes_topic", "json_attributes_template", "object_id", "unique_id", "name", "qos", "encoding",
}  # fmt: skip
PLATFORM_KEYS = {
    "sensor": {
        "state_topic", "value_template", "device_class", "expire_after", "force_update", "last_reset_value_template",
        "options", "suggested_display_precision", "state_class", "unit_of_measurement",
    },
    "switch": {
        "command_topic", "state_topic", "value_template", "payload_on", "payload_off", "state_on", "state_off",
        "optimistic", "retain", "device_class", "command_template",
    },
    "binary_sensor": {
        "state_topic", "value_template", "device_class", "expire_after", "force_update", "off_delay", "payload_on",
        "payload_off",
    },
}  # fmt: skip
REQUIRED = {"sensor": {"state_topic"}, "switch": {"command_topic"}, "binary_sensor": {"state_topic"}}
DEVICE_KEYS = {
    "identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version", "serial_number",
    "sw_version", "via_device", "suggested_area", "configuration_url",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_UNITS = {
    "temperature": {"°C", "°F", "K"},
    "humidity": {"%"},
    "atmospheric_pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "battery": {"%"},
}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
BINARY_SENSOR_CLASSES = {"problem", "connectivity", "running", "safety", "update"}  # the few that could fit
ENTITY_CATEGORIES = {"config", "diagnostic"}


def ha_validate(topic: str, payload: bytes, prefix: str = "homeassistant") -> dict[str, Any]:
    """What Home Assistant does with a discovery message; returns the expanded config or fails the test."""
    assert topic.startswith(prefix + "/")
    match = TOPIC_MATCHER.fullmatch(topic[len(prefix) + 1 :])
    assert match, f"{topic}: not a discovery topic Home Assistant accepts"
    component = match["component"]
    assert component in PLATFORM_KEYS, topic
    config = json.loads(payload)
    assert isinstance(config, dict)
    if "~" in config:  # discovery.py: "~" at the start or end of a *topic value is the base topic
        base = config.pop("~")
        for key, value in list(config.items()):
            if isinstance(value, str) and value and key.endswith("topic"):
                if value[0] == "~":
                    config[key] = base + value[1:]
                if value[-1] == "~":
                    config[key] = value[:-1] + base
    unknown = set(config) - COMMON_KEYS - PLATFORM_KEYS[component]
    assert not unknown, f"{topic}: keys Home Assistant does not know: {unknown}"
    missing = REQUIRED[component] - set(config)
    assert not missing, f"{topic}: required keys missing: {missing}"
    assert not ("availability_topic" in config and "availability" in config), "availability: exclusive keys"
    for key, value in config.items():
        if key.endswith("_topic"):
            assert isinstance(value, str), f"{key}: {value!r}"
            assert re.fullmatch(r"[^~+#]+", value), f"{key} must be a concrete topic, got {value!r}"
    assert isinstance(config["unique_id"], str)
    assert config["unique_id"]
    assert isinstance(config.get("name"), str | None)
    device = config["device"]
    assert not set(device) - DEVICE_KEYS, f"device keys: {set(device) - DEVICE_KEYS}"
    assert device.get("identifiers") or device.get("connections"), "a device needs an identifier"
    assert all(isinstance(i, str) for i in device["identifiers"])
    if "origin" in config:
        assert not set(config["origin"]) - ORIGIN_KEYS
        assert isinstance(config["origin"]["name"], str)
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES
    if component == "sensor":
        assert config["device_class"] in SENSOR_UNITS, config["device_class"]
        assert config["unit_of_measurement"] in SENSOR_UNITS[config["device_class"]]
        assert config["state_class"] in STATE_CLASSES
        if "expire_after" in config:
            assert isinstance(config["expire_after"], int)  # cv.positive_int
            assert config["expire_after"] > 0
    if component == "binary_sensor":
        assert config["device_class"] in BINARY_SENSOR_CLASSES
    for key in ("payload_on", "payload_off", "payload_available", "payload_not_available"):
        if key in config:
            assert isinstance(config[key], str)
    return config


class TemplateVariableError(Exception):
    """What Home Assistant logs as "Template variable error: ... when rendering" (helpers/template.py)."""


GUARDED = re.compile(r"\{% if value_json is defined %\}\{\{ value_json\.([a-z_]+) \}\}\{% endif %\}")
BARE = re.compile(r"\{\{ value_json\.([a-z_]+) \}\}")


def render(template: str, payload: bytes) -> str:
    """The two template shapes, rendered as Home Assistant's MqttValueTemplate does: value_json is defined only
    when the payload parses as JSON; reading an attribute of an undefined value_json is a template error."""
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None  # undefined in the template
    if m := GUARDED.fullmatch(template):
        if value_json is None:
            return ""  # Home Assistant ignores an empty state of a numeric sensor (logged at debug only)
    elif m := BARE.fullmatch(template):
        if value_json is None:
            raise TemplateVariableError(f"'value_json' is undefined when rendering '{template}'")
    else:
        raise AssertionError(f"a template shape this test does not know: {template}")
    value = value_json[m.group(1)]  # KeyError here = an undefined attribute in Home Assistant
    return "None" if value is None else str(value)  # Jinja renders None as "None": HA's PAYLOAD_NONE, "unknown"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def ha(broker: Broker) -> Iterator[Client]:
    """Home Assistant's side of the broker: subscribed to discovery and to Homeboard's topics."""
    c = Client(broker.port, "home-assistant").connect()
    c.subscribe("homeassistant/#")
    c.subscribe("homeboard/#")
    yield c
    c.close()


def retained_now(port: int, pattern: str, settle_s: float = 0.5) -> dict[str, bytes]:
    """What a client subscribing now gets as retained messages (the broker's stored state)."""
    c = Client(port).connect()
    c.subscribe(pattern)
    time.sleep(settle_s)
    c.close()
    return {m.topic: m.payload for m in c.received() if m.retain}


LAN = [
    {"id": "balcony", "name": "Balcony", "token": "balcony-token-123", "max_age_s": 900},
    {"id": "shed", "name": "Shed", "token": "shed-token-456"},
]


def post_reading(srv: ServerThread, sensor_id: str, token: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(
        f"{srv.url}/api/sensors/{sensor_id}/readings",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def ha_server(tmp_path: Path, broker: Broker, **overrides: Any) -> ServerThread:
    doc: dict[str, Any] = {
        "remote_sensors": LAN,
        "mqtt": mqtt_settings(broker.port, name="wall", home_assistant={"enabled": True}),
    }
    doc.update(overrides)
    srv = ServerThread(make_config(tmp_path, **doc))
    srv.start()
    assert wait_until(lambda: health(srv.url)["mqtt"]["connected"]), health(srv.url)
    return srv


# ------------------------------------------------------------------------------------------ tests


def test_discovery_messages_have_the_shape_home_assistant_expects(tmp_path: Path, broker: Broker, ha: Client) -> None:
    # Demo mode: the wired sensors are emulated chips (BME280, SHT31, DS18B20) read through the real drivers.
    srv = ha_server(tmp_path, broker, demo=True)
    try:
        wanted = {
            "homeassistant/sensor/homeboard_wall/living_room_temperature/config",
            "homeassistant/sensor/homeboard_wall/living_room_humidity/config",
            "homeassistant/sensor/homeboard_wall/living_room_pressure/config",
            "homeassistant/sensor/homeboard_wall/bedroom_temperature/config",
            "homeassistant/sensor/homeboard_wall/bedroom_humidity/config",
            "homeassistant/sensor/homeboard_wall/outdoor_temperature/config",
            "homeassistant/sensor/homeboard_wall/balcony_temperature/config",
            "homeassistant/sensor/homeboard_wall/shed_temperature/config",
            "homeassistant/binary_sensor/homeboard_wall/problem/config",
        }
        assert ha.wait_for(lambda: wanted <= {m.topic for m in ha.received()}), sorted(m.topic for m in ha.received())
        # Retained: what a Home Assistant that starts (subscribes) later gets from the broker.
        stored = retained_now(broker.port, "homeassistant/#")
        assert set(stored) == {m.topic for m in ha.received() if m.topic.startswith("homeassistant/")}
        configs = {topic: ha_validate(topic, payload) for topic, payload in stored.items()}
        assert "homeassistant/sensor/homeboard_wall/outdoor_humidity/config" not in configs  # a DS18B20 has none
        assert "homeassistant/switch/homeboard_wall/display/config" not in configs  # display.backend: none

        living = configs["homeassistant/sensor/homeboard_wall/living_room_temperature/config"]
        assert living["name"] == "Living room temperature"
        assert living["state_topic"] == "homeboard/wall/sensor/living_room/state"
        assert living["availability_topic"] == "homeboard/wall/status"
        assert (living["payload_available"], living["payload_not_available"]) == ("online", "offline")
        assert living["device_class"] == "temperature"
        assert living["unit_of_measurement"] == "°C"
        assert living["state_class"] == "measurement"
        assert living["device"]["identifiers"] == ["homeboard_wall"]
        assert living["device"]["name"] == "Homeboard wall"
        assert living["device"]["sw_version"] == health(srv.url)["version"]
        assert configs["homeassistant/sensor/homeboard_wall/balcony_temperature/config"]["expire_after"] == 900
        pressure = configs["homeassistant/sensor/homeboard_wall/living_room_pressure/config"]
        assert (pressure["device_class"], pressure["unit_of_measurement"]) == ("atmospheric_pressure", "hPa")
        assert len({c["unique_id"] for c in configs.values()}) == len(configs)

        # States: retained JSON that each entity's template reads; an unknown quantity renders as HA's "None".
        state = ha.wait_for(lambda: ha.latest("homeboard/wall/sensor/living_room/state"))
        assert "homeboard/wall/sensor/living_room/state" in retained_now(broker.port, "homeboard/wall/sensor/#")
        value = float(render(living["value_template"], state.payload))
        assert value == topic_state(srv.url, "sensor/living_room")["data"]["temperature_c"]
        assert render(pressure["value_template"], state.payload) != "None"
        outdoor = ha.wait_for(lambda: ha.latest("homeboard/wall/sensor/outdoor/state"))
        assert json.loads(outdoor.payload)["humidity_pct"] is None

        assert retained_now(broker.port, "homeboard/wall/status") == {"homeboard/wall/status": b"online"}
        problem = ha.wait_for(lambda: ha.latest("homeboard/wall/health/state"))
        assert problem.payload == b"OFF"
        attributes = json.loads(ha.latest("homeboard/wall/health/attributes").payload)
        assert attributes["status"] == "ok"
    finally:
        srv.stop()
    # A clean stop says "offline" (the will only covers a dead connection); HA shows the entities unavailable.
    assert ha.wait_for(lambda: ha.latest("homeboard/wall/status").payload == b"offline")


def test_wired_sensor_entities_come_from_the_sensor_registry(tmp_path: Path, broker: Broker, ha: Client) -> None:
    # No such hardware on this machine: these sensors never read, so what Home Assistant is told about them comes
    # from their types' descriptors in the sensor registry alone.
    sensors = [
        {"id": "kids_room", "type": "dht11", "iio_device": "iio:device97"},
        {"id": "den", "type": "bmp280", "bus": 97, "address": 0x77},
    ]
    prefix = "homeassistant/sensor/homeboard_wall/"
    expected = {f"{prefix}{s['id']}_{QUANTITIES[q][2]}/config" for s in sensors for q in quantities_of(s["type"])}
    assert expected == {
        f"{prefix}kids_room_temperature/config",
        f"{prefix}kids_room_humidity/config",
        f"{prefix}den_temperature/config",
        f"{prefix}den_pressure/config",
    }
    srv = ha_server(tmp_path, broker, sensors=sensors, remote_sensors=[])
    try:
        assert ha.wait_for(lambda: expected <= {m.topic for m in ha.received()})
        stored = retained_now(broker.port, prefix + "#")
        assert set(stored) == expected  # no pressure for a DHT11, no humidity for a BMP280
        assert (
            ha_validate(f"{prefix}kids_room_humidity/config", stored[f"{prefix}kids_room_humidity/config"])[
                "device_class"
            ]
            == "humidity"
        )
        for sensor_id in ("kids_room", "den"):
            state = topic_state(srv.url, f"sensor/{sensor_id}") or {}
            assert (state.get("data") or {}).get("temperature_c") is None  # never read: not from a reading
    finally:
        srv.stop()


def test_health_problems_reach_home_assistant(tmp_path: Path, broker: Broker, ha: Client) -> None:
    srv = ha_server(tmp_path, broker)
    try:
        assert ha.wait_for(lambda: ha.latest("homeboard/wall/health/state")).payload == b"OFF"

        def broken() -> dict[str, dict]:
            raise TransientError("no answer from the weather service")

        srv.call(lambda: srv.board.runner.add(SimpleSource("weather", broken, 3600.0, topics=("weather",))))
        assert wait_until(lambda: health(srv.url)["status"] == "degraded")
        srv.call(srv.board.mqtt.bridge.check_health)  # what the 5-s timer does
        assert ha.wait_for(lambda: ha.latest("homeboard/wall/health/state").payload == b"ON")
        attributes = json.loads(ha.latest("homeboard/wall/health/attributes").payload)
        assert attributes["problems"] == ["weather: no answer from the weather service"]
    finally:
        srv.stop()


def test_entities_of_a_sensor_removed_from_config_are_removed(
    tmp_path: Path, broker: Broker, ha: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retained_mod, "HA_UNSUBSCRIBE_GRACE_S", 1.0)
    srv = ha_server(tmp_path, broker)
    assert post_reading(srv, "shed", "shed-token-456", {"temperature_c": 9.0}) == 201
    shed_config = "homeassistant/sensor/homeboard_wall/shed_temperature/config"
    assert ha.wait_for(lambda: ha.latest("homeboard/wall/sensor/shed/state"))
    # A LAN sensor that starts sending humidity gets its humidity entity then.
    humidity_topic = "homeassistant/sensor/homeboard_wall/balcony_humidity/config"
    assert ha.latest(humidity_topic) is None
    assert post_reading(srv, "balcony", "balcony-token-123", {"temperature_c": 3.5, "humidity_pct": 88.0}) == 201
    msg = ha.wait_for(lambda: ha.latest(humidity_topic))
    assert ha_validate(humidity_topic, msg.payload)["device_class"] == "humidity"
    balcony = ha.wait_for(lambda: ha.latest("homeboard/wall/sensor/balcony/state"))
    assert json.loads(balcony.payload) == {
        "temperature_c": 3.5,
        "humidity_pct": 88.0,
        "pressure_hpa": None,
        "battery_pct": None,
        "measured_at": json.loads(balcony.payload)["measured_at"],
    }
    srv.stop()
    before = retained_now(broker.port, "#")
    assert shed_config in before
    assert "homeboard/wall/sensor/shed/state" in before
    record = json.loads((tmp_path / "var" / FILE_NAME).read_text())
    assert shed_config in record["topics"]

    # The shed is gone from config.yaml; the next start removes what it had announced.
    srv = ha_server(tmp_path, broker, remote_sensors=LAN[:1])
    try:
        # Home Assistant, subscribed, is told at once (an empty config removes the entity)...
        assert ha.wait_for(lambda: [m for m in ha.received(shed_config) if m.payload == b""])
        # ...and the broker keeps nothing of it for a Home Assistant that starts later.
        after = wait_until(
            lambda: (
                (r := retained_now(broker.port, "#"))
                and shed_config not in r
                and "homeboard/wall/sensor/shed/state" not in r  # a grace period after the discovery config
                and r
            ),
            timeout_s=retained_mod.HA_UNSUBSCRIBE_GRACE_S + 10,
        )
        assert after, "the shed's discovery message or its state is still retained"
        assert "homeassistant/sensor/homeboard_wall/balcony_temperature/config" in after
        record = wait_until(
            lambda: (
                (r := json.loads((tmp_path / "var" / FILE_NAME).read_text())) and shed_config not in r["topics"] and r
            )
        )
        assert record, "the record still lists the removed topic"
        assert "shed" not in record["fields"]
    finally:
        srv.stop()


def _backlight(tmp_path: Path) -> Path:
    dev = tmp_path / "sys" / "class" / "backlight" / "10-0045"
    dev.mkdir(parents=True)
    (dev / "bl_power").write_text("0")
    (dev / "brightness").write_text("255")
    (dev / "max_brightness").write_text("255")
    return dev


def test_the_display_switch_turns_the_screen_off_and_on_from_home_assistant(
    tmp_path: Path, broker: Broker, ha: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The hardware is the one part stood in for: the official touchscreen's backlight, as a sysfs tree.
    dev = _backlight(tmp_path)
    sysfs = str(tmp_path / "sys")
    monkeypatch.setattr(
        homeboard_mod, "make_backend", lambda name, config: make_backend(name, config, sysfs_root=sysfs)
    )
    srv = ha_server(tmp_path, broker, display={"backend": "backlight"})
    try:
        topic = "homeassistant/switch/homeboard_wall/display/config"
        switch = ha_validate(topic, ha.wait_for(lambda: ha.latest(topic)).payload)
        assert switch["command_topic"] == "homeboard/wall/display/set"
        assert switch["state_topic"] == "homeboard/wall/display/state"
        assert (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")
        assert ha.wait_for(lambda: ha.latest(switch["state_topic"])).payload == b"ON"

        ha.publish(switch["command_topic"], switch["payload_off"])  # what HA sends when the switch is flipped
        assert wait_until(lambda: (dev / "bl_power").read_text() == "4"), "the backlight is still on"
        assert ha.wait_for(lambda: ha.latest(switch["state_topic"]).payload == b"OFF")
        assert retained_now(broker.port, switch["state_topic"]) == {switch["state_topic"]: b"OFF"}
        assert topic_state(srv.url, "display")["data"] == {"power": "off", "reason": "manual: off", "mode": "off"}

        # Someone publishes a command retained: it acts now, but the broker keeps replaying it to every new
        # subscription. After a restart it must not switch the screen back to what it said long ago.
        ha.publish(switch["command_topic"], "ON", retain=True)
        assert wait_until(lambda: (dev / "bl_power").read_text() == "0")
        ha.publish(switch["command_topic"], "OFF")
        assert wait_until(lambda: (dev / "bl_power").read_text() == "4")
        srv.stop()
        srv = ha_server(tmp_path, broker, display={"backend": "backlight"})
        assert wait_until(lambda: topic_state(srv.url, "display")["data"] is not None)
        time.sleep(0.5)  # the retained "ON" has been delivered by now, and ignored
        assert (dev / "bl_power").read_text() == "4"
        assert topic_state(srv.url, "display")["data"]["mode"] == "off"
        assert "ignored a retained command on homeboard/wall/display/set" in caplog.text
        ha.publish(switch["command_topic"], "", retain=True)  # (clear it from the broker)

        ha.publish(switch["command_topic"], "AUTO")  # back to the schedule / motion rules
        assert wait_until(lambda: (dev / "bl_power").read_text() == "0")
        assert ha.wait_for(lambda: ha.latest(switch["state_topic"]).payload == b"ON")
        assert topic_state(srv.url, "display")["data"]["mode"] == "auto"
        assert health(srv.url)["mqtt"]["display_control"] == "ok"
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ removal, as HA sees it


class HomeAssistantLike(Client):
    """Home Assistant's MQTT discovery, as the broker sees it: an entity subscribes to its state topic when its
    config arrives and unsubscribes `removal_s` after an empty config removes it (Home Assistant processes a
    removal asynchronously); every message on a state topic an entity still listens to is rendered with that
    entity's value_template by HA's rules (render()), and what Home Assistant would log is kept in `logged`."""

    def __init__(self, port: int, removal_s: float) -> None:
        super().__init__(port, "home-assistant-like")
        self.removal_s = removal_s
        self.listening: dict[str, dict[str, Any]] = {}  # config topic → config, while the entity exists
        self.logged: list[str] = []
        self.rendered: list[tuple[str, bytes, str]] = []  # (state topic, payload, rendered value)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        super()._on_message(client, userdata, msg)
        with self.lock:
            if msg.topic.startswith("homeassistant/"):
                if msg.payload == b"":
                    if msg.topic in self.listening:
                        threading.Timer(self.removal_s, self._remove, (msg.topic,)).start()
                    return
                config = ha_validate(msg.topic, msg.payload)
                if config["state_topic"] not in self._state_topics():
                    client.subscribe(config["state_topic"], 1)
                self.listening[msg.topic] = config
                return
            for config in list(self.listening.values()):
                if config["state_topic"] != msg.topic or "value_template" not in config:
                    continue
                try:
                    self.rendered.append((msg.topic, msg.payload, render(config["value_template"], msg.payload)))
                except TemplateVariableError as err:
                    self.logged.append(f"Template variable error: {err}")

    def _state_topics(self) -> set[str]:
        return {c["state_topic"] for c in self.listening.values()}

    def _remove(self, config_topic: str) -> None:
        with self.lock:
            config = self.listening.pop(config_topic, None)
            if config is not None and config["state_topic"] not in self._state_topics():
                self.client.unsubscribe(config["state_topic"])


@pytest.mark.parametrize("grace_s", [1.0, 0.0], ids=["state-cleared-after-ha-unsubscribed", "tolerant-template"])
def test_removing_a_sensor_leaves_nothing_in_home_assistants_log(
    tmp_path: Path, broker: Broker, ha: Client, monkeypatch: pytest.MonkeyPatch, grace_s: float
) -> None:
    monkeypatch.setattr(retained_mod, "HA_UNSUBSCRIBE_GRACE_S", grace_s)
    shed_configs = {"homeassistant/sensor/homeboard_wall/shed_temperature/config"}
    shed_state = "homeboard/wall/sensor/shed/state"
    srv = ha_server(tmp_path, broker)
    assert post_reading(srv, "shed", "shed-token-456", {"temperature_c": 9.0}) == 201
    assert ha.wait_for(lambda: ha.latest(shed_state))
    srv.stop()

    home_assistant = HomeAssistantLike(broker.port, removal_s=0.5).connect()
    home_assistant.subscribe("homeassistant/#")
    try:
        # Home Assistant has the shed's entity and its retained state (rendered: 9.0).
        assert home_assistant.wait_for(
            lambda: any(t == shed_state and v == "9.0" for t, _, v in home_assistant.rendered)
        )
        started = time.monotonic()
        srv = ha_server(tmp_path, broker, remote_sensors=LAN[:1])
        try:
            assert wait_until(lambda: shed_state not in retained_now(broker.port, "homeboard/#"), timeout_s=15)
            time.sleep(home_assistant.removal_s + 0.2)
        finally:
            srv.stop()
    finally:
        home_assistant.close()

    # What went over the broker about the shed after the new start, in order: the discovery config emptied
    # first (Home Assistant removes the entity), then the state topic, HA_UNSUBSCRIBE_GRACE_S later.
    live = [m for m in ha.received() if m.topic in {*shed_configs, shed_state} and m.timestamp >= started]
    assert [(m.topic, m.payload, m.retain) for m in live] == [
        (*shed_configs, b"", False),
        (shed_state, b"", False),
    ]
    assert live[1].timestamp - live[0].timestamp >= grace_s - 0.05
    # Home Assistant logged nothing for it, whichever of the two defences applied.
    assert home_assistant.logged == []
    if grace_s > home_assistant.removal_s:
        assert (shed_state, b"", "") not in home_assistant.rendered, "unsubscribed before the state was cleared"
    else:
        assert (shed_state, b"", "") in home_assistant.rendered, "still subscribed: the template took it quietly"
    # The test can fail: the template Home Assistant was given before would have logged exactly the error.
    with pytest.raises(TemplateVariableError, match="'value_json' is undefined"):
        render("{{ value_json.temperature_c }}", b"")


def test_a_screen_that_does_not_switch_shows_on_the_switch_and_the_problem_sensor(
    tmp_path: Path, broker: Broker, ha: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = _backlight(tmp_path)
    sysfs = str(tmp_path / "sys")
    monkeypatch.setattr(
        homeboard_mod, "make_backend", lambda name, config: make_backend(name, config, sysfs_root=sysfs)
    )
    srv = ha_server(tmp_path, broker, display={"backend": "backlight"})
    state_topic, problem = "homeboard/wall/display/state", "homeboard/wall/health/state"
    try:
        assert ha.wait_for(lambda: ha.latest(state_topic)).payload == b"ON"
        assert ha.wait_for(lambda: ha.latest(problem)).payload == b"OFF"
        # The panel's driver goes away (bl_power can no longer be written): Home Assistant flips the switch OFF.
        (dev / "bl_power").unlink()
        (dev / "bl_power").mkdir()
        before = len(ha.received(state_topic))
        ha.publish("homeboard/wall/display/set", "OFF")
        assert ha.wait_for(lambda: ha.latest(problem).payload == b"ON")
        attributes = json.loads(ha.latest("homeboard/wall/health/attributes").payload)
        assert attributes["status"] == "degraded"
        (line,) = attributes["problems"]
        assert line.startswith("display: backlight: could not switch the screen off: cannot write ")
        # The switch shows the screen as it really is: still on (the last state read back), not the OFF asked for.
        assert len(ha.received(state_topic)) > before, "the state is sent again, so the flipped switch flips back"
        assert ha.latest(state_topic).payload == b"ON"
        assert retained_now(broker.port, state_topic) == {state_topic: b"ON"}
        assert topic_state(srv.url, "display")["status"] == "error"
        assert topic_state(srv.url, "display")["data"]["power"] == "on"
        assert health(srv.url)["status"] == "degraded"

        # Recovery: the panel is back, the rules switch it on again, the problem clears.
        (dev / "bl_power").rmdir()
        (dev / "bl_power").write_text("0")
        ha.publish("homeboard/wall/display/set", "AUTO")
        assert ha.wait_for(lambda: ha.latest(problem).payload == b"OFF")
        assert json.loads(ha.latest("homeboard/wall/health/attributes").payload)["problems"] == []
        assert ha.latest(state_topic).payload == b"ON"
        assert topic_state(srv.url, "display")["status"] == "ok"
        assert health(srv.url)["status"] == "ok"
    finally:
        srv.stop()
