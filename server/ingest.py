"""POST /api/sensors/{id}/readings: strict parsing of a LAN sensor's reading, and the handler that stores it
durably before answering 201 and then publishes it.

Bad input never gets further than here (docs/hardening.md): NaN/Infinity, 1e999, huge integers,
deep nesting, duplicate keys, lone surrogates, invalid UTF-8 and unknown fields are refused with a 400 that
names the problem, because a poison value would otherwise crash the SQLite writer or the WebSocket encoder.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.web

from server.config import RemoteSensorConfig
from server.handlers import BaseHandler
from server.history import History, HistoryError, HistoryReading
from server.hub import Hub
from server.timeutil import parse_iso

MAX_BODY_BYTES = 4096
# An authorized but too large body is drained up to this size before the 413, so the client reads the answer
# instead of a connection reset; anything larger is cut off by closing the connection.
DRAIN_LIMIT_BYTES = 1 << 20
MAX_FUTURE_S = 300.0  # a device clock a little ahead is fine; more is a wrong clock
MAX_INT_DIGITS = 20
RANGES: dict[str, tuple[float, float, str]] = {
    "temperature_c": (-60.0, 85.0, "°C"),
    "humidity_pct": (0.0, 100.0, "%"),
    "pressure_hpa": (300.0, 1100.0, "hPa"),
    "battery_pct": (0.0, 100.0, "%"),
}
FIELDS = (*RANGES, "measured_at")
TOO_LARGE = {"error": f"body: larger than {MAX_BODY_BYTES} bytes"}
EXAMPLE = '{"temperature_c": 21.5, "humidity_pct": 40.2, "measured_at": "2026-11-25T14:05:00+01:00"}'


class IngestError(ValueError):
    """The body is not acceptable; str() names the field (or "body") and the problem."""


@dataclass(frozen=True)
class _Bad:
    """Stands in for a value the JSON parser met that must not exist, so the error can name its field."""

    problem: str


def _quote(text: str, limit: int = 40) -> str:
    """A field name or value for an error message: ASCII-escaped (lone surrogates included), bounded."""
    return json.dumps(text[:limit])


def _parse_constant(name: str) -> _Bad:
    return _Bad(f"{name} is not a finite number")


def _parse_float(text: str) -> float | _Bad:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"{text[:20]} is out of range (not a finite number)")


def _parse_int(text: str) -> int | _Bad:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Bad(f"an integer with {digits} digits is too large")
    return int(text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if _has_surrogate(key):
            raise IngestError("body: a key contains a lone surrogate (not valid Unicode)")
        if key in obj:
            raise IngestError(f"{_quote(key)[1:-1]}: duplicate key")
        obj[key] = value
    return obj


def decode_json(body: bytes) -> dict[str, Any]:
    """Strict JSON → the top-level object. Raises IngestError."""
    if not body.strip():
        raise IngestError(f"body: empty; send a JSON object like {EXAMPLE}")
    if body.startswith(b"\xef\xbb\xbf"):
        raise IngestError("body: starts with a UTF-8 byte-order mark; send plain UTF-8 JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise IngestError(f"body: not valid UTF-8 (byte {err.start})") from None
    try:
        doc = json.loads(
            text,
            parse_constant=_parse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_pairs,
        )
    except RecursionError:
        raise IngestError("body: nested too deeply") from None
    except json.JSONDecodeError as err:
        raise IngestError(f"body: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    if not isinstance(doc, dict):
        raise IngestError(f"body: expected a JSON object like {EXAMPLE}")
    return doc


@dataclass(frozen=True)
class Reading:
    temperature_c: float
    humidity_pct: float | None
    pressure_hpa: float | None
    battery_pct: float | None
    measured_at_s: float


def _number(field: str, value: Any) -> float:
    low, high, unit = RANGES[field]
    if isinstance(value, _Bad):
        raise IngestError(f"{field}: {value.problem}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
        raise IngestError(f"{field}: expected a number, got {kind}")
    number = float(value)
    if not low <= number <= high:
        raise IngestError(f"{field}: {number:g} {unit} is outside the plausible range {low:g}..{high:g} {unit}")
    return number


def validate(doc: dict[str, Any], now_s: float, max_age_s: float) -> Reading:
    """A decoded body → a Reading. Raises IngestError naming the first bad field."""
    for key in doc:
        if key not in FIELDS:
            raise IngestError(f"{_quote(key)[1:-1]}: unknown field (known: {', '.join(FIELDS)})")
    if doc.get("temperature_c") is None:
        raise IngestError("temperature_c: required")
    temperature_c = _number("temperature_c", doc["temperature_c"])
    values: dict[str, float | None] = {}
    for field in ("humidity_pct", "pressure_hpa", "battery_pct"):
        value = doc.get(field)
        values[field] = None if value is None else _number(field, value)
    measured_at_s = now_s
    raw_time = doc.get("measured_at")
    if raw_time is not None:
        if isinstance(raw_time, _Bad) or not isinstance(raw_time, str):
            raise IngestError("measured_at: expected an ISO 8601 time string like 2026-11-25T14:05:00+01:00")
        if _has_surrogate(raw_time):
            raise IngestError("measured_at: contains a lone surrogate (not valid Unicode)")
        try:
            measured_at_s = parse_iso(raw_time)
        except ValueError:
            raise IngestError(
                f"measured_at: {_quote(raw_time)} is not an ISO 8601 time with offset, like 2026-11-25T14:05:00+01:00"
            ) from None
        if measured_at_s > now_s + MAX_FUTURE_S:
            raise IngestError("measured_at: more than 5 minutes in the future: check the device's clock")
        if measured_at_s < now_s - max_age_s:
            raise IngestError(
                f"measured_at: older than the history keeps ({max_age_s / 86400:g} days): check the device's clock"
            )
    return Reading(
        temperature_c,
        values["humidity_pct"],
        values["pressure_hpa"],
        values["battery_pct"],
        measured_at_s,
    )


async def store_reading(sensor: RemoteSensorConfig, reading: Reading, history: History, source: str = "lan") -> None:
    """Store durably (returns after the commit). Raises HistoryError."""
    await history.store(
        HistoryReading(
            sensor.id,
            round(reading.measured_at_s * 1000),
            reading.temperature_c,
            reading.humidity_pct,
            reading.pressure_hpa,
            reading.battery_pct,
            source,
        )
    )


def publish_reading(sensor: RemoteSensorConfig, reading: Reading, hub: Hub, source: str = "lan") -> str:
    """Publish a stored reading to sensor/{id}; returns its measured_at as sent."""
    measured_at = iso_ms(reading.measured_at_s, hub.tz)
    data: dict[str, Any] = {
        "name": sensor.name or sensor.id,
        "temperature_c": reading.temperature_c,
        "humidity_pct": reading.humidity_pct,
        "pressure_hpa": reading.pressure_hpa,
        "measured_at": measured_at,
        "source": source,
    }
    if reading.battery_pct is not None:
        data["battery_pct"] = reading.battery_pct
    hub.publish(f"sensor/{sensor.id}", data)
    return measured_at


def iso_ms(epoch_s: float, tz: dt.tzinfo) -> str:
    """ISO 8601 with offset; milliseconds only when the device sent them."""
    ms = round(epoch_s * 1000)
    spec = "milliseconds" if ms % 1000 else "seconds"
    return dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec=spec)


@tornado.web.stream_request_body
class IngestHandler(BaseHandler):
    """Order of checks: unknown sensor 404 → token 401 → size 413 → body 400 → durable store → 201 → publish."""

    def initialize(
        self,
        sensors: dict[str, RemoteSensorConfig],
        history: History,
        hub: Hub,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sensors = sensors
        self.history = history
        self.hub = hub
        self.clock = clock
        self._chunks: list[bytes] = []
        self._size = 0
        self._sensor: RemoteSensorConfig | None = None
        self._early: tuple[int, dict[str, Any]] | None = None  # an answer decided before the body was read

    def prepare(self) -> None:
        if self.request.method != "POST":
            return  # tornado answers 405
        sensor = self.sensors.get(self.path_args[0])
        if sensor is None:
            self._early = (404, {"error": f"unknown sensor {_quote(self.path_args[0], 64)}"})
            return
        if not self._authorized(sensor):
            self.set_header("WWW-Authenticate", 'Bearer realm="homeboard"')
            self._early = (401, {"error": "unauthorized"})
            return
        self._sensor = sensor
        length = self.request.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            if length.isdigit() and int(length) <= DRAIN_LIMIT_BYTES:
                self._too_large()
            else:
                self.write_json(TOO_LARGE, 413)  # not worth reading: answer and close the connection

    def _too_large(self) -> None:
        # Answer only after the body is drained: a response sent while the client is still sending is
        # often lost in the connection reset that follows the close.
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(DRAIN_LIMIT_BYTES)
        self._chunks.clear()
        self._early = (413, TOO_LARGE)

    def _authorized(self, sensor: RemoteSensorConfig) -> bool:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        # Header text is latin-1 in tornado: back to its raw bytes, compared in constant time.
        given = token.strip().encode("latin-1", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(given, sensor.token.encode("utf-8"))

    def data_received(self, chunk: bytes) -> None:
        if self._early is not None or self._finished:
            return  # the answer is decided: drain and drop
        self._size += len(chunk)
        if self._size <= MAX_BODY_BYTES:
            self._chunks.append(chunk)
        else:
            self._too_large()  # a chunked body without a length

    async def post(self, sensor_id: str) -> None:
        if self._finished:
            return
        if self._early is not None:
            status, body = self._early
            self.write_json(body, status)
            return
        sensor = self._sensor
        if sensor is None:  # pragma: no cover - prepare() sets either _sensor or _early
            raise tornado.web.HTTPError(500)
        now = self.clock()
        try:
            reading = validate(decode_json(b"".join(self._chunks)), now, self.history.config.raw_days * 86400)
        except IngestError as err:
            self.write_json({"error": str(err)}, 400)
            return
        try:
            await store_reading(sensor, reading, self.history)
        except HistoryError as err:
            # The device keeps the reading and retries on any non-2xx: nothing is lost by saying no.
            self.write_json({"error": str(err)}, 503)
            return
        measured_at = iso_ms(reading.measured_at_s, self.hub.tz)
        self.write_json({"sensor_id": sensor.id, "stored": True, "measured_at": measured_at}, 201)
        publish_reading(sensor, reading, self.hub)
