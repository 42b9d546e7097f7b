"""MQTT payload presets (pure) and the mqtt config section: recorded device payloads, broken ones, unit conversion."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from server.config import ConfigError, MqttSensorConfig, parse_config
from server.mqtt.payloads import (
    PRESET_FIELDS,
    PayloadError,
    explain,
    field_map,
    parse_json_reading,
    parse_number,
    parse_tasmota_reading,
)
from server.mqtt.sensors import _availability, default_availability_topic
from server.mqtt.share import SharedStateError, matches, parse_shared
from server.readings.body import reading_from_body
from server.readings.reading import ReadingError

# Recorded shapes (Zigbee2MQTT 1.x for an Aqara WSDCGQ11LM, Tasmota 13 with an AM2301 and a BME280).
Z2M_AQARA = {
    "battery": 91,
    "humidity": 45.42,
    "linkquality": 120,
    "power_outage_count": 3,
    "pressure": 1008.9,
    "temperature": 21.83,
    "voltage": 2995,
    "last_seen": "2026-11-25T14:05:00+01:00",
}
TASMOTA_AM2301 = {
    "Time": "2026-11-25T14:05:00",
    "AM2301": {"Temperature": 21.3, "Humidity": 40.1, "DewPoint": 7.4},
    "TempUnit": "C",
}
TASMOTA_BME280_F = {
    "Time": "2026-11-25T14:05:00",
    "ESP32": {"Temperature": 51.1},
    "BME280": {"Temperature": 70.7, "Humidity": 38.2, "DewPoint": 43.5, "Pressure": 760.0},
    "PressureUnit": "mmHg",
    "TempUnit": "F",
}


def sensor(**kw: Any) -> MqttSensorConfig:
    return MqttSensorConfig(**{"id": "s", "topic": "t/x", **kw})


def z2m(payload: Any, **kw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    s = sensor(preset="zigbee2mqtt", **kw)
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_json_reading("zigbee2mqtt/kitchen", raw, field_map(s, PRESET_FIELDS["zigbee2mqtt"]))


def reading_of(body: dict[str, Any]) -> Any:
    return reading_from_body("kitchen", body, now_s=time.time(), max_age_s=7 * 86400, source="mqtt:test")


def test_zigbee2mqtt_maps_fields_and_keeps_its_last_seen() -> None:
    body, origin = z2m(Z2M_AQARA)
    assert body == {
        "temperature_c": 21.83,
        "humidity_pct": 45.42,
        "pressure_hpa": 1008.9,
        "battery_pct": 91,
        "measured_at": "2026-11-25T14:05:00+01:00",
    }
    assert origin["temperature_c"] == "temperature"
    # last_seen as epoch milliseconds (Zigbee2MQTT's "epoch" setting) becomes ISO UTC.
    body, _ = z2m({"temperature": 20.0, "last_seen": 1795611900123})
    assert body["measured_at"] == "2026-11-25T13:05:00.123+00:00"


def test_zigbee2mqtt_without_temperature_or_with_a_string_names_the_field() -> None:
    with pytest.raises(PayloadError, match=r'zigbee2mqtt/kitchen: field "temperature" is missing'):
        z2m({"contact": True, "battery": 100})
    body, origin = z2m({"temperature": "21,5"})
    with pytest.raises(ReadingError) as err:
        reading_of(body)
    assert explain("zigbee2mqtt/kitchen", err.value, origin) == (
        'zigbee2mqtt/kitchen: field "temperature" → temperature_c: expected a number, got a string'
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "payload: empty"),
        (b"{not json", "payload: not valid JSON"),
        (b"[21.5]", "payload: expected a JSON object"),
        (b'{"temperature": NaN}', None),
        (b'{"temperature": 1e999}', None),
        (b'{"temperature": 20, "temperature": 21}', "temperature: duplicate key"),
        (b"\xff\xfe", "payload: not valid UTF-8"),
        (b'{"temperature": 20, "pad": "' + b"x" * 20000 + b'"}', "payload larger than 16384 bytes"),
    ],
)
def test_broken_json_is_refused_with_a_reason(raw: bytes, message: str | None) -> None:
    if message is not None:
        with pytest.raises(PayloadError, match=message):
            z2m(raw)
        return
    body, origin = z2m(raw)  # non-finite numbers parse into markers that the reading path refuses by name
    with pytest.raises(ReadingError) as err:
        reading_of(body)
    assert "temperature_c" in str(err.value)
    assert "finite" in explain("t", err.value, origin)


def test_implausible_values_go_through_the_same_ranges_as_posted_readings() -> None:
    body, origin = z2m({"temperature": 21.0, "humidity": 140})
    with pytest.raises(ReadingError) as err:
        reading_of(body)
    assert explain("zigbee2mqtt/kitchen", err.value, origin) == (
        'zigbee2mqtt/kitchen: field "humidity" → humidity_pct: 140 % is outside the plausible range 0..100 %'
    )


def test_dotted_fields_for_any_json() -> None:
    s = sensor(preset="json", temperature_field="env.temp", humidity_field="env.rh", time_field="ts")
    raw = json.dumps({"env": {"temp": 19.5, "rh": 51}, "ts": 1795611900}).encode()
    body, origin = parse_json_reading("home/attic", raw, field_map(s, PRESET_FIELDS["json"]))
    assert body == {"temperature_c": 19.5, "humidity_pct": 51, "measured_at": "2026-11-25T13:05:00.000+00:00"}
    assert origin == {"temperature_c": "env.temp", "humidity_pct": "env.rh", "measured_at": "ts"}
    # The json preset's default names are Homeboard's own (the body of POST /api/sensors/{id}/readings).
    raw = json.dumps({"temperature_c": 18.0, "humidity_pct": 40.0}).encode()
    body, _ = parse_json_reading("home/attic", raw, field_map(sensor(), PRESET_FIELDS["json"]))
    assert body == {"temperature_c": 18.0, "humidity_pct": 40.0}


def test_tasmota_finds_its_sensor_object() -> None:
    body, origin = parse_tasmota_reading(
        "tele/hall/SENSOR", json.dumps(TASMOTA_AM2301).encode(), sensor(preset="tasmota")
    )
    assert body == {"temperature_c": 21.3, "humidity_pct": 40.1}  # Tasmota's Time has no offset: not used
    assert origin == {"temperature_c": "AM2301.Temperature", "humidity_pct": "AM2301.Humidity"}


def test_tasmota_fahrenheit_and_mmhg_are_converted_and_the_chip_temperature_ignored() -> None:
    body, _ = parse_tasmota_reading("tele/hall/SENSOR", json.dumps(TASMOTA_BME280_F).encode(), sensor(preset="tasmota"))
    assert body == {"temperature_c": 21.5, "humidity_pct": 38.2, "pressure_hpa": 1013.25}
    assert reading_of(body).temperature_c == 21.5


def test_tasmota_with_two_sensors_asks_which_and_takes_the_named_one() -> None:
    doc = {
        "DS18B20-1": {"Id": "01", "Temperature": 4.5},
        "DS18B20-2": {"Id": "02", "Temperature": 21.0},
        "TempUnit": "C",
    }
    raw = json.dumps(doc).encode()
    with pytest.raises(
        PayloadError,
        match=r'several sensors \(DS18B20-1, DS18B20-2\): set temperature_field, e.g. "DS18B20-1.Temperature"',
    ):
        parse_tasmota_reading("tele/out/SENSOR", raw, sensor(preset="tasmota"))
    body, _ = parse_tasmota_reading(
        "tele/out/SENSOR", raw, sensor(preset="tasmota", temperature_field="DS18B20-2.Temperature")
    )
    assert body == {"temperature_c": 21.0}


def test_tasmota_refuses_what_it_cannot_convert() -> None:
    with pytest.raises(PayloadError, match=r'field "TempUnit": "K" is not C or F'):
        parse_tasmota_reading(
            "tele/x/SENSOR", json.dumps({**TASMOTA_AM2301, "TempUnit": "K"}).encode(), sensor(preset="tasmota")
        )
    with pytest.raises(PayloadError, match=r'no sensor object with a "Temperature" field \(keys: Time, ENERGY\)'):
        parse_tasmota_reading("tele/x/SENSOR", b'{"Time": "x", "ENERGY": {"Power": 5}}', sensor(preset="tasmota"))


def test_plain_numbers_and_esphome_nan() -> None:
    assert parse_number("n/sensor/t/state", b"21.37", "esphome") == 21.37
    assert parse_number("n/sensor/t/state", b" -4 \n", "plain") == -4.0
    with pytest.raises(PayloadError) as err:
        parse_number("n/sensor/t/state", b"nan", "esphome")
    assert err.value.status == "unavailable"
    assert str(err.value) == 'n/sensor/t/state: ESPHome reports no value ("nan"): the sensor read failed'
    for bad, why in (
        (b"inf", "not a finite number"),
        (b"warm", "expected a plain number like 21.5"),
        (b"\xff", "not UTF-8"),
    ):
        with pytest.raises(PayloadError, match=why):
            parse_number("n/sensor/t/state", bad, "esphome")


def test_availability_topics_of_each_preset() -> None:
    assert (
        default_availability_topic(sensor(preset="zigbee2mqtt", topic="zigbee2mqtt/kitchen"))
        == "zigbee2mqtt/kitchen/availability"
    )
    assert default_availability_topic(sensor(preset="tasmota", topic="tele/hall/SENSOR")) == "tele/hall/LWT"
    assert default_availability_topic(sensor(preset="esphome", topic="garage/sensor/t/state")) == "garage/status"
    assert default_availability_topic(sensor(preset="json", topic="a/b")) is None
    assert _availability(b"Offline") == "offline"
    assert _availability(b'{"state": "offline"}') == "offline"
    assert _availability(b'{"state":"online"}') == "online"
    assert _availability(b"maybe") is None
    assert _availability(b"ONLINE\n") == "online"
    assert _availability(b'{\n\t"state":\t"Online",\n\t"since": 1764000000\n}') == "online"
    assert _availability(b'{"device": {"state": "offline"}, "state": "online"}') == "online"  # the top level's
    for not_a_state in (b"{", b'{"state": 1}', b'["online"]', b'{"status": "online"}', b'"online"', b""):
        assert _availability(not_a_state) is None, not_a_state


def test_shared_topic_patterns_and_leader_messages() -> None:
    patterns = ("weather", "sensor/*")
    assert matches(patterns, "weather")
    assert matches(patterns, "sensor/kitchen")
    assert not matches(patterns, "sensor/")
    assert not matches(patterns, "weatherx")
    assert not matches(patterns, "display")
    ok = {"data": {"a": 1}, "updated_at": "2026-11-25T14:05:00+01:00", "stale": False, "status": "ok", "error": None}
    assert parse_shared(json.dumps({**ok, "max_age_s": 90}).encode())["updated_at_s"] == 1795611900.0
    for bad, field in (
        ({**ok, "status": "fine"}, "status"),
        ({**ok, "updated_at": None}, "updated_at"),
        ({**ok, "data": [1]}, "data"),
        ({**ok, "max_age_s": "1h"}, "max_age_s"),
    ):
        with pytest.raises(SharedStateError, match=field):
            parse_shared(json.dumps(bad).encode())
    with pytest.raises(SharedStateError, match="finite"):
        parse_shared(b'{"data": {"t": NaN}, "status": "ok"}')


# ------------------------------------------------------------------------------------------ config


def mqtt_config(**mqtt: Any) -> Any:
    return parse_config({"mqtt": mqtt}, env={"MQTT_PASSWORD": "pw-from-env"})


def test_mqtt_config_defaults_and_secrets() -> None:
    assert parse_config({}, env={}).mqtt is None
    cfg = mqtt_config(name="hall", username="homeboard", password="${MQTT_PASSWORD}").mqtt
    assert cfg.base == "homeboard/hall"
    assert cfg.client == "homeboard-hall"
    assert cfg.password == "pw-from-env"
    assert cfg.role == "standalone"
    assert cfg.share_topics == ("weather", "departures", "strava", "calendar", "sensor/*")


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"port": 0}, r"mqtt\.port: expected 1-65535"),
        ({"name": "my wall"}, r"mqtt\.name: use letters, digits"),
        ({"base_topic": "homeboard/#"}, r"mqtt\.base_topic: must be one topic without the wildcards"),
        ({"password": "x"}, r"mqtt\.username: required when mqtt\.password is set"),
        ({"role": "follower"}, r"mqtt\.leader: required for role follower"),
        ({"role": "leader", "leader": "homeboard/x"}, r"mqtt\.leader: only for role follower"),
        ({"role": "boss"}, r"mqtt\.role: expected one of standalone, leader, follower"),
        ({"role": "follower", "leader": "homeboard/wall"}, r"mqtt\.leader: \"homeboard/wall\" is this display's own"),
        ({"share_topics": ["sensor/+"]}, r"mqtt\.share_topics\[0\]: expected a topic like weather"),
        ({"tls": {"ca_certs": "/nonexistent/ca.pem"}}, r"mqtt\.tls\.ca_certs: cannot read /nonexistent/ca\.pem"),
        (
            {"sensors": [{"id": "k", "topic": "zigbee2mqtt/+", "preset": "zigbee2mqtt"}]},
            r"mqtt\.sensors\[0\]\.topic: must be one topic",
        ),
        (
            {"sensors": [{"id": "k", "topic": "a/b", "preset": "zigbee"}]},
            r"mqtt\.sensors\[0\]\.preset: expected one of zigbee2mqtt",
        ),
        (
            {"sensors": [{"id": "k", "topic": "a/b", "preset": "esphome", "humidity_field": "h"}]},
            r"humidity_field: preset esphome carries plain values",
        ),
        (
            {"sensors": [{"id": "k", "topic": "a/b", "preset": "json", "humidity_topic": "a/h"}]},
            r"humidity_topic: only for presets esphome and plain",
        ),
        (
            {"sensors": [{"id": "k", "topic": "a/b"}, {"id": "k", "topic": "a/c"}]},
            r"mqtt\.sensors\[1\]\.id: duplicate sensor id",
        ),
        (
            {"sensors": [{"id": "k", "topic": "a/b", "temperature_field": "a..b"}]},
            r"temperature_field: expected a field name or dotted path",
        ),
        ({"home_assistant": {"enabled": True, "node_id": "my node"}}, r"mqtt\.home_assistant\.node_id: use letters"),
        ({"speed": 3}, r"mqtt\.speed: unknown key"),
    ],
)
def test_mqtt_config_errors_name_the_key(mqtt: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mqtt_config(**mqtt)


def test_an_mqtt_sensor_id_may_not_repeat_a_wired_or_lan_sensor() -> None:
    with pytest.raises(ConfigError, match=r'mqtt\.sensors\[0\]\.id: duplicate sensor id "balcony"'):
        parse_config(
            {
                "remote_sensors": [{"id": "balcony", "token": "t"}],
                "mqtt": {"sensors": [{"id": "balcony", "topic": "a/b"}]},
            },
            env={},
        )


def test_a_missing_password_secret_stops_the_start_without_showing_anything() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.password: secret \$\{MQTT_PASSWORD\} is not set"):
        parse_config({"mqtt": {"username": "u", "password": "${MQTT_PASSWORD}"}}, env={})


def test_config_yaml_documents_every_mqtt_key_in_an_example_that_parses() -> None:
    import dataclasses

    import yaml

    from server.config import HomeAssistantConfig, MqttConfig, MqttTlsConfig
    from tests.conftest import REPO

    text = (REPO / "config.yaml").read_text()
    assert "\nmqtt: null\n" in text  # off by default
    block = text.split("\nmqtt: null\n", 1)[1]
    for cls in (MqttConfig, MqttSensorConfig, MqttTlsConfig, HomeAssistantConfig):
        for f in dataclasses.fields(cls):
            assert f"{f.name}:" in block or f"{f.name}," in block, f"config.yaml does not document mqtt {f.name}"
    example = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in block.splitlines())
    cfg = parse_config(yaml.safe_load(example), env={"MQTT_PASSWORD": "x"}).mqtt
    assert [s.preset for s in cfg.sensors] == ["zigbee2mqtt", "tasmota", "esphome", "json"]
