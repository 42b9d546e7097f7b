"""MQTT sensor payloads → the reading body a LAN sensor would POST (pure functions, one per preset).

The result goes through server.readings.body.reading_from_body (make_reading: the same plausibility rules as every
other reading). Errors name the topic and the payload's own field ("temperature", "AM2301.Humidity"), so a person
can find it.

  zigbee2mqtt  zigbee2mqtt/<friendly_name>: {"temperature": 21.3, "humidity": 40.1, "pressure": 1012, "battery": 97,
               "last_seen": "2026-11-25T14:05:00+01:00"}          (last_seen only when Zigbee2MQTT is set to send it)
  tasmota      tele/<device>/SENSOR: {"Time": "...", "AM2301": {"Temperature": 21.3, "Humidity": 40.1}, "TempUnit": "C"}
               any sensor object; TempUnit F and PressureUnit mmHg/inHg are converted
  esphome      <node>/sensor/<name>/state: "21.3" — one plain number per topic (humidity_topic etc. for the others)
  json         any JSON object; fields default to Homeboard's own names (temperature_c, humidity_pct, ...)
  plain        like esphome: a plain number per topic
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from server.config import MqttSensorConfig
from server.readings.body import IngestError, decode_json
from server.readings.reading import SHOWN

QUANTITIES = ("temperature_c", "humidity_pct", "pressure_hpa", "battery_pct")
MAX_PAYLOAD_BYTES = 16384
# Tasmota reports the chip's own temperature under these keys: never the room's.
TASMOTA_CHIP_KEYS = frozenset({"ESP32", "ESP8266", "Global"})
MMHG_HPA = 1.33322387415
INHG_HPA = 33.8638866667
EPOCH_MS_THRESHOLD = 1e11  # epoch numbers above this are milliseconds (1e11 s is the year 5138)

PRESET_FIELDS: dict[str, dict[str, str | None]] = {
    "zigbee2mqtt": {
        "temperature_c": "temperature",
        "humidity_pct": "humidity",
        "pressure_hpa": "pressure",
        "battery_pct": "battery",
        "measured_at": "last_seen",
    },
    "json": {
        "temperature_c": "temperature_c",
        "humidity_pct": "humidity_pct",
        "pressure_hpa": "pressure_hpa",
        "battery_pct": "battery_pct",
        "measured_at": "measured_at",
    },
}


class PayloadError(ValueError):
    """A payload that is not a reading. str() names the topic and the field; status is the topic status to show."""

    def __init__(self, message: str, status: str = "error") -> None:
        super().__init__(message)
        self.status = status


def field_map(sensor: MqttSensorConfig, preset_fields: dict[str, str | None]) -> dict[str, str | None]:
    """Reading key → payload field path: the preset's default, or the one the config names."""
    configured = {
        "temperature_c": sensor.temperature_field,
        "humidity_pct": sensor.humidity_field,
        "pressure_hpa": sensor.pressure_field,
        "battery_pct": sensor.battery_field,
        "measured_at": sensor.time_field,
    }
    return {key: configured[key] or preset_fields.get(key) for key in configured}


def _lookup(doc: dict[str, Any], path: str) -> Any:
    """A dotted path into nested objects; None when any step is missing."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decode(topic: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{topic}: payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        return decode_json(payload)
    except IngestError as err:
        text = str(err)
        if text.startswith("body:"):
            text = "payload:" + text[len("body:") :]
        raise PayloadError(f"{topic}: {text}") from None


def _time_value(value: Any) -> Any:
    """A device's time: ISO text passes through (validate checks it); epoch seconds or ms become ISO text."""
    if _is_number(value) and math.isfinite(value) and value > 0:
        seconds = value / 1000 if value > EPOCH_MS_THRESHOLD else value
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")
    return value


def parse_json_reading(
    topic: str, payload: bytes, fields: dict[str, str | None]
) -> tuple[dict[str, Any], dict[str, str]]:
    """A JSON payload → (reading body, reading key → payload field it came from). Raises PayloadError."""
    doc = _decode(topic, payload)
    body: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, path in fields.items():
        if path is None:
            continue
        value = _lookup(doc, path)
        if value is None:
            continue
        body[key] = _time_value(value) if key == "measured_at" else value
        origin[key] = path
    if not any(key in body for key in SHOWN):
        # A humidity-only device is fine; one with none of the quantities is a wrong field name or another device.
        wanted = [path for key, path in fields.items() if key in SHOWN and path]
        others = f" (nor {', '.join(wanted[1:])})" if len(wanted) > 1 else ""
        raise PayloadError(
            f'{topic}: field "{wanted[0] if wanted else "temperature"}" is missing{others}: '
            "set temperature_field (or humidity_field) if it has another name"
        )
    return body, origin


def _tasmota_object(topic: str, doc: dict[str, Any]) -> str:
    """The key of the one sensor object that has a Temperature (e.g. "AM2301")."""
    found = [k for k, v in doc.items() if isinstance(v, dict) and "Temperature" in v and k not in TASMOTA_CHIP_KEYS]
    if not found:
        keys = ", ".join(doc) or "none"
        raise PayloadError(f'{topic}: no sensor object with a "Temperature" field (keys: {keys})')
    if len(found) > 1:
        raise PayloadError(
            f'{topic}: several sensors ({", ".join(found)}): set temperature_field, e.g. "{found[0]}.Temperature"'
        )
    return found[0]


def parse_tasmota_reading(
    topic: str, payload: bytes, sensor: MqttSensorConfig
) -> tuple[dict[str, Any], dict[str, str]]:
    """A Tasmota tele/<device>/SENSOR payload → (reading body, origins). Honours TempUnit and PressureUnit."""
    doc = _decode(topic, payload)
    # An explicit temperature_field ("DS18B20-1.Temperature") also says where the other values are.
    explicit = sensor.temperature_field
    prefix = explicit.rpartition(".")[0] if explicit else _tasmota_object(topic, doc)
    at = f"{prefix}." if prefix else ""
    defaults: dict[str, str | None] = {
        "temperature_c": f"{at}Temperature",
        "humidity_pct": f"{at}Humidity",
        "pressure_hpa": f"{at}Pressure",
        "battery_pct": None,
        "measured_at": None,  # Tasmota's "Time" has no UTC offset: the time of arrival is used instead
    }
    body, origin = parse_json_reading(topic, payload, field_map(sensor, defaults))
    unit = doc.get("TempUnit", "C")
    temperature = body.get("temperature_c")
    if unit == "F":
        if _is_number(temperature):
            body["temperature_c"] = round((temperature - 32) * 5 / 9, 2)
    elif unit != "C":
        raise PayloadError(f'{topic}: field "TempUnit": {_short(unit)} is not C or F')
    pressure_unit = doc.get("PressureUnit", "hPa")
    factor = (
        {"hPa": 1.0, "mmHg": MMHG_HPA, "inHg": INHG_HPA}.get(pressure_unit) if isinstance(pressure_unit, str) else None
    )
    if factor is None:
        raise PayloadError(f'{topic}: field "PressureUnit": {_short(pressure_unit)} is not hPa, mmHg or inHg')
    pressure = body.get("pressure_hpa")
    if factor != 1.0 and _is_number(pressure):
        body["pressure_hpa"] = round(pressure * factor, 2)
    return body, origin


def parse_number(topic: str, payload: bytes, preset: str) -> float:
    """A plain number payload ("21.3"). ESPHome's "nan" (the sensor failed) → PayloadError with status unavailable."""
    if len(payload) > 64:
        raise PayloadError(f"{topic}: expected a plain number, got {len(payload)} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError(f"{topic}: expected a plain number, got bytes that are not UTF-8") from None
    if text.lower() == "nan":
        source = "ESPHome" if preset == "esphome" else "the device"
        raise PayloadError(f'{topic}: {source} reports no value ("nan"): the sensor read failed', "unavailable")
    try:
        value = float(text)
    except ValueError:
        raise PayloadError(f"{topic}: expected a plain number like 21.5, got {_short(text)}") from None
    if not math.isfinite(value):
        raise PayloadError(f"{topic}: {_short(text)} is not a finite number")
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return '"' + (text if len(text) <= 24 else text[:21] + "...").encode("unicode_escape").decode("ascii") + '"'


def explain(topic: str, err: ValueError, origin: dict[str, str]) -> str:
    """The reading's validation error ("temperature_c: 130 °C is outside ...") with the payload field it came from."""
    text = str(err)
    key = text.partition(":")[0]
    source = origin.get(key)
    if source is not None and source != key:
        return f'{topic}: field "{source}" → {text}'
    return f"{topic}: {text}"
